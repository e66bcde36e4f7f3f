//! The client-protocol codec against bytes captured from Apache ZooKeeper 3.8
//! (tests/data/zk38, written by scripts/capture-zk.py), plus property tests: round
//! trips of every request and reply record, and no panic on arbitrary bytes.

use bytes::Bytes;
use proptest::prelude::*;
use ringkeeper::proto::frame::{self, Split};
use ringkeeper::proto::request::*;
use ringkeeper::proto::*;
use std::collections::{BTreeSet, HashMap};

const CAPTURES: [(&str, &str); 3] = [
    ("raw", include_str!("data/zk38/raw.hex")),
    ("kazoo", include_str!("data/zk38/kazoo.hex")),
    ("java", include_str!("data/zk38/java.hex")),
];

/// One captured frame: direction, the opcode name the recorder gave it, the whole frame.
#[derive(Debug, Clone)]
struct Captured {
    c2s: bool,
    name: String,
    frame: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn parse(text: &str) -> Vec<Captured> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split(' ');
            let dir = it.next().expect("direction");
            let name = it.next().expect("name").to_string();
            let frame = unhex(it.next().expect("hex"));
            assert!(dir == "c2s" || dir == "s2c", "bad direction {dir}");
            Captured {
                c2s: dir == "c2s",
                name,
                frame,
            }
        })
        .collect()
}

/// The payload of a captured frame, checked through the splitter: exactly one frame.
fn payload(c: &Captured) -> &[u8] {
    match frame::split(&c.frame, DEFAULT_MAX_BUFFER).expect("captured frame within maxbuffer") {
        Split::Frame { payload, consumed } => {
            assert_eq!(consumed, c.frame.len(), "{}: one frame per line", c.name);
            payload
        }
        other => panic!("{}: not a whole frame: {other:?}", c.name),
    }
}

fn framed(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_frame(&mut out, f);
    out
}

/// A request decoded from a capture, with the number of its connection.
type Req = (usize, RequestHeader, Request);

/// A reply decoded from a capture, for the assertions of the scenario tests.
#[derive(Debug, Clone)]
enum Reply {
    Header(ReplyHeader),
    Multi(ReplyHeader, Vec<MultiResult>),
    Notification(WatcherEvent),
    Other(ReplyHeader),
}

/// Decodes a reply body as the record `T`, requires it to fill the frame, and checks
/// that the reply writer reproduces the captured frame byte for byte.
fn check_record<T: Jute + std::fmt::Debug>(c: &Captured, hdr: &ReplyHeader, body: &[u8]) -> T {
    let rec = T::from_bytes(body).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let mut out = Vec::new();
    frame::write_reply_record(&mut out, hdr.xid, hdr.zxid, &rec);
    assert_eq!(out, c.frame, "{}: re-encoded reply differs", c.name);
    rec
}

