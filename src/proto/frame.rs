//! Framing of the client byte stream: every packet, both ways, is a 4-byte big-endian
//! length and that many bytes of payload. Also the four-letter-word detection on a
//! fresh connection, and writers for framed replies and watch notifications.
//!
//! Owns: splitting buffered bytes into frames (pure: it never reads a socket, it only
//! looks at what the caller has buffered), the "Len error" check, and the reply layout.
//! Must not: do I/O, allocate from an advertised length (the caller sizes its buffer
//! from `max`, never from the length prefix), or panic on any input.

use super::codes::{Code, EventType};
use super::jute::{Jute, Writer};
use super::records::ReplyHeader;
use std::fmt;

/// The size of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;

/// A frame length ZooKeeper refuses: `len < 0 || len > jute.maxbuffer`
/// (`NIOServerCnxn.readLength`, "Len error"); the connection is closed.
///
/// The bound is `jute.maxbuffer` itself: `zookeeper.jute.maxbuffer.extrasize` only pads
/// the sanity check on lengths *inside* a record (`BinaryInputArchive.checkLength`),
/// which our `Reader` replaces by checking every inner length against the bytes present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LenError {
    pub len: i32,
    pub max: usize,
}

impl fmt::Display for LenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Len error: advertised length {} is negative or greater than jute.maxbuffer={}",
            self.len, self.max
        )
    }
}

impl std::error::Error for LenError {}

/// The result of looking at the bytes buffered so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split<'a> {
    /// One complete frame: `payload` excludes the length prefix; `consumed` bytes
    /// (prefix included) may be dropped from the front of the buffer.
    Frame { payload: &'a [u8], consumed: usize },
    /// Not yet a whole frame: at least `need` bytes in total must be buffered.
    NeedMore { need: usize },
    /// Only from [`split_first`]: the connection opened with a four-letter word.
    FourLetterWord(&'static str),
}

/// Returns the next complete frame at the front of `buf`, or how many bytes are needed.
///
/// # Errors
/// [`LenError`] when the length prefix is negative or greater than `max`.
pub fn split(buf: &[u8], max: usize) -> Result<Split<'_>, LenError> {
    if buf.len() < LEN_PREFIX {
        return Ok(Split::NeedMore { need: LEN_PREFIX });
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > max {
        return Err(LenError { len, max });
    }
    let total = LEN_PREFIX + len as usize;
    if buf.len() < total {
        return Ok(Split::NeedMore { need: total });
    }
    Ok(Split::Frame {
        payload: &buf[LEN_PREFIX..total],
        consumed: total,
    })
}

/// As [`split`], for the first frame of a fresh connection: ZooKeeper reads the first
/// int as a four-letter word before it checks it as a length (a 4lw as an int is larger
/// than any sane maxbuffer, so the order matters).
///
/// # Errors
/// As [`split`].
pub fn split_first(buf: &[u8], max: usize) -> Result<Split<'_>, LenError> {
    if buf.len() >= LEN_PREFIX {
        if let Some(cmd) = four_letter_word([buf[0], buf[1], buf[2], buf[3]]) {
            return Ok(Split::FourLetterWord(cmd));
        }
    }
    split(buf, max)
}

/// The four-letter words ZooKeeper recognises (`FourLetterCommands.cmd2String`), as
/// the first 4 bytes of a connection. Whether a recognised word is served depends on
/// `4lw.commands.whitelist`, which is not this module's business.
const FOUR_LETTER_WORDS: [&str; 18] = [
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr", "stat",
    "wchc", "wchp", "wchs", "mntr", "isro", "hash",
];

/// The telnet "interrupt process" + "do timing mark" sequence a telnet client sends on
/// ^C; ZooKeeper recognises it as a command that closes the connection.
pub const TELNET_CLOSE: [u8; 4] = [0xff, 0xf4, 0xff, 0xfd];

/// Names the four-letter word `first4` spells, or `"telnet close"` for
/// [`TELNET_CLOSE`]; `None` for anything else (then the bytes are a frame length).
pub fn four_letter_word(first4: [u8; 4]) -> Option<&'static str> {
    if first4 == TELNET_CLOSE {
        return Some("telnet close");
    }
    FOUR_LETTER_WORDS
        .iter()
        .copied()
        .find(|w| w.as_bytes() == first4)
}

