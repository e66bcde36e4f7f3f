//! Where a backup lives, behind a small interface: named objects that are written whole
//! (a reader never sees half of one), read whole, listed and removed. A directory on a
//! local disk or a mounted volume is [`DirTarget`]; an object store fits the same four
//! calls (PUT, GET, LIST, DELETE) without changing the rest of the backup code.

use std::io;
use std::path::{Path, PathBuf};

/// A backup store of named objects. Names are flat ASCII (`[A-Za-z0-9._-]`).
pub trait BackupTarget: Send + Sync {
    /// Writes `name` whole: after a crash it holds the old bytes or the new, never a mix.
    fn put(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Reads `name` whole; `NotFound` if it does not exist.
    fn get(&self, name: &str) -> io::Result<Vec<u8>>;
    /// The names present, sorted.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Removes `name` (no error if it is absent).
    fn delete(&self, name: &str) -> io::Result<()>;
    /// For messages: where the objects are.
    fn describe(&self) -> String;
}

fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad backup object name {name:?}"),
        ));
    }
    Ok(())
}

/// A directory: each object is a file, written to a temporary name, synced, renamed
/// into place, then the directory synced.
#[derive(Debug, Clone)]
pub struct DirTarget {
    root: PathBuf,
}

impl DirTarget {
    /// The directory `root`, created if missing.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn create(root: &Path) -> io::Result<DirTarget> {
        std::fs::create_dir_all(root)?;
        Ok(DirTarget {
            root: root.to_path_buf(),
        })
    }

    /// An existing directory.
    ///
    /// # Errors
    /// When `root` is not a directory.
    pub fn open(root: &Path) -> io::Result<DirTarget> {
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such backup directory", root.display()),
            ));
        }
        Ok(DirTarget {
            root: root.to_path_buf(),
        })
    }
}

impl BackupTarget for DirTarget {
    fn put(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        check_name(name)?;
        let tmp = self.root.join(format!(".{name}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.root.join(name))?;
        std::fs::File::open(&self.root)?.sync_all()
    }

    fn get(&self, name: &str) -> io::Result<Vec<u8>> {
        check_name(name)?;
        std::fs::read(self.root.join(name))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut v: Vec<String> = std::fs::read_dir(&self.root)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| check_name(n).is_ok())
            .collect();
        v.sort();
        Ok(v)
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        match std::fs::remove_file(self.root.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_target_round_trip() {
        let d = std::env::temp_dir().join(format!("rk-target-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let t = DirTarget::create(&d).unwrap();
        t.put("a.1", b"hello").unwrap();
        t.put("a.1", b"again").unwrap();
        t.put("b", b"").unwrap();
        assert_eq!(t.get("a.1").unwrap(), b"again");
        assert_eq!(t.list().unwrap(), vec!["a.1", "b"]);
        t.delete("b").unwrap();
        t.delete("b").unwrap();
        assert_eq!(t.list().unwrap(), vec!["a.1"]);
        assert!(t.put("../x", b"").is_err());
        assert!(t.get("missing").is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
