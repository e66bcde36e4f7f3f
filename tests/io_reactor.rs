//! The reactor against real sockets: std `TcpStream` clients on 127.0.0.1 talk to
//! an echo handler running on its own reactor thread.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ringkeeper::io::{
    CloseReason, Config, Handler, ListenerId, Ops, Reactor, Status, StopHandle, Token, Waker,
};

/// Upper bound for any wait in these tests (they finish far sooner when correct).
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Shared {
    accepted: Mutex<Vec<(Token, SocketAddr)>>,
    closed: Mutex<HashMap<Token, Vec<CloseReason>>>,
    ticks: AtomicUsize,
    wakes: AtomicUsize,
    /// Items other threads pushed, drained in `on_wake`.
    queue: Mutex<Vec<u32>>,
    drained: Mutex<Vec<u32>>,
    paused_seen: AtomicBool,
    max_output: AtomicUsize,
    /// Commands from the test thread, run in `on_wake`.
    commands: Mutex<Vec<Command>>,
}

enum Command {
    Close(Token),
    Abort(Token),
    SendAndClose(Token, Vec<u8>),
    Pause(Token),
    Resume(Token),
}

struct Echo {
    shared: Arc<Shared>,
    live: Vec<Token>,
}

impl Handler for Echo {
    fn on_accept(&mut self, ops: &mut Ops, token: Token, peer: SocketAddr, _l: ListenerId) {
        assert_eq!(ops.peer_addr(token), Some(peer));
        assert!(peer.ip().is_loopback());
        self.live.push(token);
        self.shared.accepted.lock().unwrap().push((token, peer));
    }
    fn on_data(&mut self, ops: &mut Ops, token: Token, data: &[u8]) {
        assert!(!data.is_empty());
        assert!(ops.send(token, data), "send on a live token");
        let queued = ops.output_len(token).unwrap();
        self.shared.max_output.fetch_max(queued, Ordering::Relaxed);
    }
    fn on_closed(&mut self, ops: &mut Ops, token: Token, reason: CloseReason) {
        // A closed token is dead for every operation.
        assert!(!ops.is_open(token));
        assert!(!ops.send(token, b"late"));
        assert_eq!(ops.peer_addr(token), None);
        self.live.retain(|t| *t != token);
        self.shared
            .closed
            .lock()
            .unwrap()
            .entry(token)
            .or_default()
            .push(reason);
    }
    fn on_wake(&mut self, ops: &mut Ops) {
        self.shared.wakes.fetch_add(1, Ordering::Relaxed);
        let items = std::mem::take(&mut *self.shared.queue.lock().unwrap());
        self.shared.drained.lock().unwrap().extend(items);
        for cmd in std::mem::take(&mut *self.shared.commands.lock().unwrap()) {
            match cmd {
                Command::Close(t) => ops.close(t),
                Command::Abort(t) => ops.abort(t),
                Command::Pause(t) => ops.pause(t),
                Command::Resume(t) => ops.resume(t),
                Command::SendAndClose(t, bytes) => {
                    assert!(ops.send(t, &bytes));
                    ops.close(t);
                }
            }
        }
    }
    fn on_tick(&mut self, ops: &mut Ops) {
        self.shared.ticks.fetch_add(1, Ordering::Relaxed);
        for &t in &self.live {
            if ops.is_paused(t) {
                self.shared.paused_seen.store(true, Ordering::Relaxed);
            }
        }
    }
}

struct Server {
    addr: SocketAddr,
    waker: Waker,
    stop: StopHandle,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(config: Config) -> Server {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let s = shared.clone();
        let thread = thread::spawn(move || {
            // Created on its own thread: the ring is SINGLE_ISSUER.
            let mut reactor = Reactor::new(config).unwrap_or_else(|e| panic!("{e}"));
            let (_, addr) = reactor
                .listen("127.0.0.1:0".parse().unwrap(), 1024)
                .unwrap();
            tx.send((addr, reactor.waker(), reactor.stop_handle()))
                .unwrap();
            let mut echo = Echo {
                shared: s,
                live: Vec::new(),
            };
            reactor.run(&mut echo).unwrap();
        });
        let (addr, waker, stop) = rx.recv().unwrap();
        Server {
            addr,
            waker,
            stop,
            shared,
            thread: Some(thread),
        }
    }

