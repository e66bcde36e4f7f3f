//! Starts the real server (io_uring shards + sequencer) in-process on loopback and talks
//! to it with the project's codec over plain sockets: handshake, writes, reads, watches,
//! multi, session resume and expiry answers, hostile frames.

use ringkeeper::proto::frame;
use ringkeeper::proto::request::{decode_multi_response, MultiResult};
use ringkeeper::proto::*;
use ringkeeper::server::{self, ServerConfig};
use ringkeeper::tree::DataTree;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

struct Client {
    s: TcpStream,
    xid: i32,
    session_id: i64,
    passwd: Vec<u8>,
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

impl Client {
    fn connect_with(addr: SocketAddr, session_id: i64, passwd: &[u8]) -> (Client, ConnectResponse) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms: 10_000,
            session_id,
            passwd: Some(passwd.to_vec().into()),
            read_only: Some(false),
        };
        let mut out = Vec::new();
        frame::write_frame(&mut out, |o| req.write(o));
        s.write_all(&out).unwrap();
        let resp = ConnectResponse::from_bytes(&read_frame(&mut s).unwrap()).unwrap();
        let c = Client {
            s,
            xid: 0,
            session_id: resp.session_id,
            passwd: resp.passwd.clone().unwrap_or_default().to_vec(),
        };
        (c, resp)
    }

    fn connect(addr: SocketAddr) -> Client {
        Client::connect_with(addr, 0, &[0u8; 16]).0
    }

    fn send(&mut self, req: &Request) -> i32 {
        self.xid += 1;
        let mut out = Vec::new();
        frame::write_frame(&mut out, |o| req.encode(self.xid, o));
        self.s.write_all(&out).unwrap();
        self.xid
    }

    /// Reads the next reply, returning (header, body).
    fn recv(&mut self) -> (ReplyHeader, Vec<u8>) {
        let f = read_frame(&mut self.s).unwrap();
        let mut r = Reader::new(&f);
        let h = ReplyHeader::read(&mut r).unwrap();
        (h, f[16..].to_vec())
    }

    fn call(&mut self, req: &Request) -> (ReplyHeader, Vec<u8>) {
        let xid = self.send(req);
        let (h, b) = self.recv();
        assert_eq!(h.xid, xid, "replies come in request order");
        (h, b)
    }

    fn create(&mut self, path: &str, data: &[u8], flags: i32) -> Result<String, i32> {
        let (h, b) = self.call(&Request::Create {
            op: OpCode::Create,
            req: CreateRequest {
                path: path.into(),
                data: Some(data.to_vec().into()),
                acl: vec![Acl {
                    perms: perms::ALL,
                    id: Id {
                        scheme: "world".into(),
                        id: "anyone".into(),
                    },
                }],
                flags,
            },
        });
        if h.err != 0 {
            return Err(h.err);
        }
        Ok(CreateResponse::from_bytes(&b).unwrap().path)
    }

    /// Creates every path (empty, open ACL) in multis of `per_multi` creates each.
    fn create_all(&mut self, paths: impl Iterator<Item = String>, per_multi: usize) {
        let paths: Vec<String> = paths.collect();
        for chunk in paths.chunks(per_multi) {
            let ops = chunk
                .iter()
                .map(|p| MultiOp::Create {
                    op: OpCode::Create,
                    req: CreateRequest {
                        path: p.clone(),
                        data: None,
                        acl: ringkeeper::tree::open_acl_unsafe(),
                        flags: 0,
                    },
                })
                .collect();
            let (h, _) = self.call(&Request::Multi(ops));
            assert_eq!(h.err, 0, "multi of creates");
        }
    }

    fn get(&mut self, path: &str, watch: bool) -> Result<GetDataResponse, i32> {
        let (h, b) = self.call(&Request::GetData(GetDataRequest {
            path: path.into(),
            watch,
        }));
        if h.err != 0 {
            return Err(h.err);
        }
        Ok(GetDataResponse::from_bytes(&b).unwrap())
    }
}

fn start(shards: usize) -> server::Running {
    let mut cfg = ServerConfig::standalone("127.0.0.1:0".parse().unwrap(), shards);
    cfg.settings.fourlw_whitelist = ringkeeper::config::FourLetterWhitelist::all();
    server::start(cfg, DataTree::new(), 0).expect("server starts")
}

