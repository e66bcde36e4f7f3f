//! Exporting RingKeeper's data directory to ZooKeeper's: the tree at the last durable
//! zxid (recovered read-only through RingKeeper's storage API) written as a ZooKeeper
//! `version-2` snapshot with its digest, and the epoch files, so that Apache ZooKeeper
//! 3.8 or 3.9 started on it serves the same tree and the same sessions.

use crate::storage::OsDisk;
use crate::zkfiles::import::{ACCEPTED_EPOCH, CURRENT_EPOCH};
use crate::zkfiles::snap::{write_snapshot, Written};
use crate::zkfiles::{epoch_of, VERSION_DIR};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    pub snapshot: PathBuf,
    pub zxid: i64,
    pub written: Written,
    pub accepted_epoch: u32,
    pub current_epoch: u32,
}

/// Writes `dst/version-2/snapshot.<zxid>` and the epoch files from RingKeeper's data in
/// `src` (log in `src_log`, default `src`), built beside `dst` and renamed into place.
/// `myid` is copied. `dst` must not exist or be empty; `src` is only read.
///
/// # Errors
/// A source that does not recover, a `dst` that holds files, a file-system failure.
pub fn export_offline(src: &Path, src_log: Option<&Path>, dst: &Path) -> Result<Exported, String> {
    use crate::server::replication::{read_epoch, ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE};
    if dst.exists()
        && std::fs::read_dir(dst)
            .map_err(|e| format!("{}: {e}", dst.display()))?
            .next()
            .is_some()
    {
        return Err(format!(
            "{}: exists and is not empty; the export writes a new ZooKeeper data directory",
            dst.display()
        ));
    }
    let opened = crate::storage::open::open(Arc::new(OsDisk), src, src_log.unwrap_or(src))?;
    let tree = opened.tree;
    let zxid = tree.zxid();
    let rk_accepted = read_epoch(src, ACCEPTED_EPOCH_FILE).map_err(|e| e.to_string())?;
    let rk_current = read_epoch(src, CURRENT_EPOCH_FILE).map_err(|e| e.to_string())?;
    // ZooKeeper refuses a currentEpoch older than its last zxid's, and an acceptedEpoch
    // below currentEpoch.
    let current_epoch = rk_current.max(epoch_of(zxid));
    let accepted_epoch = rk_accepted.max(current_epoch);
    let parent = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dst
        .file_name()
        .ok_or_else(|| format!("{}: not a directory name", dst.display()))?;
    let staging = parent.join(format!(
        ".{}.exporting.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let v2 = staging.join(VERSION_DIR);
    let snap_name = format!("snapshot.{zxid:x}");
    let result = (|| -> Result<Written, String> {
        std::fs::create_dir_all(&v2).map_err(|e| format!("{}: {e}", v2.display()))?;
        let p = v2.join(&snap_name);
        let f = std::fs::File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
        let w = write_snapshot(&tree, &mut out).map_err(|e| format!("{}: {e}", p.display()))?;
        out.flush().map_err(|e| format!("{}: {e}", p.display()))?;
        out.into_inner()
            .map_err(|e| format!("{}: {e}", p.display()))?
            .sync_all()
            .map_err(|e| format!("{}: {e}", p.display()))?;
        for (n, v) in [
            (ACCEPTED_EPOCH, accepted_epoch),
            (CURRENT_EPOCH, current_epoch),
        ] {
            std::fs::write(v2.join(n), v.to_string())
                .map_err(|e| format!("{}: {e}", v2.join(n).display()))?;
        }
        if let Ok(myid) = std::fs::read(src.join("myid")) {
            std::fs::write(staging.join("myid"), myid)
                .map_err(|e| format!("{}: {e}", staging.display()))?;
        }
        if dst.exists() {
            std::fs::remove_dir(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        }
        std::fs::rename(&staging, dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", parent.display()))?;
        Ok(w)
    })();
    match result {
        Ok(written) => Ok(Exported {
            snapshot: dst.join(VERSION_DIR).join(snap_name),
            zxid,
            written,
            accepted_epoch,
            current_epoch,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}
