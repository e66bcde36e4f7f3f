//! Starting replication: what an ensemble member's ZAB peer starts from (its epoch
//! files and its history), and the epoch files' durable writes. The protocol runs in
//! the sequencer core (`crate::sequencer`), its connections on the core loop
//! (`server::core_loop`); see docs/replication.md.
//!
//! The history. The peer's in-memory log starts at a base that is one of this server's
//! snapshot files (`logged_history`), and the core compacts it on every durable
//! snapshot to the snapshot before, so it spans one to two snapshot intervals and a
//! learner a little behind the newest snapshot still gets a DIFF. A leader sends SNAP of
//! that base file to a learner behind it.

use crate::zab::peer::{self, Persisted};
use crate::zab::{Ensemble, ServerId, Zxid};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The accepted and current epoch files, named as ZooKeeper names them in dataDir.
pub const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";
pub const CURRENT_EPOCH_FILE: &str = "currentEpoch";

/// One member's addresses.
#[derive(Debug, Clone)]
pub struct Member {
    pub quorum: SocketAddr,
    pub election: SocketAddr,
}

/// What the replication loop needs from zoo.cfg.
#[derive(Debug, Clone)]
pub struct ReplConfig {
    pub my_id: ServerId,
    pub ensemble: Ensemble,
    /// Every member, this server included.
    pub members: BTreeMap<ServerId, Member>,
    pub data_dir: PathBuf,
    /// dataLogDir: the log the peer starts from, and cuts on TRUNC.
    pub log_dir: PathBuf,
    pub tick_ms: u64,
    pub init_limit: u64,
    pub sync_limit: u64,
    /// The last zxid recovered from this server's data directory.
    pub recovered_zxid: Zxid,
    /// The snapshot recovery loaded (`None`: it replayed from the empty tree).
    pub snapshot_zxid: Option<Zxid>,
    /// `peer::Config::max_counter` (u32::MAX; tests lower it to reach an epoch's renewal).
    pub max_counter: u32,
}

impl ReplConfig {
    /// The peer's settings: initLimit and syncLimit in peer ticks
    /// (`sequencer::PEER_TICKS_PER_TICK` per tickTime).
    pub fn peer_config(&self) -> peer::Config {
        let per = crate::sequencer::PEER_TICKS_PER_TICK as u64;
        peer::Config {
            my_id: self.my_id,
            ensemble: self.ensemble.clone(),
            init_limit: self.init_limit.max(1) * per,
            sync_limit: self.sync_limit.max(1) * per,
            max_inflight: crate::sequencer::MAX_INFLIGHT,
            max_counter: self.max_counter,
            broken: Default::default(),
        }
    }
}

/// What the peer starts from: the epoch files and the history (see the module header).
///
/// # Errors
/// Epoch files that exist but cannot be read.
pub fn persisted(cfg: &ReplConfig) -> std::io::Result<Persisted> {
    let accepted_epoch = read_epoch(&cfg.data_dir, ACCEPTED_EPOCH_FILE)?;
    let current_epoch = read_epoch(&cfg.data_dir, CURRENT_EPOCH_FILE)?;
    Ok(Persisted {
        accepted_epoch: accepted_epoch.max(current_epoch),
        current_epoch,
        ..logged_history(cfg)
    })
}