#[test]
fn create_get_set_delete_round_trip() {
    let srv = start(2);
    let mut c = Client::connect(srv.local_addr);
    assert_ne!(c.session_id, 0);
    assert_eq!(c.create("/a", b"hello", 0), Ok("/a".into()));
    assert_eq!(c.create("/a", b"x", 0), Err(Code::NodeExists as i32));
    let d = c.get("/a", false).unwrap();
    assert_eq!(d.data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(d.stat.version, 0);
    let (h, b) = c.call(&Request::SetData(SetDataRequest {
        path: "/a".into(),
        data: Some(b"v2".to_vec().into()),
        version: 0,
    }));
    assert_eq!(h.err, 0);
    let st = SetDataResponse::from_bytes(&b).unwrap().stat;
    assert_eq!(st.version, 1);
    assert!(h.zxid > d.stat.czxid);
    let (h, _) = c.call(&Request::SetData(SetDataRequest {
        path: "/a".into(),
        data: None,
        version: 0,
    }));
    assert_eq!(h.err, Code::BadVersion as i32);
    let seq = c.create("/a/s-", b"", 2).unwrap();
    assert_eq!(seq, "/a/s-0000000000");
    let (h, _) = c.call(&Request::Delete(DeleteRequest {
        path: "/a".into(),
        version: -1,
    }));
    assert_eq!(h.err, Code::NotEmpty as i32);
    assert_eq!(c.get("/nope", false).unwrap_err(), Code::NoNode as i32);
    srv.shutdown();
}

#[test]
fn watch_fires_before_the_reply_that_shows_the_change() {
    let srv = start(2);
    let mut a = Client::connect(srv.local_addr);
    let mut b = Client::connect(srv.local_addr);
    a.create("/w", b"0", 0).unwrap();
    a.get("/w", true).unwrap();
    // b changes the node; a's next read must see the notification first.
    b.call(&Request::SetData(SetDataRequest {
        path: "/w".into(),
        data: Some(b"1".to_vec().into()),
        version: -1,
    }));
    let xid = a.send(&Request::GetData(GetDataRequest {
        path: "/w".into(),
        watch: false,
    }));
    let (h, body) = a.recv();
    assert_eq!(
        h.xid,
        xid::NOTIFICATION,
        "notification precedes the read's reply"
    );
    let ev = WatcherEvent::from_bytes(&body).unwrap();
    assert_eq!(ev.event_type, EventType::NodeDataChanged as i32);
    assert_eq!(ev.path, "/w");
    let (h, body) = a.recv();
    assert_eq!(h.xid, xid);
    assert_eq!(
        GetDataResponse::from_bytes(&body).unwrap().data.as_deref(),
        Some(&b"1"[..])
    );
    srv.shutdown();
}

#[test]
fn failed_multi_answers_per_op_errors_and_changes_nothing() {
    let srv = start(1);
    let mut c = Client::connect(srv.local_addr);
    let acl = vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }];
    let mk = |p: &str| MultiOp::Create {
        op: OpCode::Create,
        req: CreateRequest {
            path: p.into(),
            data: None,
            acl: acl.clone(),
            flags: 0,
        },
    };
    let (h, b) = c.call(&Request::Multi(vec![
        mk("/m1"),
        mk("/missing/x"),
        mk("/m2"),
    ]));
    assert_eq!(h.err, 0, "a failed multi answers OK in the header");
    let rs = decode_multi_response(&mut Reader::new(&b)).unwrap();
    assert_eq!(
        rs,
        vec![
            MultiResult::Error(Code::Ok),
            MultiResult::Error(Code::NoNode),
            MultiResult::Error(Code::RuntimeInconsistency)
        ]
    );
    assert_eq!(c.get("/m1", false).unwrap_err(), Code::NoNode as i32);
    let (h, b) = c.call(&Request::Multi(vec![mk("/m1"), mk("/m1/x")]));
    assert_eq!(h.err, 0);
    let rs = decode_multi_response(&mut Reader::new(&b)).unwrap();
    assert_eq!(
        rs,
        vec![
            MultiResult::Create { path: "/m1".into() },
            MultiResult::Create {
                path: "/m1/x".into()
            }
        ]
    );
    srv.shutdown();
}

