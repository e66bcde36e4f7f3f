//! The election driver: carries `zab::election::Election` out over TCP on the election
//! port, on threads at low priority (the election must never take
//! a core from the shards; it is idle while a leader is established).
//!
//! Connections. Each server connects *out* to every other member and sends its
//! notifications on that connection only; it *receives* on the connections others opened
//! to it. So every ordered pair has its own one-way connection. ZooKeeper instead keeps
//! one two-way connection per pair and, when both sides dial at once, drops the one
//! dialled by the lower id; that tie-break is a known source of reconnection storms
//! (ZOOKEEPER-2164, ZOOKEEPER-3456). Two one-way connections per pair cost nothing at
//! ensemble sizes (under 10 servers, a few notifications per election) and need no
//! tie-break at all: a connection is never refused, only replaced by a newer one from
//! the same sender.
//!
//! Threads: the election thread owns the state machine and the clock; one sender thread
//! per other member owns its outgoing connection (so a dead peer's connect timeout never
//! stalls the election); one acceptor thread, and one reader thread per incoming
//! connection, at most one live per member. Lost messages are fine: the state machine
//! resends on its own timer.
//!
//! Partitions. A cut cable closes nothing: a connection into a partition stays
//! established, and what is written into it waits behind unacknowledged notifications
//! for TCP's retransmission backoff, seconds after the heal. So a sender's connection
//! is dropped when a notification stays unacknowledged for `UNACKED_TIMEOUT`
//! (`TCP_USER_TIMEOUT`) or the peer closed its end (it restarted), checked before each
//! write; a notification that finds no connection is kept and redialled until it is
//! delivered or superseded, so a healed peer hears the newest one within a redial, not
//! at the next resend (whose backoff reaches `Timing::max_resend_ticks`).
//!
//! TLS (`sslQuorum=true`). Both ends do a blocking rustls handshake right after the TCP
//! connect or accept (bounded by the write timeout), each presenting the quorum
//! certificate and verifying the other's against the quorum trust store; the hello and
//! the notifications then go through the TLS session. A failed handshake is logged
//! with rustls' reason (an unknown CA, an expired certificate) and the connection
//! dropped; the sender logs a reason once until it changes, as it redials often.

use super::peer_wire::{self, ELECTION_MAGIC, MAX_ELECTION_FRAME};
use crate::zab::election::{self, Election, Notification, State, Timing};
use crate::zab::{Ensemble, ServerId, Zxid};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One election tick. `Timing::default()` finalizes after 2 ticks, which makes this
/// ZooKeeper's `finalizeWait` of 200 ms, and first resends after 200 ms.
pub const ELECTION_TICK: Duration = Duration::from_millis(100);
/// How long a sender waits for a connection to a peer: a dead peer costs its sender this
/// much per attempt, and the election resends anyway (ZooKeeper's `cnxTimeout`, 5 s, is
/// for WANs; peers here are on one network).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A write that takes longer means the peer is not reading; the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_millis(1000);
/// A notification the peer's TCP has not acknowledged for this long means the peer is
/// cut off: the kernel drops the connection (`TCP_USER_TIMEOUT`) and the next send
/// dials afresh. Without it a connection into a partition stays "established" (a cut
/// cable sends no RST), and what is written into it after the heal waits behind the
/// unacknowledged notifications for TCP's retransmission backoff, seconds after a long
/// cut. A healthy peer on one network acknowledges within a delayed ACK (at most
/// 200 ms), and one retransmission (200 ms minimum RTO) still fits.
const UNACKED_TIMEOUT: Duration = Duration::from_millis(1000);
/// While a sender holds a notification it could not deliver (no connection), it dials
/// again this long after each failed attempt, and sends the newest one it holds when a
/// connection succeeds (ZooKeeper's `SendWorker` likewise resends its last message on a
/// new connection). So a healed peer hears from us within about
/// `CONNECT_TIMEOUT + REDIAL_INTERVAL`, not at our next resend (up to
/// `Timing::max_resend_ticks`, 3.2 s). An unreachable peer costs one SYN per attempt.
const REDIAL_INTERVAL: Duration = Duration::from_millis(200);
/// How long an undelivered notification is redialled for. A looking server hands each
/// sender a fresh notification at least every `max_resend_ticks` ticks, so it keeps
/// redialling all the while it looks; a decided one (its answers to looking servers)
/// stops after this, and the looking server's own resends bring fresh answers.
const PENDING_FOR: Duration = Duration::from_secs(5);
/// Notifications queued per peer: an election sends a handful per round, and anything
/// older than the newest few is superseded by the resends.
const SEND_QUEUE: usize = 16;
/// How far election threads' `nice` value is above the process's: below the shards
/// and the sequencer, also when the whole server runs under `nice`.
const ELECTION_NICE: i32 = 10;

