//! Echo round trips per second through one `Reactor` with N connections.
//!
//! `cargo bench --bench io_echo [-- CONNECTIONS [SECONDS]]` measures (defaults: 64
//! connections, 3 s). Without `--bench` (as `cargo test --benches` runs it) it does
//! a few hundred round trips so the benchmark cannot rot.
//!
//! Clients are blocking std sockets on `CLIENT_THREADS` threads; each thread writes
//! one 32-byte message to every one of its connections, then reads every echo, so
//! each connection has one request in flight (a closed-loop load).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ringkeeper::io::{CloseReason, Config, Handler, Ops, Reactor, Token};

const CLIENT_THREADS: usize = 2;
const MESSAGE: usize = 32;

struct Echo;
impl Handler for Echo {
    fn on_data(&mut self, ops: &mut Ops, token: Token, data: &[u8]) {
        ops.send(token, data);
    }
    fn on_closed(&mut self, _: &mut Ops, _: Token, _: CloseReason) {}
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let conns = nums.first().copied().unwrap_or(64) as usize;
    let secs = nums.get(1).copied().unwrap_or(3);
    // A smoke run stops after this many round trips per thread instead of a duration.
    let smoke_rounds = 50u64;

    let (tx, rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let mut reactor = Reactor::new(Config::default()).unwrap_or_else(|e| panic!("{e}"));
        let (_, addr) = reactor
            .listen("127.0.0.1:0".parse().unwrap(), 1024)
            .unwrap();
        tx.send((addr, reactor.stop_handle(), reactor.defer_taskrun()))
            .unwrap();
        reactor.run(&mut Echo).unwrap();
    });
    let (addr, stop, defer) = rx.recv().unwrap();

    let deadline = Instant::now() + Duration::from_secs(if full { secs } else { 30 });
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            // Spread exactly `conns` connections over the threads.
            let per_thread = conns / CLIENT_THREADS + usize::from(t < conns % CLIENT_THREADS);
            thread::spawn(move || {
                let mut streams: Vec<TcpStream> = (0..per_thread)
                    .map(|_| {
                        let s = TcpStream::connect(addr).unwrap();
                        s.set_nodelay(true).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        s
                    })
                    .collect();
                let msg = [7u8; MESSAGE];
                let mut buf = [0u8; MESSAGE];
                let mut rounds = 0u64;
                while Instant::now() < deadline && (full || rounds < smoke_rounds) {
                    for s in &mut streams {
                        s.write_all(&msg).unwrap();
                    }
                    for s in &mut streams {
                        s.read_exact(&mut buf).unwrap();
                        assert_eq!(buf, msg);
                    }
                    rounds += 1;
                }
                rounds * streams.len() as u64
            })
        })
        .collect();
    let total: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let elapsed = start.elapsed().as_secs_f64();
    stop.stop();
    server.join().unwrap();
    println!(
        "io_echo: {conns} connections, {MESSAGE}-byte messages, {total} round trips in \
         {elapsed:.2} s = {:.0} round trips/s (defer_taskrun: {defer}{})",
        total as f64 / elapsed,
        if full { "" } else { ", smoke run" }
    );
}