#[test]
fn session_resumes_with_password_and_keeps_ephemerals() {
    let srv = start(2);
    let mut a = Client::connect(srv.local_addr);
    a.create("/eph", b"", 1).unwrap();
    let (id, pw) = (a.session_id, a.passwd.clone());
    drop(a);
    let (mut b, resp) = Client::connect_with(srv.local_addr, id, &pw);
    assert_eq!(resp.session_id, id);
    let d = b.get("/eph", false).unwrap();
    assert_eq!(d.stat.ephemeral_owner, id);
    // A wrong password is refused with a zero session, and (as in ZooKeeper) the
    // session's current connection is closed too; the session itself lives on.
    let (_, resp) = Client::connect_with(srv.local_addr, id, &[7u8; 16]);
    assert_eq!(resp.session_id, 0);
    assert_eq!(resp.timeout_ms, 0);
    let mut buf = [0u8; 1];
    assert_eq!(b.s.read(&mut buf).unwrap_or(0), 0, "old connection closed");
    let (mut b, resp) = Client::connect_with(srv.local_addr, id, &pw);
    assert_eq!(resp.session_id, id);
    // closeSession deletes the ephemeral.
    let (h, _) = b.call(&Request::CloseSession);
    assert_eq!(h.err, 0);
    let mut c = Client::connect(srv.local_addr);
    assert_eq!(c.get("/eph", false).unwrap_err(), Code::NoNode as i32);
    srv.shutdown();
}

#[test]
fn oversized_frame_closes_only_that_connection() {
    let srv = start(1);
    let mut good = Client::connect(srv.local_addr);
    let mut bad = TcpStream::connect(srv.local_addr).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    bad.write_all(&(64 * 1024 * 1024i32).to_be_bytes()).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(bad.read(&mut buf).unwrap_or(0), 0, "the server closes it");
    good.create("/still", b"ok", 0).unwrap();
    srv.shutdown();
}

#[test]
fn four_letter_words_answer_on_the_client_port() {
    let srv = start(1);
    let mut s = TcpStream::connect(srv.local_addr).unwrap();
    s.write_all(b"ruok").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out, "imok");
    srv.shutdown();
}

/// `echo ruok | nc host port` sends the word and shuts down its side at once. With two
/// shards the answer waits for the other shard's picture, and the end of stream used to
/// close the connection first: the client read nothing, now and then.
#[test]
fn four_letter_word_answers_a_client_that_half_closed() {
    let srv = start(2);
    for word in ["ruok", "srvr", "cons", "mntr"] {
        for _ in 0..50 {
            let mut s = TcpStream::connect(srv.local_addr).unwrap();
            s.write_all(word.as_bytes()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            match word {
                "ruok" => assert_eq!(out, "imok"),
                "srvr" => assert!(out.contains("Mode: standalone"), "{word}: {out:?}"),
                "cons" => assert!(out.contains("127.0.0.1"), "{word}: {out:?}"),
                _ => assert!(out.contains("zk_server_state"), "{word}: {out:?}"),
            }
        }
    }
    srv.shutdown();
}

#[test]
fn prometheus_endpoint_serves_write_stages() {
    let mut cfg = ServerConfig::standalone("127.0.0.1:0".parse().unwrap(), 1);
    cfg.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.settings.fourlw_whitelist = ringkeeper::config::FourLetterWhitelist::all();
    let srv = server::start(cfg, DataTree::new(), 0).expect("server starts");
    let mut c = Client::connect(srv.local_addr);
    for i in 0..5 {
        c.create(&format!("/p{i}"), b"x", 0).unwrap();
    }
    c.get("/p0", false).unwrap();
    let mut h = TcpStream::connect(srv.metrics_addr.expect("metrics bound")).unwrap();
    h.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    h.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    h.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    // Five creates went through every write stage; one read was timed.
    for stage in [
        "write_queued",
        "write_sequenced",
        "write_proposed",
        "write_logged",
        "write_committed",
        "write_answered",
        "write_total",
    ] {
        let line = format!("ringkeeper_latency_seconds_count{{stage=\"{stage}\"}} 5\n");
        assert!(body.contains(&line), "missing {line} in\n{body}");
    }
    assert!(body.contains("ringkeeper_latency_seconds_count{stage=\"read_total\"} 1\n"));
    // And mntr carries the same breakdown.
    let mut s = TcpStream::connect(srv.local_addr).unwrap();
    s.write_all(b"mntr").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains("zk_rk_write_total_count\t5\n"), "{out}");
    srv.shutdown();
}