    fn command(&self, cmd: Command) {
        self.shared.commands.lock().unwrap().push(cmd);
        self.waker.wake();
    }

    /// Waits (bounded) until `cond` holds.
    fn wait_for(&self, what: &str, mut cond: impl FnMut(&Shared) -> bool) {
        let start = Instant::now();
        while !cond(&self.shared) {
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// The token of the connection whose client side is `client`.
    fn token_of(&self, client: &TcpStream) -> Token {
        let local = client.local_addr().unwrap();
        let mut found = None;
        self.wait_for("accept", |s| {
            found = s
                .accepted
                .lock()
                .unwrap()
                .iter()
                .find(|(_, p)| *p == local)
                .map(|(t, _)| *t);
            found.is_some()
        });
        found.unwrap()
    }

    fn closed(&self, token: Token) -> Vec<CloseReason> {
        self.shared
            .closed
            .lock()
            .unwrap()
            .get(&token)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.stop();
        let result = self.thread.take().unwrap().join();
        if !thread::panicking() {
            result.expect("reactor thread panicked");
        }
    }
}

fn small_config() -> Config {
    Config {
        ring_entries: 256,
        recv_buf_count: 64,
        recv_buf_size: 4096,
        max_connections: 1024,
        max_output_bytes: 256 * 1024,
        tick: Some(Duration::from_millis(5)),
    }
}

fn pattern(seed: usize, offset: usize) -> u8 {
    (seed.wrapping_mul(31).wrapping_add(offset.wrapping_mul(7)) % 251) as u8
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Writes `len` pattern bytes from one thread while reading the echo on another,
/// and checks every byte comes back in order.
fn echo_roundtrip(addr: SocketAddr, seed: usize, len: usize) {
    let stream = connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let w = thread::spawn(move || {
        let mut buf = Vec::new();
        let mut off = 0;
        while off < len {
            let n = (len - off).min(64 * 1024);
            buf.clear();
            buf.extend((off..off + n).map(|i| pattern(seed, i)));
            writer.write_all(&buf).unwrap();
            off += n;
        }
    });
    let mut reader = stream;
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < len {
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0, "EOF after {got} of {len} bytes (seed {seed})");
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pattern(seed, got + k), "byte {} of seed {seed}", got + k);
        }
        got += n;
    }
    w.join().unwrap();
}

#[test]
fn echoes_many_concurrent_connections_of_varied_sizes() {
    let server = Server::start(small_config());
    // Sizes: tiny, one byte under/over a provided buffer (4 KiB here), several
    // buffers, and well over the loopback socket buffers (several MiB).
    let sizes = [1, 100, 4095, 4097, 70_000, 300_000, 12 * 1024 * 1024];
    let clients = 48;
    let mut threads = Vec::new();
    for c in 0..clients {
        let addr = server.addr;
        let len = sizes[c % sizes.len()];
        threads.push(thread::spawn(move || echo_roundtrip(addr, c, len)));
    }
    for t in threads {
        t.join().unwrap();
    }
    server.wait_for("all accepted", |s| {
        s.accepted.lock().unwrap().len() == clients
    });
}

