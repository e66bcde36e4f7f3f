//! One server per data directory: an exclusive `flock` on each of the data and log
//! directories themselves, held for the life of the process.
//!
//! Two servers writing one directory interleave their appends to the same log segment
//! and each snapshot over the other's: the log gets holes that recovery refuses
//! ("expected the zxid after X, found Y"), so neither server starts again. It happens
//! by mistake (a second start while the first is still stopping, a copied unit file),
//! and ZooKeeper gives no protection beyond its port. The lock is on the directory, not
//! on a file in it, so taking it writes nothing (a refused import leaves a ZooKeeper
//! dataDir exactly as it was), and the kernel releases it when the process ends however
//! it ends, kill -9 included: nothing stale can block a start. The holder's pid, for
//! the error message, comes from /proc/locks.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The held locks; dropping it releases them.
#[derive(Debug)]
pub struct DirLock {
    _dirs: Vec<File>,
}

/// Locks each directory of `dirs` (a directory named twice is locked once).
///
/// # Errors
/// A directory that another process holds, named with that process's pid when
/// /proc/locks tells; or a directory that cannot be opened.
pub fn lock_dirs(dirs: &[&Path]) -> Result<DirLock, String> {
    let mut held = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if seen.contains(&canon) {
            continue;
        }
        seen.push(canon);
        held.push(lock_one(dir)?);
    }
    Ok(DirLock { _dirs: held })
}

fn lock_one(dir: &Path) -> Result<File, String> {
    let file = File::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    // SAFETY: flock reads only its integer arguments; the descriptor is open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(file);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(format!("cannot lock {}: {e}", dir.display()));
    }
    let by = match file.metadata().ok().and_then(|m| holder(&m)) {
        Some(pid) => format!("another process (pid {pid})"),
        None => "another process".to_string(),
    };
    Err(format!(
        "{} is in use by {by}: two servers writing one directory would corrupt its log; \
         stop the other server, or give this one a dataDir (and dataLogDir) of its own",
        dir.display()
    ))
}

/// The pid holding an flock on the file `m` describes, from /proc/locks lines such as
/// `1: FLOCK  ADVISORY  WRITE 28489 fe:00:246951 0 EOF` (device major:minor in hex,
/// inode in decimal).
fn holder(m: &std::fs::Metadata) -> Option<u32> {
    let dev = m.dev();
    let want = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        m.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rk-dirlock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_locked_directory_is_refused_until_released_and_names_the_holder() {
        let (data, log) = (tmp("data"), tmp("log"));
        let held = lock_dirs(&[&data, &log]).expect("first lock");
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            0,
            "the lock writes nothing"
        );
        // flock locks belong to the open file description: a second open in this
        // process conflicts as another process's would. Nothing is written into them.
        let e = lock_dirs(&[&data]).expect_err("data dir is held");
        assert!(e.contains(&data.display().to_string()), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        let e = lock_dirs(&[&log]).expect_err("log dir is held");
        assert!(e.contains("in use"), "{e}");
        drop(held);
        let again = lock_dirs(&[&data, &log]).expect("released on drop");
        drop(again);
        // One directory named twice (dataLogDir = dataDir) is locked once, not refused.
        let both = lock_dirs(&[&data, &data]).expect("same dir twice");
        drop(both);
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_dir_all(&log);
    }
}
