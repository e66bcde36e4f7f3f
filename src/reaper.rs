//! Frees big collections on a thread of their own, off the event loops.
//!
//! Dropping is work like any other: a compaction of the in-memory ZAB log forgets the
//! txns logged since the snapshot before (half to all of `snapCount`, 50,000-100,000 by
//! default: at 19,447 writes/s, one every 3-5 s), and each one's payload is a reference
//! into its pass's buffer whose count lives in memory written seconds ago. `perf` put a
//! leader's loop in `Txns::forget_first` for 3-3.5 ms at each compaction, nearly all of
//! it in `Bytes`' drop; every server compacts, and the writes in flight waited
//! meanwhile. Handed here instead, the loop pays one channel send.
//!
//! The channel is bounded: when the reaper falls behind (it runs below the loops, so a
//! busy machine starves it first), the caller drops inline rather than queue without
//! bound. A process that cannot start the thread drops everything inline as before.

use std::any::Any;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;

/// Batches of garbage that may wait for the reaper; one is a compaction's worth.
pub const QUEUE: usize = 16;

/// How far the reaper's nice value is above the process's: below the event loops, as the
/// snapshot thread.
pub const REAPER_NICE: i32 = 10;

type Garbage = Box<dyn Any + Send>;

/// A thread that drops what it is sent.
pub struct Reaper {
    tx: SyncSender<Garbage>,
}

impl Reaper {
    /// Starts a reaper thread named `name` that holds at most `queue` batches waiting;
    /// it ends when the `Reaper` is dropped.
    pub fn start(name: &str, queue: usize) -> std::io::Result<Reaper> {
        let (tx, rx) = sync_channel::<Garbage>(queue);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                crate::sched::lower_thread_nice(REAPER_NICE, "reaper thread");
                for garbage in rx {
                    drop(garbage);
                }
            })?;
        Ok(Reaper { tx })
    }

    /// Drops `garbage` on the reaper thread, or here if the reaper is behind.
    pub fn drop_later<T: Send + 'static>(&self, garbage: T) {
        match self.tx.try_send(Box::new(garbage)) {
            Ok(()) => {}
            Err(TrySendError::Full(g)) | Err(TrySendError::Disconnected(g)) => drop(g),
        }
    }
}

/// The process's reaper, started on first use.
fn global() -> Option<&'static Reaper> {
    static REAPER: OnceLock<Option<Reaper>> = OnceLock::new();
    REAPER
        .get_or_init(|| match Reaper::start("rk-reaper", QUEUE) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("ringkeeper: cannot start the reaper thread, freeing inline: {e}");
                None
            }
        })
        .as_ref()
}

/// Drops `garbage` on the process's reaper thread, or here if the reaper is missing or
/// behind. What `garbage` holds must need nothing of its drop but memory (no locks, no
/// I/O, no order against other effects): when it happens is not said.
pub fn drop_later<T: Send + 'static>(garbage: T) {
    match global() {
        Some(r) => r.drop_later(garbage),
        None => drop(garbage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Records the thread its drop ran on.
    struct Probe {
        dropped_on: Arc<std::sync::Mutex<Option<String>>>,
        count: Arc<AtomicUsize>,
    }
    impl Drop for Probe {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("").to_string();
            *self.dropped_on.lock().unwrap() = Some(name);
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn garbage_is_dropped_on_the_reaper_thread() {
        let dropped_on = Arc::new(std::sync::Mutex::new(None));
        let count = Arc::new(AtomicUsize::new(0));
        drop_later(vec![Probe {
            dropped_on: dropped_on.clone(),
            count: count.clone(),
        }]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while count.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(count.load(Ordering::SeqCst), 1, "dropped exactly once");
        assert_eq!(dropped_on.lock().unwrap().as_deref(), Some("rk-reaper"));
    }

    /// Drops on the thread it was sent to, after `release` is sent; says so on `started`.
    struct Blocker {
        started: std::sync::mpsc::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    }
    impl Drop for Blocker {
        fn drop(&mut self) {
            let _ = self.started.send(());
            let _ = self.release.recv();
        }
    }

    /// A reaper that is behind never makes its caller wait and never loses garbage: what
    /// finds the queue full is dropped by the caller, at once.
    #[test]
    fn a_full_queue_drops_inline_and_nothing_is_lost() {
        let reaper = Reaper::start("test-reaper", 1).expect("thread");
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        reaper.drop_later(Blocker {
            started: started_tx,
            release: release_rx,
        });
        started.recv().expect("the reaper took the blocker");
        let probe = |dropped_on: &Arc<std::sync::Mutex<Option<String>>>,
                     count: &Arc<AtomicUsize>| Probe {
            dropped_on: dropped_on.clone(),
            count: count.clone(),
        };
        let (queued_on, queued) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
        let (full_on, full) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
        reaper.drop_later(probe(&queued_on, &queued)); // fills the queue of one
        reaper.drop_later(probe(&full_on, &full)); // finds it full
        assert_eq!(
            full.load(Ordering::SeqCst),
            1,
            "dropped inline, before the call returned"
        );
        let here = std::thread::current().name().map(str::to_string);
        assert_eq!(*full_on.lock().unwrap(), here);
        assert_eq!(
            queued.load(Ordering::SeqCst),
            0,
            "still queued behind the blocker"
        );
        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while queued.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(queued.load(Ordering::SeqCst), 1);
        assert_eq!(queued_on.lock().unwrap().as_deref(), Some("test-reaper"));
    }
}
