//! Load attribution's cost per request, without a server around it: a shard's
//! `Observe` fed what a setData's decode and answer feed it, on the paths zkbench writes
//! (`/zkbench/k0000000042`: with 10,000 keys every path is its own prefix, so nearly
//! every request replaces the sketch's least-counted key, the dearest case) and on a
//! few hot prefixes (`/app/locks/lock-N`: the sketch holds them all). Prints ns per
//! request for each, to set against the server's CPU per write (about 4-5 us standalone
//! under zkbench's 16x16 setData).
//!
//! Run: `cargo bench --bench observe -- [REQUESTS]`. With `--test` (as `cargo test
//! --benches` passes) it runs a few thousand requests and checks the hot prefix is
//! found, so it cannot rot.

use bytes::Bytes;
use ringkeeper::proto::records::SetDataRequest;
use ringkeeper::proto::request::Request;
use ringkeeper::sequencer::msg::{ConnRef, Origin};
use ringkeeper::server::observe::{Observe, OpsSettings};
use std::net::SocketAddr;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Feeds `n` setData requests and their answers; returns ns per request.
fn run(ob: &mut Observe, paths: &[Request], n: usize, sessions: usize) -> f64 {
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let t = Instant::now();
    for i in 0..n {
        let slot = i % sessions;
        let session = 0x1000 + slot as i64;
        let req = &paths[i % paths.len()];
        ob.request(slot, session, peer, req, 150);
        let o = Origin {
            conn: ConnRef {
                shard: 0,
                slot,
                gen: 1,
            },
            xid: i as i32,
            op: req.op(),
            received: t,
        };
        ob.write_answered(&o, session, peer, 36, i as i64, None);
        if i % 65_536 == 0 {
            // A tick folds connection counts into the sketches, as the shard does.
            ob.fold();
        }
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn set_data(path: String) -> Request {
    Request::SetData(SetDataRequest {
        path,
        data: Some(Bytes::from_static(&[0u8; 100])),
        version: -1,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = args.iter().any(|a| a == "--test");
    let n: usize = if test {
        5_000
    } else {
        args.iter()
            .find_map(|a| a.parse().ok())
            .unwrap_or(5_000_000)
    };
    let on = OpsSettings::default();
    let cases: [(&str, Vec<Request>); 2] = [
        (
            "zkbench paths (10,000 distinct prefixes)",
            (0..10_000u64)
                .map(|i| set_data(format!("/zkbench/k{i:010}")))
                .collect(),
        ),
        (
            "8 hot prefixes (/app/<p>/lock-N)",
            (0..10_000u64)
                .map(|i| set_data(format!("/app/p{}/lock-{i}", i % 8)))
                .collect(),
        ),
    ];
    for (name, paths) in &cases {
        let mut ob = Observe::new(&on).expect("attribution is on");
        // Warm up, then measure.
        run(&mut ob, paths, n / 10 + 1, 16);
        let ns = run(&mut ob, paths, n, 16);
        println!("{name}: {ns:.1} ns per request (attribution on, {n} requests)");
        if test {
            ob.fold();
            let load = ob.load.as_ref().expect("on");
            assert!(load.ops > 0, "requests were counted");
            if name.starts_with('8') {
                assert!(
                    load.paths.entries().iter().any(|(p, _)| p == "/app/p3"),
                    "a hot prefix is in the sketch"
                );
            }
        }
    }
}