/// What the election thread is told.
#[derive(Debug)]
pub enum Input {
    Notification {
        from: ServerId,
        notification: Notification,
    },
    /// Start looking with this vote basis (`Peer::vote_basis`).
    Start { last_zxid: Zxid, current_epoch: u32 },
    /// ZAB established this epoch under the elected leader.
    Established { epoch: u32 },
    /// Leadership moved to `leader` without an election.
    Moved { leader: ServerId },
    /// A reconfig put `ensemble` in force; `peers` are the election addresses of every
    /// other member of it: senders start for new members and stop for removed ones,
    /// and connections from new members are accepted.
    Reconfigure {
        ensemble: Ensemble,
        peers: BTreeMap<ServerId, SocketAddr>,
    },
}

/// What the election tells the replication loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elected {
    pub leader: ServerId,
    pub state: State,
    pub election_epoch: u64,
}

/// A running election: send it [`Input`]s; decisions arrive on the channel given to
/// [`start`].
pub struct Handle {
    pub input: Sender<Input>,
    pub local_addr: SocketAddr,
}

/// Binds the election port and starts the threads.
///
/// `peers` are the election addresses of every other member. The threads run until the
/// process exits (the server stops by exiting).
///
/// # Errors
/// When the election port cannot be bound.
pub fn start(
    my_id: ServerId,
    ensemble: Ensemble,
    listen: SocketAddr,
    peers: BTreeMap<ServerId, SocketAddr>,
    tls: Option<Arc<crate::tls::QuorumTls>>,
    elected: impl Fn(Elected) + Send + 'static,
) -> std::io::Result<Handle> {
    let listener = TcpListener::bind(listen)?;
    let local_addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    let members: Arc<Mutex<Vec<ServerId>>> = Arc::new(Mutex::new(
        ensemble
            .voters
            .iter()
            .chain(ensemble.observers.iter())
            .copied()
            .collect(),
    ));
    let readers: Arc<Mutex<BTreeMap<ServerId, TcpStream>>> = Arc::default();
    {
        let tx = tx.clone();
        let members = members.clone();
        let tls = tls.clone();
        std::thread::Builder::new()
            .name("election-accept".into())
            .spawn(move || accept_loop(listener, members, readers, tx, tls))?;
    }
    let mut senders = BTreeMap::new();
    for (&id, &addr) in &peers {
        senders.insert(id, (addr, spawn_sender(my_id, id, addr, tls.clone())?));
    }
    let timing = Timing::default();
    assert!(
        PENDING_FOR > ELECTION_TICK * timing.max_resend_ticks as u32,
        "a looking server's undelivered notification must be redialled until it resends"
    );
    let machine = Election::new(my_id, ensemble, timing);
    std::thread::Builder::new()
        .name("election".into())
        .spawn(move || run(my_id, machine, rx, senders, members, tls, elected))?;
    Ok(Handle {
        input: tx,
        local_addr,
    })
}

/// The sender thread to member `id` at `addr`; it ends when its channel is dropped.
fn spawn_sender(
    my_id: ServerId,
    id: ServerId,
    addr: SocketAddr,
    tls: Option<Arc<crate::tls::QuorumTls>>,
) -> std::io::Result<SyncSender<Notification>> {
    let (stx, srx) = mpsc::sync_channel(SEND_QUEUE);
    std::thread::Builder::new()
        .name(format!("election-send-{id}"))
        .spawn(move || send_loop(my_id, addr, srx, tls))?;
    Ok(stx)
}

