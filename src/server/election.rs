//! The election driver: carries `zab::election::Election` out over TCP on the election
//! port, on threads at low priority (DESIGN.md, "Threads": the election must never take
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
/// ZooKeeper's `finalizeWait` of 200 ms, and first resends after 400 ms.
pub const ELECTION_TICK: Duration = Duration::from_millis(100);
/// How long a sender waits for a connection to a peer: a dead peer costs its sender this
/// much per attempt, and the election resends anyway (ZooKeeper's `cnxTimeout`, 5 s, is
/// for WANs; peers here are on one network).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A write that takes longer means the peer is not reading; the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Notifications queued per peer: an election sends a handful per round, and anything
/// older than the newest few is superseded by the resends.
const SEND_QUEUE: usize = 16;
/// The `nice` value of election threads: below the shards and the sequencer.
const ELECTION_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to `nice`. Linux applies
/// `setpriority(PRIO_PROCESS, tid)` to one thread. Failure (a seccomp profile) only
/// costs priority, so it is reported and ignored.
pub fn set_thread_nice(nice: i32) {
    // SAFETY: gettid has no preconditions; setpriority reads only its integer arguments.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if rc != 0 {
        eprintln!(
            "ringkeeper: setpriority({nice}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

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
pub fn start<T: From<Elected> + Send + 'static>(
    my_id: ServerId,
    ensemble: Ensemble,
    listen: SocketAddr,
    peers: BTreeMap<ServerId, SocketAddr>,
    elected: Sender<T>,
) -> std::io::Result<Handle> {
    let listener = TcpListener::bind(listen)?;
    let local_addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    let members: Vec<ServerId> = ensemble
        .voters
        .iter()
        .chain(ensemble.observers.iter())
        .copied()
        .collect();
    let readers: Arc<Mutex<BTreeMap<ServerId, TcpStream>>> = Arc::default();
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("election-accept".into())
            .spawn(move || accept_loop(listener, members, readers, tx))?;
    }
    let mut senders = BTreeMap::new();
    for (&id, &addr) in &peers {
        let (stx, srx) = mpsc::sync_channel(SEND_QUEUE);
        std::thread::Builder::new()
            .name(format!("election-send-{id}"))
            .spawn(move || send_loop(my_id, addr, srx))?;
        senders.insert(id, stx);
    }
    let machine = Election::new(my_id, ensemble, Timing::default());
    std::thread::Builder::new()
        .name("election".into())
        .spawn(move || run(machine, rx, senders, elected))?;
    Ok(Handle {
        input: tx,
        local_addr,
    })
}

fn accept_loop(
    listener: TcpListener,
    members: Vec<ServerId>,
    readers: Arc<Mutex<BTreeMap<ServerId, TcpStream>>>,
    tx: Sender<Input>,
) {
    set_thread_nice(ELECTION_NICE);
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        // The hello is 12 bytes; a peer that cannot send them in a write timeout is not
        // a RingKeeper server.
        let _ = stream.set_read_timeout(Some(WRITE_TIMEOUT));
        let Ok(from) = peer_wire::read_hello(&mut stream, ELECTION_MAGIC) else {
            continue;
        };
        if !members.contains(&from) {
            continue;
        }
        let _ = stream.set_read_timeout(None);
        let _ = stream.set_nodelay(true);
        let Ok(clone) = stream.try_clone() else {
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
                set_thread_nice(ELECTION_NICE);
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

fn send_loop(my_id: ServerId, addr: SocketAddr, rx: Receiver<Notification>) {
    set_thread_nice(ELECTION_NICE);
    let mut conn: Option<TcpStream> = None;
    while let Ok(n) = rx.recv() {
        if conn.is_none() {
            conn = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                .and_then(|mut s| {
                    s.set_nodelay(true)?;
                    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    peer_wire::write_hello(&mut s, ELECTION_MAGIC, my_id)?;
                    Ok(s)
                })
                .ok();
        }
        let Some(s) = conn.as_mut() else { continue };
        let body = peer_wire::encode_notification(&n);
        if peer_wire::write_frame(s, &body)
            .and_then(|_| s.flush())
            .is_err()
        {
            // Lost: the state machine resends, and the next send reconnects.
            conn = None;
        }
    }
}

fn run<T: From<Elected>>(
    mut machine: Election,
    rx: Receiver<Input>,
    senders: BTreeMap<ServerId, SyncSender<Notification>>,
    elected: Sender<T>,
) {
    set_thread_nice(ELECTION_NICE);
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
            Err(RecvTimeoutError::Timeout) => {
                next_tick += ELECTION_TICK;
                election::Event::Tick
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        for action in machine.step(event) {
            match action {
                election::Action::Send { to, notification } => {
                    if let Some(s) = senders.get(&to) {
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
                } => {
                    if elected
                        .send(T::from(Elected {
                            leader,
                            state,
                            election_epoch,
                        }))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}