#[test]
fn slow_reader_is_paused_and_does_not_stall_others() {
    let config = small_config();
    let max_output = config.max_output_bytes;
    let slack = config.recv_buf_count as usize * config.recv_buf_size as usize;
    let server = Server::start(config);
    let mut slow = connect(server.addr);
    slow.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Write without reading until the kernel stops taking bytes: the server paused us.
    let mut written = 0usize;
    let limit = 256 * 1024 * 1024; // far beyond every buffer on the path
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| pattern(7, i)).collect();
    let start = Instant::now();
    while written < limit && start.elapsed() < DEADLINE {
        let off = written % chunk.len();
        match slow.write(&chunk[off..]) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(written < limit, "server never pushed back");
    server.wait_for("pause seen", |s| s.paused_seen.load(Ordering::Relaxed));
    // Meanwhile other connections are served.
    for c in 0..4 {
        echo_roundtrip(server.addr, 100 + c, 50_000);
    }
    // Output stayed bounded: the bound plus at most what was in flight when the
    // pause took effect (every provided buffer).
    let max_seen = server.shared.max_output.load(Ordering::Relaxed);
    assert!(max_seen <= max_output + slack, "output grew to {max_seen}");
    // Reading again resumes the connection and every byte comes back in order.
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    slow.set_read_timeout(Some(DEADLINE)).unwrap();
    while got < written {
        let n = slow.read(&mut buf).unwrap();
        assert!(n > 0);
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pattern(7, (got + k) % chunk.len()), "byte {}", got + k);
        }
        got += n;
    }
    assert_eq!(got, written);
}

#[test]
fn close_from_either_side_delivers_one_closed() {
    let server = Server::start(small_config());

    // Client closes.
    let c1 = connect(server.addr);
    let t1 = server.token_of(&c1);
    drop(c1);
    server.wait_for("peer close", |s| s.closed.lock().unwrap().contains_key(&t1));

    // Server closes gracefully after queuing output: the client gets it, then EOF.
    let mut c2 = connect(server.addr);
    let t2 = server.token_of(&c2);
    let goodbye: Vec<u8> = (0..200_000).map(|i| pattern(3, i)).collect();
    server.command(Command::SendAndClose(t2, goodbye.clone()));
    let mut got = Vec::new();
    c2.read_to_end(&mut got).unwrap();
    assert!(
        got == goodbye,
        "got {} of {} bytes",
        got.len(),
        goodbye.len()
    );

    // Server aborts.
    let mut c3 = connect(server.addr);
    let t3 = server.token_of(&c3);
    server.command(Command::Abort(t3));
    let mut buf = [0u8; 16];
    match c3.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected EOF or reset, got {other:?}"),
    }

    // Close twice, and close a connection the peer half-closed: still one event each.
    let c4 = connect(server.addr);
    let t4 = server.token_of(&c4);
    c4.shutdown(Shutdown::Write).unwrap();
    server.command(Command::Close(t4));
    server.command(Command::Close(t4));

    server.wait_for("all closed", |s| {
        let closed = s.closed.lock().unwrap();
        [t1, t2, t3, t4].iter().all(|t| closed.contains_key(t))
    });
    // Let any duplicate arrive before counting: run passes via ticks.
    let ticks = server.shared.ticks.load(Ordering::Relaxed);
    server.wait_for("more ticks", |s| {
        s.ticks.load(Ordering::Relaxed) > ticks + 3
    });
    assert_eq!(server.closed(t1), vec![CloseReason::PeerClosed]);
    assert_eq!(server.closed(t2), vec![CloseReason::Local]);
    assert_eq!(server.closed(t3), vec![CloseReason::Aborted]);
    let r4 = server.closed(t4);
    assert_eq!(r4.len(), 1, "{r4:?}");
    assert!(matches!(
        r4[0],
        CloseReason::Local | CloseReason::PeerClosed
    ));
}