fn accept_loop(
    listener: TcpListener,
    members: Arc<Mutex<Vec<ServerId>>>,
    readers: Arc<Mutex<BTreeMap<ServerId, TcpStream>>>,
    tx: Sender<Input>,
    tls: Option<Arc<crate::tls::QuorumTls>>,
) {
    crate::sched::lower_thread_nice(ELECTION_NICE, "election thread");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        // The hello is 12 bytes; a peer that cannot send them (and its TLS handshake)
        // in a write timeout is not a RingKeeper server.
        let _ = stream.set_read_timeout(Some(WRITE_TIMEOUT));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let mut input: Box<dyn std::io::Read + Send> = match &tls {
            None => Box::new(stream),
            Some(t) => {
                let peer = stream.peer_addr().ok();
                let mut conn = match rustls::ServerConnection::new(t.server()) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("ringkeeper: election: cannot start TLS: {e}");
                        continue;
                    }
                };
                if let Err(e) = crate::tls::handshake(&mut conn, &mut stream) {
                    eprintln!(
                        "ringkeeper: election: TLS handshake with {peer:?} failed: {e}; connection dropped"
                    );
                    continue;
                }
                Box::new(rustls::StreamOwned::new(conn, stream))
            }
        };
        let Ok(from) = peer_wire::read_hello(&mut input, ELECTION_MAGIC) else {
            continue;
        };
        if !members
            .lock()
            .expect("election members poisoned")
            .contains(&from)
        {
            continue;
        }
        let _ = clone.set_read_timeout(None);
        let _ = clone.set_nodelay(true);
        let mut stream = input;
        let Ok(clone) = clone.try_clone() else {
            continue;
        };
        // A newer connection from the same sender replaces the old one (it restarted, or
        // its side saw the old one break first): closing the old one ends its reader, so
        // at most one reader per member is alive.
        if let Some(old) = readers
            .lock()
            .expect("election readers poisoned")
            .insert(from, clone)
        {
            let _ = old.shutdown(Shutdown::Both);
        }
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("election-recv-{from}"))
            .spawn(move || {
                // Spawned from the accept thread, it inherits that thread's nice value.
                while let Ok(body) = peer_wire::read_frame(&mut stream, MAX_ELECTION_FRAME) {
                    let Some(notification) = peer_wire::decode_notification(&body) else {
                        break;
                    };
                    if tx.send(Input::Notification { from, notification }).is_err() {
                        break;
                    }
                }
            });
        if spawned.is_err() {
            eprintln!("ringkeeper: election: cannot start a reader for server {from}");
        }
    }
}

/// One sender thread: writes the notifications for one peer on its outgoing
/// connection, dialling when there is none or the one it has is dead.
///
/// A notification that cannot be written (the peer is unreachable or down) is held,
/// the newest replacing older ones (the peer keeps only our latest vote anyway, as a
/// lost datagram would leave it), and redialled every `REDIAL_INTERVAL` for
/// `PENDING_FOR`. Written means handed to the kernel: a peer that dies meanwhile loses
/// it, and the state machine resends.
fn send_loop(
    my_id: ServerId,
    addr: SocketAddr,
    rx: Receiver<Notification>,
    tls: Option<Arc<crate::tls::QuorumTls>>,
) {
    crate::sched::lower_thread_nice(ELECTION_NICE, "election thread");
    let mut conn: Option<Out> = None;
    let mut dialer = Dialer {
        my_id,
        addr,
        tls,
        last_error: None,
    };
    let mut pending: Option<(Notification, Instant)> = None;
    loop {
        let next = if pending.is_some() {
            match rx.recv_timeout(REDIAL_INTERVAL) {
                Ok(n) => Some(n),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(n) => Some(n),
                Err(_) => return,
            }
        };
        if let Some(n) = next {
            pending = Some((n, Instant::now()));
        }
        let Some((n, since)) = pending else { continue };
        if since.elapsed() > PENDING_FOR {
            pending = None;
            continue;
        }
        if deliver(&mut dialer, &mut conn, &n) {
            pending = None;
        }
    }
}

/// An outgoing election connection: the socket, and its TLS session with `sslQuorum`.
struct Out {
    sock: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
}

impl std::io::Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.tls.as_mut() {
            Some(c) => c.writer().write(buf),
            None => self.sock.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(c) = self.tls.as_mut() {
            while c.wants_write() {
                c.write_tls(&mut self.sock)?;
            }
        }
        self.sock.flush()
    }
}

/// What a sender dials with; remembers the last dial error so a peer that keeps
/// failing is logged once, not at every redial.
struct Dialer {
    my_id: ServerId,
    addr: SocketAddr,
    tls: Option<Arc<crate::tls::QuorumTls>>,
    last_error: Option<String>,
}