/// Decodes every frame of one capture; returns the requests and replies in order.
fn decode_capture(name: &str, text: &str) -> (Vec<Req>, Vec<(usize, String, Reply)>) {
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    // Counts connections: xids restart on each, so replies are matched per connection.
    let mut conn = 0;
    for c in parse(text) {
        let p = payload(&c);
        if c.name == "connect" {
            if c.c2s {
                conn += 1;
                let req = ConnectRequest::from_bytes(p).expect("ConnectRequest");
                // 44 bytes without the readOnly byte, 45 with it.
                assert_eq!(p.len(), if req.read_only.is_some() { 45 } else { 44 });
                assert_eq!(framed(|o| req.write(o)), c.frame);
            } else {
                let resp = ConnectResponse::from_bytes(p).expect("ConnectResponse");
                assert_eq!(p.len(), if resp.read_only.is_some() { 37 } else { 36 });
                assert_eq!(resp.passwd.as_ref().map(|b| b.len()), Some(16));
                assert_eq!(framed(|o| resp.write(o)), c.frame);
            }
            continue;
        }
        if c.c2s {
            match Request::decode_payload(p) {
                Ok((hdr, req)) => {
                    // codes.rs spells createTTL as createTtl; the recorder uses Java's names.
                    assert!(
                        req.op().name().eq_ignore_ascii_case(&c.name),
                        "{name}: {} named {}",
                        req.op().name(),
                        c.name
                    );
                    let again = framed(|o| req.encode(hdr.xid, o));
                    // ZooKeeper ignores bytes after a body; the one captured request that
                    // carries some re-encodes to its prefix.
                    assert_eq!(
                        again[4..],
                        p[..again.len() - 4],
                        "{name}: {} re-encodes",
                        c.name
                    );
                    if again.len() != c.frame.len() {
                        assert!(again.len() < c.frame.len());
                    }
                    requests.push((conn, hdr, req));
                }
                Err(e) => {
                    // Only the deliberately bad requests of the raw scenario fail.
                    assert_eq!(name, "raw", "{}: {e}", c.name);
                    match c.name.as_str() {
                        "unknown99" => {
                            assert_eq!(e, RequestError::Unimplemented { op: 99 });
                            assert_eq!(e.action(), ErrorAction::ReplyAndClose(Code::Unimplemented));
                        }
                        "check" => assert_eq!(e, RequestError::Unimplemented { op: 13 }),
                        "exists" => {
                            assert!(matches!(
                                e,
                                RequestError::Malformed {
                                    op: OpCode::Exists,
                                    ..
                                }
                            ));
                            assert_eq!(e.action(), ErrorAction::Reply(Code::MarshallingError));
                        }
                        other => panic!("unexpected failure of {other}: {e}"),
                    }
                }
            }
            continue;
        }
        let mut r = Reader::new(p);
        let hdr = ReplyHeader::read(&mut r).expect("ReplyHeader");
        let body = &p[16..];
        if c.name == "notification" {
            assert_eq!(hdr.xid, -1);
            assert_eq!(hdr.err, 0);
            let ev = WatcherEvent::from_bytes(body).expect("WatcherEvent");
            let ty = [
                EventType::NodeCreated,
                EventType::NodeDeleted,
                EventType::NodeDataChanged,
                EventType::NodeChildrenChanged,
            ]
            .into_iter()
            .find(|t| *t as i32 == ev.event_type)
            .expect("a data event");
            let mut out = Vec::new();
            frame::write_notification(&mut out, hdr.zxid, ty, ev.state, &ev.path);
            assert_eq!(out, c.frame, "notification re-encodes");
            replies.push((conn, c.name, Reply::Notification(ev)));
            continue;
        }
        let code = Code::from_i32(hdr.err).expect("known error code");
        if code != Code::Ok {
            // ZooKeeper sends no body with an error.
            assert!(body.is_empty(), "{}: error reply with a body", c.name);
            let mut out = Vec::new();
            frame::write_reply_header(&mut out, hdr.xid, hdr.zxid, code);
            assert_eq!(out, c.frame);
            replies.push((conn, c.name, Reply::Header(hdr)));
            continue;
        }
        let reply = match c.name.as_str() {
            "create" => {
                check_record::<CreateResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "create2" | "createContainer" | "createTTL" => {
                check_record::<Create2Response>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "exists" => {
                check_record::<ExistsResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "getData" => {
                check_record::<GetDataResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "setData" => {
                check_record::<SetDataResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "getACL" => {
                check_record::<GetAclResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "setACL" => {
                check_record::<SetAclResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "getChildren" => {
                check_record::<GetChildrenResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "getChildren2" => {
                check_record::<GetChildren2Response>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "sync" => {
                check_record::<SyncResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "getEphemerals" => {
                check_record::<GetEphemeralsResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "getAllChildrenNumber" => {
                check_record::<GetAllChildrenNumberResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "whoAmI" => {
                check_record::<WhoAmIResponse>(&c, &hdr, body);
                Reply::Other(hdr)
            }
            "addWatch" => {
                // addWatch answers ErrorResponse{0}: four zero bytes.
                let e = check_record::<ErrorResponse>(&c, &hdr, body);
                assert_eq!(e.err, 0);
                Reply::Other(hdr)
            }
            "multi" | "multiRead" => {
                let mut br = Reader::new(body);
                let results = decode_multi_response(&mut br).expect("MultiResponse");
                br.finish("MultiResponse").expect("fills the frame");
                let mut out = Vec::new();
                frame::write_reply(&mut out, hdr.xid, hdr.zxid, Code::Ok, |o| {
                    encode_multi_response(&results, o)
                });
                assert_eq!(out, c.frame, "multi response re-encodes");
                Reply::Multi(hdr, results)
            }
            "delete" | "setWatches" | "setWatches2" | "checkWatches" | "removeWatches"
            | "closeSession" | "auth" | "ping" => {
                assert!(body.is_empty(), "{}: no body expected", c.name);
                let mut out = Vec::new();
                frame::write_reply_header(&mut out, hdr.xid, hdr.zxid, Code::Ok);
                assert_eq!(out, c.frame);
                Reply::Header(hdr)
            }
            other => panic!("{name}: no reply decoder for {other}"),
        };
        replies.push((conn, c.name, reply));
    }
    (requests, replies)
}

#[test]
fn every_captured_frame_decodes_and_reencodes() {
    let mut ops = BTreeSet::new();
    for (name, text) in CAPTURES {
        let (reqs, replies) = decode_capture(name, text);
        assert!(!reqs.is_empty() && !replies.is_empty(), "{name} is empty");
        ops.extend(reqs.iter().map(|(_, _, r)| r.op().name()));
    }
    // Every opcode a client sends, captured at least once.
    for op in [
        "create",
        "create2",
        "createContainer",
        "createTtl",
        "delete",
        "exists",
        "getData",
        "setData",
        "getACL",
        "setACL",
        "getChildren",
        "getChildren2",
        "sync",
        "ping",
        "multi",
        "multiRead",
        "checkWatches",
        "removeWatches",
        "getEphemerals",
        "getAllChildrenNumber",
        "setWatches",
        "setWatches2",
        "addWatch",
        "whoAmI",
        "auth",
        "closeSession",
    ] {
        assert!(ops.contains(op), "no captured {op}");
    }
}

fn find_req(reqs: &[Req], f: impl Fn(&Request) -> bool) -> (usize, &RequestHeader, &Request) {
    let (c, h, r) = reqs
        .iter()
        .find(|(_, _, r)| f(r))
        .expect("request in capture");
    (*c, h, r)
}

/// The replies by xid (notifications and the connect reply excluded).
fn by_xid(replies: &[(usize, String, Reply)]) -> HashMap<(usize, i32), Reply> {
    let mut m = HashMap::new();
    for (c, _, r) in replies {
        let h = match r {
            Reply::Header(h) | Reply::Other(h) | Reply::Multi(h, _) => h,
            Reply::Notification(_) => continue,
        };
        m.insert((*c, h.xid), r.clone());
    }
    m
}

#[test]
fn kazoo_capture_fields() {
    let (reqs, replies) = decode_capture("kazoo", CAPTURES[1].1);
    let (_, _, create) = find_req(&reqs, |r| {
        r.path() == Some("/kz") && r.op() == OpCode::Create
    });
    let Request::Create { req, .. } = create else {
        unreachable!()
    };
    assert_eq!(req.data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        CreateMode::from_flags(req.flags),
        Some(CreateMode::Persistent)
    );
    assert_eq!(
        req.acl[0].id,
        Id {
            scheme: "world".into(),
            id: "anyone".into()
        }
    );
    assert!(create.is_write());

    let (_, _, seq) = find_req(&reqs, |r| r.op() == OpCode::Create2);
    assert_eq!(seq.path(), Some("/kz/seq-"));
    let Request::Create { req, .. } = seq else {
        unreachable!()
    };
    assert_eq!(
        CreateMode::from_flags(req.flags),
        Some(CreateMode::PersistentSequential)
    );

    let (c, h, set) = find_req(
        &reqs,
        |r| matches!(r, Request::SetData(s) if s.version == 0),
    );
    let Request::SetData(s) = set else {
        unreachable!()
    };
    assert_eq!(
        (s.path.as_str(), s.data.as_deref()),
        ("/kz", Some(&b"world"[..]))
    );
    let xids = by_xid(&replies);
    assert!(matches!(xids[&(c, h.xid)], Reply::Other(_)));

    // setData with a wrong version: BADVERSION, bare header.
    let (c, h, _) = find_req(
        &reqs,
        |r| matches!(r, Request::SetData(s) if s.version == 7),
    );
    let Reply::Header(rh) = &xids[&(c, h.xid)] else {
        panic!("header-only reply")
    };
    assert_eq!(rh.err, Code::BadVersion.as_i32());

    // exists on a missing node: NONODE and no body.
    let (c, h, _) = find_req(
        &reqs,
        |r| matches!(r, Request::Exists(e) if e.path == "/kz/none"),
    );
    let Reply::Header(rh) = &xids[&(c, h.xid)] else {
        panic!("header-only reply")
    };
    assert_eq!(rh.err, Code::NoNode.as_i32());

    let (_, h, auth) = find_req(&reqs, |r| matches!(r, Request::Auth(_)));
    assert_eq!(h.xid, xid::AUTH);
    let Request::Auth(a) = auth else {
        unreachable!()
    };
    assert_eq!((a.auth_type, a.scheme.as_str()), (0, "digest"));
    assert_eq!(a.auth.as_deref(), Some(&b"user:pass"[..]));

    let (_, _, acl) = find_req(&reqs, |r| matches!(r, Request::SetAcl(_)));
    let Request::SetAcl(s) = acl else {
        unreachable!()
    };
    assert_eq!(s.acl[0].id.scheme, "digest");
    assert!(s.acl[0].id.id.starts_with("user:"));
    assert_eq!(s.acl[0].perms, perms::ALL);

    // multi success: create, check, setData, delete.
    let multis: Vec<_> = reqs
        .iter()
        .filter(|(_, _, r)| r.op() == OpCode::Multi)
        .collect();
    assert_eq!(multis.len(), 2);
    let Request::Multi(ops) = &multis[0].2 else {
        unreachable!()
    };
    let kinds: Vec<_> = ops.iter().map(|o| o.op()).collect();
    assert_eq!(
        kinds,
        [
            OpCode::Create,
            OpCode::Check,
            OpCode::SetData,
            OpCode::Delete
        ]
    );
    assert_eq!(
        ops[1],
        MultiOp::Check(CheckVersionRequest {
            path: "/kz".into(),
            version: 1
        })
    );
    let Reply::Multi(rh, res) = &xids[&(multis[0].0, multis[0].1.xid)] else {
        panic!("multi reply")
    };
    assert_eq!(rh.err, 0);
    assert_eq!(
        res[0],
        MultiResult::Create {
            path: "/kz/m1".into()
        }
    );
    assert_eq!(res[1], MultiResult::Check);
    assert!(matches!(&res[2], MultiResult::SetData(st) if st.version == 1 && st.data_length == 2));
    assert_eq!(res[3], MultiResult::Delete);

    // multi failure: every result an error (OK, the failing code, then
    // RUNTIMEINCONSISTENCY), and the reply header's err is 0.
    let Reply::Multi(rh, res) = &xids[&(multis[1].0, multis[1].1.xid)] else {
        panic!("multi reply")
    };
    assert_eq!(rh.err, 0);
    assert_eq!(
        res,
        &[
            MultiResult::Error(Code::Ok),
            MultiResult::Error(Code::BadVersion),
            MultiResult::Error(Code::RuntimeInconsistency)
        ]
    );

    // The data watch set by exists/getData fires NodeDataChanged for /kz.
    assert!(replies
        .iter()
        .any(|(_, _, r)| matches!(r, Reply::Notification(ev)
        if ev.path == "/kz" && ev.event_type == EventType::NodeDataChanged as i32
            && ev.state == keeper_state::SYNC_CONNECTED)));
    assert!(matches!(reqs.last(), Some((_, _, Request::CloseSession))));
}

#[test]
fn raw_capture_fields() {
    let (reqs, replies) = decode_capture("raw", CAPTURES[0].1);
    let xids = by_xid(&replies);

    let (_, _, ttl) = find_req(&reqs, |r| matches!(r, Request::CreateTtl(_)));
    let Request::CreateTtl(t) = ttl else {
        unreachable!()
    };
    assert_eq!((t.path.as_str(), t.ttl), ("/rawttl", 60000));
    assert_eq!(
        CreateMode::from_flags(t.flags),
        Some(CreateMode::PersistentWithTtl)
    );

    let (_, _, eph) = find_req(&reqs, |r| {
        r.path() == Some("/rawc/e") && r.op() == OpCode::Create
    });
    let Request::Create { req, .. } = eph else {
        unreachable!()
    };
    assert_eq!(req.data, None, "null data stays null");

    let (c, h, mr) = find_req(&reqs, |r| matches!(r, Request::MultiRead(_)));
    let Request::MultiRead(ops) = mr else {
        unreachable!()
    };
    assert_eq!(ops.len(), 3);
    assert!(ops.iter().all(MultiOp::is_read));
    let Reply::Multi(_, res) = &xids[&(c, h.xid)] else {
        panic!("multiRead reply")
    };
    assert!(matches!(&res[0], MultiResult::GetData { data: Some(d), .. } if d.as_ref() == b"c"));
    assert_eq!(
        res[1],
        MultiResult::GetChildren {
            children: vec!["e".into()]
        }
    );
    // multiRead reports a failed read in place, the others succeed.
    assert_eq!(res[2], MultiResult::Error(Code::NoNode));

    let (c, h, m) = find_req(&reqs, |r| matches!(r, Request::Multi(_)));
    let Request::Multi(ops) = m else {
        unreachable!()
    };
    assert_eq!(ops.len(), 6);
    let Reply::Multi(_, res) = &xids[&(c, h.xid)] else {
        panic!("multi reply")
    };
    // createContainer and createTTL inside multi answer as create2. A create2 inside
    // multi answers as plain create in 3.8.0 (its MultiOperationRecord dropped the
    // opcode); 3.9.5 keeps create2 (`Op.create(.., defaultOpCode)`), which is what our
    // server follows. Both layouts decode.
    assert_eq!(
        res[0],
        MultiResult::Create {
            path: "/rawm".into()
        }
    );
    for (i, p) in [(1, "/rawm2"), (2, "/rawm3")] {
        assert!(
            matches!(&res[i], MultiResult::Create2 { path, .. } if path == p),
            "{i}: {:?}",
            res[i]
        );
    }
    assert!(matches!(&res[3], MultiResult::SetData(_)));
    assert_eq!(res[4..], [MultiResult::Check, MultiResult::Delete]);

    let (c, h, _) = find_req(
        &reqs,
        |r| matches!(r, Request::AddWatch(a) if a.mode == AddWatchMode::PersistentRecursive as i32),
    );
    assert!(matches!(xids[&(c, h.xid)], Reply::Other(_)));
    let (c, h, _) = find_req(
        &reqs,
        |r| matches!(r, Request::CheckWatches(c) if c.path == "/rawnone"),
    );
    let Reply::Header(rh) = &xids[&(c, h.xid)] else {
        panic!()
    };
    assert_eq!(rh.err, Code::NoWatcher.as_i32());

    let (_, h, sw2) = find_req(&reqs, |r| matches!(r, Request::SetWatches2(_)));
    assert_eq!(h.xid, xid::SET_WATCHES);
    let Request::SetWatches2(s) = sw2 else {
        unreachable!()
    };
    assert_eq!(s.data_watches, ["/rawttl"]);
    assert_eq!(s.exist_watches, ["/rawnone"]);
    assert_eq!(s.persistent_recursive_watches, ["/rawc"]);

    // The trailing bytes after a getData body are tolerated (ZooKeeper answered it).
    let (c, h, _) = find_req(
        &reqs,
        |r| matches!(r, Request::GetData(g) if g.path == "/rawc" && !g.watch),
    );
    let Reply::Other(rh) = &xids[&(c, h.xid)] else {
        panic!()
    };
    assert_eq!(rh.err, 0);
    // The truncated exists was answered MARSHALLINGERROR, connection kept.
    assert!(replies.iter().any(|(_, n, r)| n == "exists"
        && matches!(r, Reply::Header(h) if h.err == Code::MarshallingError.as_i32())));
    // The unknown opcode was answered UNIMPLEMENTED.
    assert!(replies.iter().any(|(_, n, r)| n == "unknown99"
        && matches!(r, Reply::Header(h) if h.err == Code::Unimplemented.as_i32())));
    // The recursive watch on /rawc fired for a change below it.
    assert!(replies
        .iter()
        .any(|(_, _, r)| matches!(r, Reply::Notification(ev) if ev.path == "/rawc/e")));
}

// ---- property tests -------------------------------------------------------------------

fn s() -> impl Strategy<Value = String> {
    "(/[a-zA-Z0-9é]{0,6}){0,3}"
}

fn data() -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20).prop_map(Bytes::from))
}

fn stat() -> impl Strategy<Value = Stat> {
    (
        any::<[i64; 4]>(),
        any::<[i32; 3]>(),
        any::<i64>(),
        any::<[i32; 2]>(),
        any::<i64>(),
    )
        .prop_map(|(l, i, eo, j, p)| Stat {
            czxid: l[0],
            mzxid: l[1],
            ctime: l[2],
            mtime: l[3],
            version: i[0],
            cversion: i[1],
            aversion: i[2],
            ephemeral_owner: eo,
            data_length: j[0],
            num_children: j[1],
            pzxid: p,
        })
}

fn acls() -> impl Strategy<Value = Vec<Acl>> {
    proptest::collection::vec(
        (any::<i32>(), s(), s()).prop_map(|(perms, scheme, id)| Acl {
            perms,
            id: Id { scheme, id },
        }),
        0..3,
    )
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(s(), 0..3)
}

fn create_req() -> impl Strategy<Value = CreateRequest> {
    (s(), data(), acls(), 0..7i32).prop_map(|(path, data, acl, flags)| CreateRequest {
        path,
        data,
        acl,
        flags,
    })
}

fn create_ttl() -> impl Strategy<Value = CreateTtlRequest> {
    (s(), data(), acls(), any::<i32>(), any::<i64>()).prop_map(|(path, data, acl, flags, ttl)| {
        CreateTtlRequest {
            path,
            data,
            acl,
            flags,
            ttl,
        }
    })
}

fn write_op() -> impl Strategy<Value = MultiOp> {
    prop_oneof![
        (
            prop_oneof![
                Just(OpCode::Create),
                Just(OpCode::Create2),
                Just(OpCode::CreateContainer)
            ],
            create_req()
        )
            .prop_map(|(op, req)| MultiOp::Create { op, req }),
        create_ttl().prop_map(MultiOp::CreateTtl),
        (s(), any::<i32>())
            .prop_map(|(path, version)| MultiOp::Delete(DeleteRequest { path, version })),
        (s(), data(), any::<i32>()).prop_map(|(path, data, version)| MultiOp::SetData(
            SetDataRequest {
                path,
                data,
                version
            }
        )),
        (s(), any::<i32>())
            .prop_map(|(path, version)| MultiOp::Check(CheckVersionRequest { path, version })),
    ]
}

fn read_op() -> impl Strategy<Value = MultiOp> {
    prop_oneof![
        (s(), any::<bool>())
            .prop_map(|(path, watch)| MultiOp::GetData(GetDataRequest { path, watch })),
        (s(), any::<bool>())
            .prop_map(|(path, watch)| MultiOp::GetChildren(GetChildrenRequest { path, watch })),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (
            prop_oneof![
                Just(OpCode::Create),
                Just(OpCode::Create2),
                Just(OpCode::CreateContainer)
            ],
            create_req()
        )
            .prop_map(|(op, req)| Request::Create { op, req }),
        create_ttl().prop_map(Request::CreateTtl),
        (s(), any::<i32>())
            .prop_map(|(path, version)| Request::Delete(DeleteRequest { path, version })),
        (s(), any::<bool>())
            .prop_map(|(path, watch)| Request::Exists(ExistsRequest { path, watch })),
        (s(), any::<bool>())
            .prop_map(|(path, watch)| Request::GetData(GetDataRequest { path, watch })),
        (s(), data(), any::<i32>()).prop_map(|(path, data, version)| Request::SetData(
            SetDataRequest {
                path,
                data,
                version
            }
        )),
        s().prop_map(|path| Request::GetAcl(GetAclRequest { path })),
        (s(), acls(), any::<i32>())
            .prop_map(|(path, acl, version)| Request::SetAcl(SetAclRequest { path, acl, version })),
        (s(), any::<bool>())
            .prop_map(|(path, watch)| Request::GetChildren(GetChildrenRequest { path, watch })),
        (s(), any::<bool>())
            .prop_map(|(path, watch)| Request::GetChildren2(GetChildren2Request { path, watch })),
        s().prop_map(|path| Request::Sync(SyncRequest { path })),
        Just(Request::Ping),
        proptest::collection::vec(write_op(), 0..5).prop_map(Request::Multi),
        proptest::collection::vec(read_op(), 0..5).prop_map(Request::MultiRead),
        (s(), s(), s(), any::<i64>()).prop_map(|(a, b, c, d)| Request::Reconfig(ReconfigRequest {
            joining_servers: a,
            leaving_servers: b,
            new_members: c,
            cur_config_id: d
        })),
        (s(), 1..6i32).prop_map(|(path, watcher_type)| Request::CheckWatches(
            CheckWatchesRequest { path, watcher_type }
        )),
        (s(), 1..6i32).prop_map(|(path, watcher_type)| Request::RemoveWatches(
            RemoveWatchesRequest { path, watcher_type }
        )),
        s().prop_map(|prefix_path| Request::GetEphemerals(GetEphemeralsRequest { prefix_path })),
        s().prop_map(|path| Request::GetAllChildrenNumber(GetAllChildrenNumberRequest { path })),
        (any::<i64>(), strings(), strings(), strings()).prop_map(|(z, d, e, c)| {
            Request::SetWatches(SetWatches {
                relative_zxid: z,
                data_watches: d,
                exist_watches: e,
                child_watches: c,
            })
        }),
        (
            any::<i64>(),
            strings(),
            strings(),
            strings(),
            strings(),
            strings()
        )
            .prop_map(|(z, d, e, c, p, r)| {
                Request::SetWatches2(SetWatches2 {
                    relative_zxid: z,
                    data_watches: d,
                    exist_watches: e,
                    child_watches: c,
                    persistent_watches: p,
                    persistent_recursive_watches: r,
                })
            }),
        (s(), 0..2i32).prop_map(|(path, mode)| Request::AddWatch(AddWatchRequest { path, mode })),
        Just(Request::WhoAmI),
        (any::<i32>(), s(), data()).prop_map(|(auth_type, scheme, auth)| Request::Auth(
            AuthPacket {
                auth_type,
                scheme,
                auth
            }
        )),
        data().prop_map(|token| Request::Sasl(SaslToken { token })),
        Just(Request::CloseSession),
    ]
}

fn multi_result() -> impl Strategy<Value = MultiResult> {
    prop_oneof![
        s().prop_map(|path| MultiResult::Create { path }),
        (s(), stat()).prop_map(|(path, stat)| MultiResult::Create2 { path, stat }),
        Just(MultiResult::Delete),
        stat().prop_map(MultiResult::SetData),
        Just(MultiResult::Check),
        (data(), stat()).prop_map(|(data, stat)| MultiResult::GetData { data, stat }),
        strings().prop_map(|children| MultiResult::GetChildren { children }),
        prop_oneof![
            Just(Code::Ok),
            Just(Code::NoNode),
            Just(Code::BadVersion),
            Just(Code::RuntimeInconsistency)
        ]
        .prop_map(MultiResult::Error),
    ]
}

fn round_trip<T: Jute + PartialEq + std::fmt::Debug>(v: &T) {
    let b = v.to_bytes();
    assert!(b.len() >= T::MIN_SIZE);
    assert_eq!(&T::from_bytes(&b).expect("decodes"), v);
}

proptest! {
    #[test]
    fn requests_round_trip(req in request(), xid in any::<i32>()) {
        let mut out = Vec::new();
        frame::write_frame(&mut out, |o| req.encode(xid, o));
        let Split::Frame { payload, consumed } = frame::split(&out, usize::MAX).unwrap() else { panic!() };
        prop_assert_eq!(consumed, out.len());
        let (hdr, back) = Request::decode_payload(payload).unwrap();
        prop_assert_eq!(hdr, RequestHeader { xid, op: req.op() as i32 });
        prop_assert_eq!(&back, &req);
        // A multi holds at most payload / MULTI_OP_MIN_SIZE ops.
        if let Request::Multi(ops) | Request::MultiRead(ops) = &back {
            prop_assert!(ops.len() <= payload.len() / MULTI_OP_MIN_SIZE);
        }
    }

    #[test]
    fn mixing_reads_and_writes_is_malformed(w in write_op(), r in read_op(), read_first in any::<bool>()) {
        let ops = if read_first { vec![r, w] } else { vec![w, r] };
        for req in [Request::Multi(ops.clone()), Request::MultiRead(ops)] {
            let mut out = Vec::new();
            req.encode(1, &mut out);
            let err = Request::decode_payload(&out).unwrap_err();
            prop_assert_eq!(err.action(), ErrorAction::Reply(Code::MarshallingError));
        }
    }

    #[test]
    fn multi_responses_round_trip(results in proptest::collection::vec(multi_result(), 0..6)) {
        let mut out = Vec::new();
        encode_multi_response(&results, &mut out);
        let mut r = Reader::new(&out);
        prop_assert_eq!(decode_multi_response(&mut r).unwrap(), results);
        prop_assert!(r.is_empty());
    }

    #[test]
    fn reply_records_round_trip(st in stat(), d in data(), p in s(), ch in strings(), a in acls(), n in any::<i32>()) {
        round_trip(&st);
        round_trip(&ExistsResponse { stat: st.clone() });
        round_trip(&SetDataResponse { stat: st.clone() });
        round_trip(&SetAclResponse { stat: st.clone() });
        round_trip(&GetDataResponse { data: d.clone(), stat: st.clone() });
        round_trip(&CreateResponse { path: p.clone() });
        round_trip(&Create2Response { path: p.clone(), stat: st.clone() });
        round_trip(&SyncResponse { path: p.clone() });
        round_trip(&GetChildrenResponse { children: ch.clone() });
        round_trip(&GetChildren2Response { children: ch.clone(), stat: st.clone() });
        round_trip(&GetAclResponse { acl: a, stat: st });
        round_trip(&GetEphemeralsResponse { ephemerals: ch.clone() });
        round_trip(&GetAllChildrenNumberResponse { total_number: n });
        round_trip(&WhoAmIResponse { client_info: ch.iter().map(|c| ClientInfo { auth_scheme: c.clone(), user: p.clone() }).collect() });
        round_trip(&ErrorResponse { err: n });
        round_trip(&ReplyHeader { xid: n, zxid: n as i64 * 3, err: n });
        round_trip(&MultiHeader { op: n, done: n & 1 == 0, err: n.wrapping_neg() });
        round_trip(&WatcherEvent { event_type: n, state: 3, path: p.clone() });
        round_trip(&SaslToken { token: d.clone() });
        round_trip(&ConnectRequest { protocol_version: 0, last_zxid_seen: n as i64, timeout_ms: n, session_id: 7, passwd: d.clone(), read_only: None });
        round_trip(&ConnectRequest { protocol_version: 0, last_zxid_seen: 1, timeout_ms: n, session_id: 7, passwd: d.clone(), read_only: Some(n & 1 == 0) });
        round_trip(&ConnectResponse { protocol_version: 0, timeout_ms: n, session_id: 7, passwd: d.clone(), read_only: None });
        round_trip(&ConnectResponse { protocol_version: 0, timeout_ms: n, session_id: 7, passwd: d, read_only: Some(true) });
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
        decode_everything(&buf);
    }

    #[test]
    fn mutated_captures_never_panic(idx in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), cut in any::<prop::sample::Index>()) {
        let frames: Vec<Captured> = CAPTURES.iter().flat_map(|(_, t)| parse(t)).collect();
        let mut f = frames[idx.index(frames.len())].frame.clone();
        for (at, b) in flips {
            let i = at.index(f.len());
            f[i] ^= b;
        }
        f.truncate(cut.index(f.len() + 1));
        decode_everything(&f);
        if f.len() > 4 {
            decode_everything(&f[4..]);
        }
    }
}

/// Feeds `buf` to every decoder that faces the network; only errors are allowed.
fn decode_everything(buf: &[u8]) {
    let _ = frame::split_first(buf, DEFAULT_MAX_BUFFER);
    if let Ok(Split::Frame { payload, .. }) = frame::split(buf, DEFAULT_MAX_BUFFER) {
        let _ = Request::decode_payload(payload);
    }
    let _ = Request::decode_payload(buf);
    let _ = ConnectRequest::from_bytes(buf);
    let _ = ConnectResponse::from_bytes(buf);
    let _ = decode_multi_response(&mut Reader::new(buf));
    let _ = WatcherEvent::from_bytes(buf);
}