/// A write answered on one connection is visible to reads sent afterwards on any other
/// connection of the same server, whichever shard holds it (as with one ZooKeeper
/// server). Eight connections over two shards: some pair is on different shards.
#[test]
fn acknowledged_writes_are_visible_on_every_shard() {
    let srv = start(2);
    let mut clients: Vec<Client> = (0..8).map(|_| Client::connect(srv.local_addr)).collect();
    for n in 0..100 {
        let writer = n % clients.len();
        let path = format!("/x{n}");
        clients[writer].create(&path, b"v", 0).unwrap();
        for (i, c) in clients.iter_mut().enumerate() {
            assert!(
                c.get(&path, false).is_ok(),
                "client {i} did not see {path}, acknowledged to client {writer}"
            );
        }
    }
    srv.shutdown();
}

/// A getChildren over `bulkReadChildren` is built off the shard's thread (server::bulk);
/// the connection must see exactly what it would have seen otherwise: the replies in
/// request order, the requests pipelined behind it run after it, and a watch event
/// caused meanwhile by another session after the reply that set the watch.
#[test]
fn big_children_lists_are_answered_in_order_off_the_shard() {
    let mut cfg = ServerConfig::standalone("127.0.0.1:0".parse().unwrap(), 1);
    cfg.settings.bulk_children = 50;
    let srv = server::start(cfg, DataTree::new(), 0).expect("server starts");
    let mut a = Client::connect(srv.local_addr);
    let mut b = Client::connect(srv.local_addr);
    a.create("/big", b"", 0).unwrap();
    let n = 20_000;
    a.create_all((0..n).map(|i| format!("/big/c{i:05}")), 1000);
    // a pipelines: the big list with a child watch, a small read, a write, the list again.
    let x1 = a.send(&Request::GetChildren2(GetChildren2Request {
        path: "/big".into(),
        watch: true,
    }));
    let x2 = a.send(&Request::GetData(GetDataRequest {
        path: "/big/c00007".into(),
        watch: false,
    }));
    let x3 = a.send(&Request::SetData(SetDataRequest {
        path: "/big".into(),
        data: Some(b"after".to_vec().into()),
        version: -1,
    }));
    let x4 = a.send(&Request::GetChildren(GetChildrenRequest {
        path: "/big".into(),
        watch: false,
    }));
    // Meanwhile another session adds a child (it may land while the list is built).
    assert_eq!(b.create("/big/zz", b"", 0), Ok("/big/zz".into()));

    let (h, body) = a.recv();
    assert_eq!(h.xid, x1, "the big list is answered first");
    assert_eq!(h.err, 0);
    let r = GetChildren2Response::from_bytes(&body).unwrap();
    let had_zz = r.children.iter().any(|c| c == "zz");
    assert_eq!(r.children.len(), n + usize::from(had_zz));
    assert_eq!(r.stat.num_children as usize, r.children.len());
    let mut names = r.children.clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), r.children.len(), "no name twice");
    assert!(names.contains(&"c19999".to_string()));

    // Unless the list already showed /big/zz, the child event comes next (before the
    // replies to the requests behind the list); it never comes before the list.
    let mut next = a.recv();
    if !had_zz {
        assert_eq!(
            next.0.xid,
            xid::NOTIFICATION,
            "the watch set by the list fires"
        );
        let ev = WatcherEvent::from_bytes(&next.1).unwrap();
        assert_eq!(ev.event_type, EventType::NodeChildrenChanged as i32);
        assert_eq!(ev.path, "/big");
        next = a.recv();
    }
    assert_eq!(next.0.xid, x2);
    assert_eq!(
        GetDataResponse::from_bytes(&next.1)
            .unwrap()
            .stat
            .num_children,
        0
    );
    let (h, _) = a.recv();
    assert_eq!(h.xid, x3);
    assert_eq!(h.err, 0);
    let (h, body) = a.recv();
    assert_eq!(h.xid, x4);
    let r = GetChildrenResponse::from_bytes(&body).unwrap();
    assert_eq!(r.children.len(), n + 1, "the second list sees /big/zz");
    // The connection still serves small requests as usual.
    assert_eq!(
        a.get("/big", false).unwrap().data.as_deref(),
        Some(&b"after"[..])
    );
    srv.shutdown();
}