/// Writes `n` on `conn`, first replacing a connection that is dead or dialling one if
/// there is none. Returns false when no connection could be made.
fn deliver(dialer: &mut Dialer, conn: &mut Option<Out>, n: &Notification) -> bool {
    let body = peer_wire::encode_notification(n);
    // Two attempts: a connection can die between the check and the write (the peer
    // restarted a moment ago); the second one is on a fresh connection.
    for _ in 0..2 {
        if conn.as_ref().is_some_and(|s| !usable(&s.sock)) {
            *conn = None;
        }
        if conn.is_none() {
            *conn = dial(dialer);
        }
        let Some(s) = conn.as_mut() else {
            return false;
        };
        if peer_wire::write_frame(s, &body)
            .and_then(|_| s.flush())
            .is_ok()
        {
            return true;
        }
        *conn = None;
    }
    // The write failed on a fresh connection too: dropped, and the machine resends.
    true
}

fn dial(d: &mut Dialer) -> Option<Out> {
    let (my_id, addr) = (d.my_id, d.addr);
    let tls = d.tls.clone();
    let r = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).and_then(|mut s| {
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(WRITE_TIMEOUT))?;
        set_user_timeout(&s, UNACKED_TIMEOUT)?;
        let tls = match &tls {
            None => None,
            Some(t) => {
                s.set_read_timeout(Some(WRITE_TIMEOUT))?;
                let mut c =
                    rustls::ClientConnection::new(t.client(), crate::tls::server_name(addr))
                        .map_err(std::io::Error::other)?;
                crate::tls::handshake(&mut c, &mut s).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("TLS handshake failed: {e}"))
                })?;
                s.set_read_timeout(None)?;
                Some(Box::new(c))
            }
        };
        let mut out = Out { sock: s, tls };
        peer_wire::write_hello(&mut out, ELECTION_MAGIC, my_id)?;
        std::io::Write::flush(&mut out)?;
        Ok(out)
    });
    match r {
        Ok(out) => {
            d.last_error = None;
            Some(out)
        }
        Err(e) => {
            // A refused connection is a peer that is down: the usual case, not worth a
            // line. Anything else (a TLS failure) is said once until it changes.
            let text = e.to_string();
            if e.kind() != std::io::ErrorKind::ConnectionRefused
                && d.last_error.as_deref() != Some(text.as_str())
            {
                eprintln!("ringkeeper: election: cannot reach {addr}: {text}");
            }
            d.last_error = Some(text);
            None
        }
    }
}

