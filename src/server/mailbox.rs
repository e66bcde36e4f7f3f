//! A bounded mailbox between two threads: the producer appends during its loop pass,
//! the consumer takes everything in one swap. The consumer is woken only when the box
//! goes from empty to non-empty, so a busy consumer is never woken twice for one batch.
//!
//! A short mutex section guards a `Vec` swap; messages are whole batches (one per loop
//! pass), so the lock is taken a few times per pass, never per request.

use std::sync::Mutex;

/// Wakes the consumer thread (a shard's ring, or a thread's park).
pub trait Wake: Send + Sync {
    fn wake(&self);
}

pub struct Mailbox<T> {
    items: Mutex<Vec<T>>,
    /// The most messages the box holds; a producer seeing a full box holds its work back
    /// (and stops reading from clients) until the consumer catches up.
    cap: usize,
    waker: Box<dyn Wake>,
}

impl<T> Mailbox<T> {
    pub fn new(cap: usize, waker: Box<dyn Wake>) -> Self {
        assert!(cap > 0);
        Mailbox {
            items: Mutex::new(Vec::with_capacity(cap.min(1024))),
            cap,
            waker,
        }
    }

    /// Appends one message, or gives it back when the box is full.
    pub fn push(&self, item: T) -> Result<(), T> {
        let was_empty = {
            let mut q = self.items.lock().expect("mailbox poisoned");
            if q.len() >= self.cap {
                return Err(item);
            }
            q.push(item);
            q.len() == 1
        };
        if was_empty {
            self.waker.wake();
        }
        Ok(())
    }

    /// Appends one message whatever the bound. For streams whose size is bounded by what
    /// the consumer itself sent (replies to its own requests), where refusing would lose
    /// an answer.
    pub fn push_unbounded(&self, item: T) {
        let was_empty = {
            let mut q = self.items.lock().expect("mailbox poisoned");
            q.push(item);
            q.len() == 1
        };
        if was_empty {
            self.waker.wake();
        }
    }

    /// Moves as many of `items` as fit, from the front, in one lock; the rest stay.
    pub fn push_all(&self, items: &mut Vec<T>) {
        let was_empty = {
            let mut q = self.items.lock().expect("mailbox poisoned");
            let room = self.cap.saturating_sub(q.len());
            if room == 0 {
                return;
            }
            let was_empty = q.is_empty();
            if room >= items.len() {
                q.append(items);
            } else {
                q.extend(items.drain(..room));
            }
            was_empty
        };
        if was_empty {
            self.waker.wake();
        }
    }

    /// Moves every queued message into `out`, in order.
    pub fn drain_into(&self, out: &mut Vec<T>) {
        let mut q = self.items.lock().expect("mailbox poisoned");
        if out.is_empty() {
            std::mem::swap(&mut *q, out);
        } else {
            out.append(&mut q);
        }
    }

    /// Moves at most `max` queued messages, the oldest, into `out`; the rest stay.
    pub fn drain_up_to(&self, max: usize, out: &mut Vec<T>) {
        let mut q = self.items.lock().expect("mailbox poisoned");
        if q.len() <= max {
            if out.is_empty() {
                std::mem::swap(&mut *q, out);
            } else {
                out.append(&mut q);
            }
        } else {
            out.extend(q.drain(..max));
        }
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.items.lock().expect("mailbox poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.items.lock().expect("mailbox poisoned").len() >= self.cap
    }
}

/// A wake-up flag a thread can block on (the sequencer's): `wake` sets it, `wait`
/// returns when it is set or the timeout passes, and clears it.
#[derive(Default)]
pub struct Signal {
    set: Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Signal {
    pub fn wait(&self, timeout: std::time::Duration) {
        let mut set = self.set.lock().expect("signal poisoned");
        if !*set {
            set = self
                .cv
                .wait_timeout(set, timeout)
                .expect("signal poisoned")
                .0;
        }
        *set = false;
    }
}

impl Wake for std::sync::Arc<Signal> {
    fn wake(&self) {
        *self.set.lock().expect("signal poisoned") = true;
        self.cv.notify_one();
    }
}
