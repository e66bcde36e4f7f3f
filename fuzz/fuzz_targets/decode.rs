//! Feeds arbitrary bytes to the server's inbound path as one connection would see
//! them: the frame splitter, the first frame as a four-letter word or a ConnectRequest,
//! then every later frame through `Request::decode_payload`. Nothing may panic, and a
//! request that decodes must re-encode to bytes that decode to the same request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringkeeper::proto::frame::{self, Split};
use ringkeeper::proto::request::Request;
use ringkeeper::proto::{ConnectRequest, Jute, Reader, DEFAULT_MAX_BUFFER};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut first = true;
    // Every pass consumes at least the 4-byte length prefix, so the loop is bounded by
    // the input length.
    loop {
        let split = if first {
            frame::split_first(rest, DEFAULT_MAX_BUFFER)
        } else {
            frame::split(rest, DEFAULT_MAX_BUFFER)
        };
        let (payload, consumed) = match split {
            Ok(Split::Frame { payload, consumed }) => (payload, consumed),
            Ok(Split::FourLetterWord(_)) | Ok(Split::NeedMore { .. }) | Err(_) => return,
        };
        assert!(consumed >= frame::LEN_PREFIX && consumed <= rest.len());
        if first {
            // The handshake: ZooKeeper ignores bytes after the optional readOnly byte.
            let _ = ConnectRequest::read(&mut Reader::new(payload));
        } else if let Ok((hdr, req)) = Request::decode_payload(payload) {
            let mut again = Vec::new();
            req.encode(hdr.xid, &mut again);
            let (hdr2, req2) = Request::decode_payload(&again).expect("re-encoded request decodes");
            assert_eq!(hdr, hdr2);
            assert_eq!(req, req2);
        }
        first = false;
        rest = &rest[consumed..];
    }
});