/// A multiRead whose getChildren ops list more than `bulkReadChildren` names is built on
/// the bulk-reply thread like a big getChildren (the server counts it in
/// `zk_rk_bulk_replies`): its results are each op's, in order (a failed op is its error,
/// the others still answer), the requests pipelined behind it are answered after it,
/// and its child watch fires for a later change. A multiRead listing few names is built
/// on the shard.
#[test]
fn a_multi_read_listing_many_children_is_answered_in_order_off_the_shard() {
    use ringkeeper::proto::request::MultiOp;
    let mut cfg = ServerConfig::standalone("127.0.0.1:0".parse().unwrap(), 1);
    cfg.settings.bulk_children = 50;
    let srv = server::start(cfg, DataTree::new(), 0).expect("server starts");
    let bulk = || {
        srv.state
            .bulk_replies
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut a = Client::connect(srv.local_addr);
    let mut b = Client::connect(srv.local_addr);
    a.create("/big", b"", 0).unwrap();
    a.create("/small", b"s", 0).unwrap();
    let n = 2_000;
    a.create_all((0..n).map(|i| format!("/big/c{i:04}")), 500);
    a.create_all((0..3).map(|i| format!("/small/c{i}")), 3);
    let children = |path: &str, watch: bool| {
        MultiOp::GetChildren(GetChildrenRequest {
            path: path.into(),
            watch,
        })
    };
    let data = |path: &str| {
        MultiOp::GetData(GetDataRequest {
            path: path.into(),
            watch: false,
        })
    };

    // Few names: built on the shard.
    let (h, body) = a.call(&Request::MultiRead(vec![
        children("/small", false),
        data("/small"),
    ]));
    assert_eq!(h.err, 0);
    let rs = decode_multi_response(&mut Reader::new(&body)).unwrap();
    assert_eq!(rs.len(), 2);
    assert!(matches!(&rs[0], MultiResult::GetChildren { children } if children.len() == 3));
    assert_eq!(bulk(), 0, "a small multiRead is built on the shard");

    // Many names, pipelined with a read behind it.
    let x1 = a.send(&Request::MultiRead(vec![
        children("/big", true),
        data("/small"),
        children("/missing", false),
        children("/small", false),
    ]));
    let x2 = a.send(&Request::GetData(GetDataRequest {
        path: "/small".into(),
        watch: false,
    }));
    let (h, body) = a.recv();
    assert_eq!(h.xid, x1, "the multiRead is answered first");
    assert_eq!(h.err, 0);
    let rs = decode_multi_response(&mut Reader::new(&body)).unwrap();
    assert_eq!(rs.len(), 4);
    let MultiResult::GetChildren { children: names } = &rs[0] else {
        panic!("not a children list: {:?}", rs[0]);
    };
    assert_eq!(names.len(), n);
    assert!(names.contains(&"c1999".to_string()));
    assert!(
        matches!(&rs[1], MultiResult::GetData { data, .. } if data.as_deref() == Some(&b"s"[..]))
    );
    assert_eq!(rs[2], MultiResult::Error(Code::NoNode));
    assert!(matches!(&rs[3], MultiResult::GetChildren { children } if children.len() == 3));
    let (h, _) = a.recv();
    assert_eq!(h.xid, x2, "the read behind it comes after it");
    assert_eq!(bulk(), 1, "the big multiRead went to the bulk-reply thread");

    // The child watch it set fires.
    assert_eq!(b.create("/big/zz", b"", 0), Ok("/big/zz".into()));
    let (h, body) = a.recv();
    assert_eq!(h.xid, xid::NOTIFICATION);
    let ev = WatcherEvent::from_bytes(&body).unwrap();
    assert_eq!(ev.event_type, EventType::NodeChildrenChanged as i32);
    assert_eq!(ev.path, "/big");
    srv.shutdown();
}

/// One reply bigger than the bound on a connection's unsent output (16 MiB, which drops
/// clients that stopped reading) still reaches a client that reads: 20,000 children with
/// 900-byte names make an 18 MB getChildren reply.
#[test]
fn a_reply_bigger_than_the_unsent_bound_reaches_a_reading_client() {
    let srv = start(1);
    let mut a = Client::connect(srv.local_addr);
    a.create("/wide", b"", 0).unwrap();
    let n = 20_000;
    let pad = "n".repeat(894);
    a.create_all((0..n).map(|i| format!("/wide/{pad}{i:05}")), 500);
    let (h, body) = a.call(&Request::GetChildren(GetChildrenRequest {
        path: "/wide".into(),
        watch: false,
    }));
    assert_eq!(h.err, 0);
    assert!(
        body.len() > 17 << 20,
        "the reply is over 16 MiB: {}",
        body.len()
    );
    let r = GetChildrenResponse::from_bytes(&body).unwrap();
    assert_eq!(r.children.len(), n);
    assert!(r.children.contains(&format!("{pad}19999")));
    // The connection goes on.
    assert_eq!(a.get("/wide", false).unwrap().stat.num_children, n as i32);
    srv.shutdown();
}