/// Reads an epoch file; a missing file is epoch 0 (a fresh server).
///
/// # Errors
/// When the file exists but cannot be read or does not hold a number.
pub fn read_epoch(dir: &Path, name: &str) -> std::io::Result<u32> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(s) => s.trim().parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{name}: {e}: {s:?}"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes an epoch file durably: temporary file, fsync, rename, fsync of the directory,
/// so that after a crash the file holds either the old epoch or the new one, and the new
/// one only if this returned.
///
/// # Errors
/// Any I/O failure; the caller must not acknowledge the epoch then.
pub fn write_epoch(dir: &Path, name: &str, epoch: u32) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{epoch}\n").as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The history the peer starts from: a base that is a snapshot file of this server,
/// and the log's txns after it (a leader sends DIFF or TRUNC inside that log, and SNAP
/// of the base to a learner behind it until the loop reports a newer snapshot durable).
///
/// The base is the snapshot before the one recovery loaded when the log still reaches
/// back to it (holds that snapshot's own zxid and every txn after it), the floor the
/// loop keeps at run time (see `Sequencer::snapshot_durable`, which also keeps as far
/// back as snapshotSizeFactor allows once the log has grown): a learner slightly
/// behind the newest snapshot still gets a DIFF. Otherwise it is the snapshot recovery loaded,
/// whose txns after it recovery has just replayed. Never the whole log: memory is
/// bounded by the snapshot policy from the start. The base counts as committed, as it
/// must: only committed roots are snapshotted.
///
/// Every txn here is already applied to the recovered tree: the core skips their
/// commits.
fn logged_history(cfg: &ReplConfig) -> Persisted {
    let recovered = cfg.recovered_zxid;
    let loaded = cfg.snapshot_zxid.unwrap_or(0);
    let older = match crate::storage::snapshot::list(&crate::storage::OsDisk, &cfg.data_dir) {
        Ok(v) => v
            .into_iter()
            .map(|(z, _)| z as u64)
            .find(|z| *z < loaded && *z > 0),
        Err(e) => {
            eprintln!("ringkeeper: cannot list the snapshots for replication: {e}");
            None
        }
    };
    if let Some(base) = older {
        // A log that does not reach back is usual (after a purge or a SNAP): the
        // loaded snapshot is the base then.
        if let Ok(log) = logged_after(cfg, base, true) {
            return Persisted {
                snapshot: Some((base, bytes::Bytes::new())),
                log,
                ..Persisted::default()
            };
        }
    }
    if recovered == loaded {
        return Persisted {
            snapshot: Some((loaded, bytes::Bytes::new())),
            ..Persisted::default()
        };
    }
    match logged_after(cfg, loaded, false) {
        Ok(log) => Persisted {
            snapshot: Some((loaded, bytes::Bytes::new())),
            log,
            ..Persisted::default()
        },
        Err(e) => {
            // Recovery read the same log a moment ago, so this is a disk failing now.
            // The tree is at `recovered`: the peer must not claim less. A learner
            // behind it is refused SNAP (no snapshot file of that zxid) until the next
            // snapshot moves the base; it retries meanwhile.
            eprintln!(
                "ringkeeper: cannot read the log for replication ({e}); starting from zxid {recovered:#x}, \
                 which has no snapshot file: learners behind it cannot sync until the next snapshot"
            );
            Persisted {
                snapshot: Some((recovered, bytes::Bytes::new())),
                ..Persisted::default()
            }
        }
    }
}

/// The logged txns after `base` through the recovered zxid, each following the one
/// before (`recovery::follows`). With `holds_base`, the log must also hold `base`
/// itself, which proves that the first txn after it is its successor.
///
/// # Errors
/// A log that does not reach back, has a gap, or does not end at the recovered zxid.
fn logged_after(
    cfg: &ReplConfig,
    base: Zxid,
    holds_base: bool,
) -> Result<Vec<crate::zab::Txn>, String> {
    let reader = crate::storage::LogReader::open(Arc::new(crate::storage::OsDisk), &cfg.log_dir)
        .map_err(|e| e.to_string())?;
    let mut log = Vec::new();
    let mut first = None;
    let mut prev = base as i64;
    let from = if holds_base { base } else { base + 1 };
    reader
        .replay(from as i64, |rec| {
            let z = rec.txn.zxid;
            if first.is_none() {
                first = Some(z);
                if holds_base {
                    return Ok(());
                }
            }
            if !crate::storage::recovery::follows(prev, z) {
                return Err(crate::storage::LogError::Corrupt {
                    file: rec.file.to_path_buf(),
                    offset: rec.offset,
                    expected: format!("a txn after {prev:#x}, found {z:#x}"),
                });
            }
            prev = z;
            let mut b = Vec::new();
            crate::storage::txn_codec::encode_txn(&rec.txn, &mut b);
            log.push(crate::zab::Txn {
                zxid: z as u64,
                payload: b.into(),
            });
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    if holds_base && first != Some(base as i64) {
        return Err(format!("the log does not hold zxid {base:#x}"));
    }
    if prev as u64 != cfg.recovered_zxid {
        return Err(format!(
            "the log after {base:#x} ends at {prev:#x}, recovery at {:#x}",
            cfg.recovered_zxid
        ));
    }
    Ok(log)
}

#[cfg(test)]
mod tests;