#[test]
fn wakes_from_other_threads_are_coalesced_but_never_lost() {
    let server = Server::start(Config {
        tick: None, // only wake-ups can make the loop run
        ..small_config()
    });
    let threads = 4;
    let per_thread = 2000u32;
    let mut handles = Vec::new();
    for t in 0..threads {
        let waker = server.waker.clone();
        let shared = server.shared.clone();
        handles.push(thread::spawn(move || {
            for i in 0..per_thread {
                let was_empty = {
                    let mut q = shared.queue.lock().unwrap();
                    let was_empty = q.is_empty();
                    q.push(t * per_thread + i);
                    was_empty
                };
                // Wake only on empty -> non-empty, as the shard's queues will.
                if was_empty {
                    waker.wake();
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let total = (threads * per_thread) as usize;
    server.wait_for("every item drained", |s| {
        s.drained.lock().unwrap().len() == total
    });
    let mut items = server.shared.drained.lock().unwrap().clone();
    items.sort_unstable();
    items.dedup();
    assert_eq!(items.len(), total);
    let wakes = server.shared.wakes.load(Ordering::Relaxed);
    assert!(wakes >= 1 && wakes <= total, "wakes {wakes}");
}

#[test]
fn ticks_arrive() {
    let server = Server::start(small_config());
    server.wait_for("three ticks", |s| s.ticks.load(Ordering::Relaxed) >= 3);
}

#[test]
fn connections_beyond_the_bound_are_refused() {
    let server = Server::start(Config {
        max_connections: 2,
        ..small_config()
    });
    let a = connect(server.addr);
    let b = connect(server.addr);
    server.token_of(&a);
    server.token_of(&b);
    let mut c = connect(server.addr);
    let mut buf = [0u8; 1];
    // The third is accepted by the kernel and closed by the reactor at once.
    match c.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected EOF or reset, got {other:?}"),
    }
    // The first two still echo.
    let mut a = a;
    a.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    a.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
}

#[test]
fn pause_stops_receiving_until_resume() {
    let server = Server::start(small_config());
    let mut client = connect(server.addr);
    let token = server.token_of(&client);
    server.command(Command::Pause(token));
    server.wait_for("pause applied", |s| s.paused_seen.load(Ordering::Relaxed));
    // Nothing is read while paused, so the socket buffers fill and writes stop.
    client
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| pattern(9, i)).collect();
    let limit = 256 * 1024 * 1024;
    let mut written = 0usize;
    let start = Instant::now();
    while written < limit && start.elapsed() < DEADLINE {
        let off = written % chunk.len();
        match client.write(&chunk[off..]) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(written < limit, "a paused connection kept receiving");
    // Paused on the server's request, so output stayed small: only bytes received
    // before the cancel took effect (at most every provided buffer) were echoed.
    let cfg = small_config();
    let slack = cfg.recv_buf_count as usize * cfg.recv_buf_size as usize;
    assert!(server.shared.max_output.load(Ordering::Relaxed) <= slack);
    server.command(Command::Resume(token));
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < written {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0);
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pattern(9, (got + k) % chunk.len()), "byte {}", got + k);
        }
        got += n;
    }
    assert_eq!(got, written);
}

/// `relisten` moves a listener to another address between passes: the new address
/// accepts and echoes, the old one refuses connections, and a connection accepted on
/// the old address goes on being served (dynamic reconfig moving a client port).
#[test]
fn relisten_moves_the_listener_and_keeps_its_connections() {
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel();
    let (move_tx, move_rx) = mpsc::channel::<()>();
    let (moved_tx, moved_rx) = mpsc::channel();
    let s = shared.clone();
    let thread = thread::spawn(move || {
        let mut reactor = Reactor::new(small_config()).unwrap_or_else(|e| panic!("{e}"));
        let (id, addr) = reactor.listen("127.0.0.1:0".parse().unwrap(), 128).unwrap();
        tx.send((addr, reactor.waker(), reactor.stop_handle()))
            .unwrap();
        let mut echo = Echo {
            shared: s,
            live: Vec::new(),
        };
        while reactor.run_once(&mut echo).unwrap() == Status::Running {
            if move_rx.try_recv().is_ok() {
                let r = reactor.relisten(id, "127.0.0.1:0".parse().unwrap(), 128);
                moved_tx.send(r.map_err(|e| e.to_string())).unwrap();
            }
        }
    });
    let (old, waker, stop) = rx.recv().unwrap();
    let mut before = connect(old);
    before.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    before.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");

    move_tx.send(()).unwrap();
    waker.wake();
    let new = moved_rx
        .recv_timeout(DEADLINE)
        .unwrap()
        .expect("relisten binds");
    assert_ne!(new, old);
    echo_roundtrip(new, 7, 100_000);
    // The old socket closes once its accept is cancelled (a pass or two).
    let start = Instant::now();
    loop {
        match TcpStream::connect(old) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("connecting to the old address: {e}"),
            Ok(_) => {
                assert!(start.elapsed() < DEADLINE, "the old address still accepts");
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    before.write_all(b"pong").unwrap();
    before.read_exact(&mut buf).unwrap();
    assert_eq!(
        &buf, b"pong",
        "a connection from before the move is still served"
    );

    stop.stop();
    thread.join().expect("reactor thread");
}

/// A handler for a reactor with no connections: it counts passes' wakes and nothing else.
struct Quiet;

impl Handler for Quiet {
    fn on_data(&mut self, _ops: &mut Ops, _token: Token, _data: &[u8]) {
        unreachable!("no connections")
    }
    fn on_closed(&mut self, _ops: &mut Ops, _token: Token, _reason: CloseReason) {
        unreachable!("no connections")
    }
}

/// Runs passes of `reactor`, which has nothing to wake it but its one-shot timer, until
/// one returns at `at` or later (a pass may also come from a completion of the timer's
/// own bookkeeping, such as moving it); a watchdog wakes it after `DEADLINE` so that a
/// timer that never fires fails the test instead of hanging it. Returns when that pass
/// returned and how many passes ran.
fn passes_until(reactor: &mut Reactor, at: Instant) -> (Instant, usize) {
    let (done, watch) = mpsc::channel::<()>();
    let waker = reactor.waker();
    let dog = thread::spawn(move || {
        if watch.recv_timeout(DEADLINE).is_err() {
            waker.wake();
        }
    });
    let mut passes = 0;
    let returned = loop {
        assert!(matches!(reactor.run_once(&mut Quiet), Ok(Status::Running)));
        passes += 1;
        let now = Instant::now();
        if now >= at || passes == 10 {
            break now;
        }
    };
    drop(done);
    dog.join().unwrap();
    (returned, passes)
}

/// `Ops::wake_at`: a loop with nothing else to do runs a pass at the time asked for,
/// never before it (the log's held writes rely on that pass).
#[test]
fn a_one_shot_timer_runs_a_pass_at_its_time() {
    let mut reactor = Reactor::new(Config {
        tick: None,
        ..small_config()
    })
    .unwrap();
    let at = Instant::now() + Duration::from_millis(30);
    reactor.ops().wake_at(at);
    let (returned, passes) = passes_until(&mut reactor, at);
    assert_eq!(passes, 1, "a pass ran before the timer's time");
    assert!(
        returned < at + DEADLINE / 2,
        "the pass came from the watchdog, not the timer"
    );
}

/// An earlier time asked for while a later one is armed moves the armed timer forward.
#[test]
fn an_earlier_wake_at_brings_the_armed_timer_forward() {
    let mut reactor = Reactor::new(Config {
        tick: None,
        ..small_config()
    })
    .unwrap();
    // Arm a far timer: a wake makes this pass return at once, after its flush armed it.
    reactor.ops().wake_at(Instant::now() + DEADLINE * 2);
    reactor.waker().wake();
    assert!(matches!(reactor.run_once(&mut Quiet), Ok(Status::Running)));
    let at = Instant::now() + Duration::from_millis(30);
    reactor.ops().wake_at(at);
    let (returned, passes) = passes_until(&mut reactor, at);
    assert!(passes < 10, "{passes} passes before the timer's time");
    assert!(
        returned < at + DEADLINE / 2,
        "the armed timer was not brought forward"
    );
}
