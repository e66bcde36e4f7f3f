//! Helpers shared by the log tests: txns, a logger driver that waits for events with a
//! bounded loop, and the acknowledged-zxid oracle.

#![allow(dead_code)]

use bytes::Bytes;
use ringkeeper::storage::{LogEvent, Logger};
use ringkeeper::txn::{Txn, TxnOp};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// A setData txn whose content names its zxid and a generation, so a re-proposed txn is
/// told apart from the one it replaces.
pub fn txn(zxid: i64, generation: i32, data_len: usize) -> Txn {
    let mut data = format!("z{zxid}g{generation}-").into_bytes();
    data.resize(data_len.max(data.len()), b'x');
    Txn {
        session_id: 7,
        cxid: generation,
        zxid,
        time_ms: 1_700_000_000_000,
        op: TxnOp::SetData {
            path: "/k".into(),
            data: Some(Bytes::from(data)),
            version: zxid as i32,
        },
    }
}

pub fn batch(first: i64, n: usize, generation: i32, data_len: usize) -> Vec<Txn> {
    (0..n as i64)
        .map(|i| txn(first + i, generation, data_len))
        .collect()
}

/// A notify callback and the receiver it signals.
pub fn notifier() -> (Box<dyn Fn() + Send>, Receiver<()>) {
    let (tx, rx) = channel();
    (
        Box::new(move || {
            let _ = tx.send(());
        }),
        rx,
    )
}

/// What the events said so far.
#[derive(Debug, Default)]
pub struct Oracle {
    pub durable_through: i64,
    /// (first, last) of every failed range, in order.
    pub failed: Vec<(i64, i64)>,
    pub errors: Vec<String>,
    /// The zxid the next event must start after (events come in zxid order).
    pub last_reported: i64,
}

impl Oracle {
    pub fn absorb(&mut self, events: Vec<LogEvent>) {
        for e in events {
            match e {
                LogEvent::Durable { through_zxid } => {
                    assert!(through_zxid > self.durable_through, "durable went back");
                    self.durable_through = through_zxid;
                    self.last_reported = through_zxid;
                }
                LogEvent::Failed {
                    first_zxid,
                    last_zxid,
                    error,
                } => {
                    assert!(first_zxid > self.durable_through, "a durable zxid failed");
                    self.failed.push((first_zxid, last_zxid));
                    self.errors.push(error.to_string());
                    self.last_reported = last_zxid;
                }
            }
        }
    }

    /// Whether `zxid` has been reported either way.
    pub fn settled(&self, zxid: i64) -> bool {
        self.durable_through >= zxid || self.failed.iter().any(|&(a, b)| a <= zxid && zxid <= b)
    }
}

/// Polls until `done(oracle)` holds; bounded so a lost event fails the test instead of
/// hanging it.
pub fn wait_for(
    logger: &Logger,
    rx: &Receiver<()>,
    oracle: &mut Oracle,
    done: impl Fn(&Oracle) -> bool,
) {
    for _ in 0..100_000 {
        let mut ev = Vec::new();
        logger.poll(&mut ev);
        oracle.absorb(ev);
        if done(oracle) {
            return;
        }
        let _ = rx.recv_timeout(Duration::from_millis(200));
    }
    panic!("events never arrived: {oracle:?}");
}

/// Appends one-txn batches of 3000 bytes from zxid `from` on, each waited for, until one
/// fails (at most `max_batches`); asserts that exactly that batch failed, with ENOSPC.
/// Returns its zxid.
pub fn append_until_enospc(
    logger: &Logger,
    rx: &Receiver<()>,
    oracle: &mut Oracle,
    from: i64,
    max_batches: u64,
) -> i64 {
    let mut z = from;
    for _ in 0..max_batches {
        logger.append(batch(z, 1, 0, 3000)).unwrap();
        wait_for(logger, rx, oracle, |o| o.settled(z));
        if !oracle.failed.is_empty() {
            break;
        }
        z += 1;
    }
    assert_eq!(oracle.failed, vec![(z, z)], "ENOSPC never surfaced");
    assert!(
        oracle.errors[0].contains("No space left"),
        "{:?}",
        oracle.errors
    );
    z
}