/// Sets `TCP_USER_TIMEOUT`: data unacknowledged for `timeout` makes the kernel drop the
/// connection (`ETIMEDOUT` on the next call, `POLLERR` to [`usable`]).
fn set_user_timeout(s: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let ms = libc::c_uint::try_from(timeout.as_millis()).expect("user timeout fits");
    // SAFETY: the descriptor is open (borrowed from `s`); the option value is a c_uint
    // on the stack whose size is passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether an outgoing election connection can still carry a notification. The peer
/// never writes on it, so anything to read is its end closing (FIN or RST: it
/// restarted, or replaced this connection), and an error is the kernel's user timeout
/// (or an ICMP error). A write into such a connection would still succeed locally and
/// be lost; checked before each write, the notification goes on a fresh connection
/// instead.
fn usable(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, count 1, timeout 0 (does not block).
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    // A failed poll (EINTR, ENOMEM) says nothing about the connection: keep it, and a
    // failing write decides.
    rc <= 0 || p.revents == 0
}

type Senders = BTreeMap<ServerId, (SocketAddr, SyncSender<Notification>)>;

fn run(
    my_id: ServerId,
    mut machine: Election,
    rx: Receiver<Input>,
    mut senders: Senders,
    members: Arc<Mutex<Vec<ServerId>>>,
    tls: Option<Arc<crate::tls::QuorumTls>>,
    elected: impl Fn(Elected),
) {
    crate::sched::lower_thread_nice(ELECTION_NICE, "election thread");
    let mut next_tick = Instant::now() + ELECTION_TICK;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let event = match rx.recv_timeout(wait) {
            Ok(Input::Notification { from, notification }) => {
                election::Event::Notification { from, notification }
            }
            Ok(Input::Start {
                last_zxid,
                current_epoch,
            }) => election::Event::Start {
                last_zxid,
                current_epoch,
            },
            Ok(Input::Established { epoch }) => election::Event::Established { epoch },
            Ok(Input::Moved { leader }) => election::Event::Moved { leader },
            Ok(Input::Reconfigure { ensemble, peers }) => {
                *members.lock().expect("election members poisoned") = ensemble
                    .voters
                    .iter()
                    .chain(ensemble.observers.iter())
                    .copied()
                    .collect();
                // Dropping a sender's channel ends its thread.
                senders.retain(|id, (addr, _)| peers.get(id) == Some(addr));
                for (&id, &addr) in &peers {
                    if senders.contains_key(&id) {
                        continue;
                    }
                    match spawn_sender(my_id, id, addr, tls.clone()) {
                        Ok(s) => {
                            senders.insert(id, (addr, s));
                        }
                        Err(e) => eprintln!(
                            "ringkeeper: cannot start the election sender to server {id}: {e}"
                        ),
                    }
                }
                election::Event::Reconfigured { ensemble }
            }
            Err(RecvTimeoutError::Timeout) => {
                next_tick += ELECTION_TICK;
                election::Event::Tick
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        for action in machine.step(event) {
            match action {
                election::Action::Send { to, notification } => {
                    if let Some((_, s)) = senders.get(&to) {
                        match s.try_send(notification) {
                            // A full queue means the peer is unreachable and its sender
                            // is inside a connect timeout: dropping is what a lost
                            // datagram would do, and the machine resends.
                            Ok(()) | Err(TrySendError::Full(_)) => {}
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                    }
                }
                election::Action::Elected {
                    leader,
                    election_epoch,
                    state,
                    ..
                } => elected(Elected {
                    leader,
                    state,
                    election_epoch,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts one connection within `bound`, reads its hello and first notification.
    fn accept_one(listener: &TcpListener, bound: Duration) -> (TcpStream, Notification) {
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + bound;
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection within {bound:?}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(bound)).expect("read timeout");
        assert_eq!(
            peer_wire::read_hello(&mut s, ELECTION_MAGIC).expect("hello"),
            7
        );
        let body = peer_wire::read_frame(&mut s, MAX_ELECTION_FRAME).expect("a frame");
        let n = peer_wire::decode_notification(&body).expect("a notification");
        (s, n)
    }

    /// A peer that restarted (as a TRUNC or SNAP restarts a server in place) closed its
    /// end of our connection. The next notification goes on a new connection; written
    /// into the old one it was lost, and the peer heard from us only at the resend after
    /// it (a rejoining server waited up to a second longer for the election's answers).
    #[test]
    fn a_sender_dials_again_when_the_peer_closed_its_end() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::sync_channel(SEND_QUEUE);
        std::thread::spawn(move || send_loop(7, addr, rx, None));
        let note = |election_epoch| Notification {
            vote: None,
            state: State::Looking,
            election_epoch,
        };
        let bound = Duration::from_secs(10);
        tx.send(note(1)).expect("sender alive");
        let (first, n) = accept_one(&listener, bound);
        assert_eq!(n, note(1));
        drop(first);
        // Loopback delivers the FIN at once; this is margin for a loaded machine.
        std::thread::sleep(Duration::from_millis(100));
        tx.send(note(2)).expect("sender alive");
        let (_second, n) = accept_one(&listener, bound);
        assert_eq!(
            n,
            note(2),
            "the notification after the close is on a new connection"
        );
    }

    /// A notification for a peer that is not there yet (down, or behind a partition) is
    /// kept and delivered when the peer can be reached, without waiting for the state
    /// machine's next resend (up to 3.2 s once its backoff is at the cap).
    #[test]
    fn an_undelivered_notification_arrives_once_the_peer_listens() {
        // A port nobody listens on (for this moment).
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let (tx, rx) = mpsc::sync_channel(SEND_QUEUE);
        std::thread::spawn(move || send_loop(7, addr, rx, None));
        let note = Notification {
            vote: None,
            state: State::Looking,
            election_epoch: 3,
        };
        tx.send(note).expect("sender alive");
        // At least one refused attempt first.
        std::thread::sleep(REDIAL_INTERVAL * 2);
        let listener = TcpListener::bind(addr).expect("the port again");
        let (_s, n) = accept_one(&listener, PENDING_FOR);
        assert_eq!(n, note);
    }
}