/// Appends one frame: reserves the 4-byte length, lets `f` write the payload, then
/// fills the length in.
///
/// # Panics
/// If `f` writes 2 GiB or more (a bug: no record is that large).
pub fn write_frame(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    f(out);
    let len = out.len() - start - LEN_PREFIX;
    let len = i32::try_from(len).expect("frame payload of 2 GiB or more");
    out[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
}

/// Appends one framed reply: `ReplyHeader{xid, zxid, err}` and, only when `err` is OK,
/// the body `body` writes.
///
/// ZooKeeper writes a body whenever its response record is non-null, which for client
/// ops happens only on success (every error is thrown before the record is built; see
/// `FinalRequestProcessor`). Verified on captures from 3.8: exists on a missing node is
/// a bare 16-byte header with NONODE; a failed setData, delete or getAllChildrenNumber
/// likewise. What the body is on success:
/// - no body: delete, setWatches, setWatches2, checkWatches, removeWatches,
///   closeSession, auth, ping;
/// - addWatch: `ErrorResponse{0}` (four zero bytes);
/// - multi and multiRead: a `MultiResponse`, with err OK even when the multi failed (the
///   failure is inside, see `MultiResult::Error`);
/// - every other op: its `*Response` record (create `CreateResponse`; create2,
///   createContainer and createTTL `Create2Response`; reconfig `GetDataResponse`).
pub fn write_reply(
    out: &mut Vec<u8>,
    xid: i32,
    zxid: i64,
    err: Code,
    body: impl FnOnce(&mut Vec<u8>),
) {
    write_frame(out, |out| {
        ReplyHeader {
            xid,
            zxid,
            err: err.as_i32(),
        }
        .write(out);
        if err == Code::Ok {
            body(out);
        }
    });
}

/// Appends one framed successful reply whose body is `record`.
pub fn write_reply_record<R: Jute>(out: &mut Vec<u8>, xid: i32, zxid: i64, record: &R) {
    write_reply(out, xid, zxid, Code::Ok, |out| record.write(out));
}

/// Appends one framed reply without a body: an error, or an op that answers with the
/// header alone.
pub fn write_reply_header(out: &mut Vec<u8>, xid: i32, zxid: i64, err: Code) {
    write_reply(out, xid, zxid, err, |_| {});
}

/// Appends one framed watch notification: `ReplyHeader{-1, zxid, 0}` then
/// `WatcherEvent{type, state, path}` (`NIOServerCnxn.process`), written field by field
/// so that firing a watch does not allocate a `WatcherEvent`.
///
/// `zxid` is the event's zxid; ZooKeeper 3.8 sends -1 (`WatchedEvent.NO_ZXID`, seen in
/// the captures) and 3.9 the zxid of the txn that fired the watch. `state` is one of
/// `codes::keeper_state` (`SYNC_CONNECTED` for every data event).
pub fn write_notification(
    out: &mut Vec<u8>,
    zxid: i64,
    event_type: EventType,
    state: i32,
    path: &str,
) {
    write_frame(out, |out| {
        ReplyHeader {
            xid: super::codes::xid::NOTIFICATION,
            zxid,
            err: 0,
        }
        .write(out);
        out.put_i32(event_type as i32);
        out.put_i32(state);
        out.put_string(path);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_needs_prefix_then_payload() {
        assert_eq!(split(&[0, 0], 100), Ok(Split::NeedMore { need: 4 }));
        assert_eq!(
            split(&[0, 0, 0, 3, 1], 100),
            Ok(Split::NeedMore { need: 7 })
        );
        let buf = [0, 0, 0, 2, 9, 8, 7];
        assert_eq!(
            split(&buf, 100),
            Ok(Split::Frame {
                payload: &[9, 8],
                consumed: 6
            })
        );
        assert_eq!(
            split(&[0, 0, 0, 0], 100),
            Ok(Split::Frame {
                payload: &[],
                consumed: 4
            })
        );
    }

    #[test]
    fn split_rejects_negative_and_oversized_lengths() {
        assert_eq!(
            split(&[0xff, 0xff, 0xff, 0xff], 100),
            Err(LenError { len: -1, max: 100 })
        );
        assert_eq!(
            split(&[0, 0, 0, 101], 100),
            Err(LenError { len: 101, max: 100 })
        );
        // Exactly max is accepted, as ZooKeeper's `len > maxBuffer` check does.
        assert_eq!(
            split(&[0, 0, 0, 100], 100),
            Ok(Split::NeedMore { need: 104 })
        );
    }

    #[test]
    fn four_letter_words() {
        assert_eq!(four_letter_word(*b"ruok"), Some("ruok"));
        assert_eq!(four_letter_word(*b"mntr"), Some("mntr"));
        assert_eq!(four_letter_word(TELNET_CLOSE), Some("telnet close"));
        assert_eq!(four_letter_word(*b"RUOK"), None);
        assert_eq!(four_letter_word([0, 0, 0, 44]), None);
        let buf = *b"srvr";
        assert_eq!(
            split_first(&buf, 0xfffff),
            Ok(Split::FourLetterWord("srvr"))
        );
        // Not being a 4lw, the same bytes after the handshake are a Len error.
        assert!(split(&buf, 0xfffff).is_err());
    }

    #[test]
    fn write_frame_fills_length() {
        let mut out = vec![7];
        write_frame(&mut out, |o| o.extend_from_slice(b"abc"));
        assert_eq!(out, [7, 0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn error_reply_has_no_body() {
        let mut out = Vec::new();
        write_reply(&mut out, 5, 9, Code::NoNode, |o| o.push(1));
        assert_eq!(out.len(), 4 + 16);
        let mut ok = Vec::new();
        write_reply(&mut ok, 5, 9, Code::Ok, |o| o.push(1));
        assert_eq!(ok.len(), 4 + 16 + 1);
    }
}
