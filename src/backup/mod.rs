//! Continuous backups of a running server's data directory, and point-in-time restore.
//!
//! `ringkeeper backup` runs beside a server (any server of an ensemble, which keeps
//! running) and keeps a [`BackupTarget`] current: every snapshot the server writes, and
//! every log segment, closed ones once and the active one's durable prefix again on each
//! pass, each checked (snapshot CRCs, the log reader's CRCs and zxid continuity) before
//! it is stored, and listed with its CRC32C and zxid range in a manifest written last.
//! Files are only read: the server's directories are never written.
//!
//! `ringkeeper restore --to-zxid Z | --to-time T | --latest` builds a new data directory
//! of that point: the newest backed-up snapshot at or before it, the segments after it,
//! the log cut back to the point through the storage API's truncation, then opened
//! through the storage API to check it recovers exactly that zxid. `--to-time T` is the
//! longest prefix of the history whose txns were all committed at or before T.
//!
//! `ringkeeper backup verify` checks every object's CRC against the manifest, then the
//! whole backup as a data directory: every snapshot, every log record's CRC, zxid
//! continuity, and recovery against a full replay (`ringkeeper data check`).

pub mod target;

use crate::storage::format::SegmentHeader;
use crate::storage::open::ReaderSource;
use crate::storage::snapshot;
use crate::storage::{LogReader, OsDisk};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use target::{BackupTarget, DirTarget};

/// The manifest's object name.
pub const MANIFEST: &str = "MANIFEST";
const MANIFEST_HEADER: &str = "ringkeeper-backup 1";

/// One backed-up file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Snapshot {
        zxid: i64,
    },
    /// A log segment's valid prefix: txns `first..=last` (`last < first`: none yet).
    Segment {
        first: i64,
        last: i64,
        closed: bool,
    },
}

/// A manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub crc: u32,
    pub object: Object,
}

/// What the backup holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: BTreeMap<String, Entry>,
    pub accepted_epoch: Option<u32>,
    pub current_epoch: Option<u32>,
}

fn opt(v: Option<u32>) -> String {
    v.map_or("-".to_string(), |e| e.to_string())
}

impl Manifest {
    /// The text form: a header line, the epochs, one line per object, and a last line
    /// with the CRC32C of every line before it.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{MANIFEST_HEADER}");
        let _ = writeln!(
            s,
            "epochs {} {}",
            opt(self.accepted_epoch),
            opt(self.current_epoch)
        );
        for e in self.entries.values() {
            match &e.object {
                Object::Snapshot { zxid } => {
                    let _ = writeln!(s, "snapshot {} {} {:08x} {zxid:x}", e.name, e.size, e.crc);
                }
                Object::Segment {
                    first,
                    last,
                    closed,
                } => {
                    let _ = writeln!(
                        s,
                        "segment {} {} {:08x} {first:x} {last:x} {}",
                        e.name,
                        e.size,
                        e.crc,
                        if *closed { "closed" } else { "open" }
                    );
                }
            }
        }
        let crc = crc32c::crc32c(s.as_bytes());
        let _ = writeln!(s, "crc {crc:08x}");
        s
    }

    /// Parses [`Manifest::encode`]'s form.
    ///
    /// # Errors
    /// A manifest that does not parse or whose CRC does not match, with the line.
    pub fn decode(text: &str) -> Result<Manifest, String> {
        let Some(crc_at) = text.trim_end().rfind("\ncrc ") else {
            return Err("manifest has no crc line: cut short?".into());
        };
        let body = &text[..crc_at + 1];
        let want = text[crc_at + 5..].trim();
        let got = format!("{:08x}", crc32c::crc32c(body.as_bytes()));
        if want != got {
            return Err(format!(
                "manifest CRC32C mismatch: it says {want}, its lines give {got}"
            ));
        }
        let mut m = Manifest::default();
        let mut lines = body.lines().enumerate();
        match lines.next() {
            Some((_, MANIFEST_HEADER)) => {}
            other => return Err(format!("not a RingKeeper backup manifest: {other:?}")),
        }
        let hex = |s: &str, n: usize| {
            u64::from_str_radix(s, 16)
                .map(|v| v as i64)
                .map_err(|_| format!("manifest line {}: bad hex {s:?}", n + 1))
        };
        for (n, line) in lines {
            let f: Vec<&str> = line.split(' ').collect();
            let bad = || format!("manifest line {}: {line:?}", n + 1);
            match f.as_slice() {
                ["epochs", a, c] => {
                    m.accepted_epoch = a.parse().ok();
                    m.current_epoch = c.parse().ok();
                }
                ["snapshot", name, size, crc, zxid] => {
                    m.entries.insert(
                        name.to_string(),
                        Entry {
                            name: name.to_string(),
                            size: size.parse().map_err(|_| bad())?,
                            crc: hex(crc, n)? as u32,
                            object: Object::Snapshot {
                                zxid: hex(zxid, n)?,
                            },
                        },
                    );
                }
                ["segment", name, size, crc, first, last, state] => {
                    m.entries.insert(
                        name.to_string(),
                        Entry {
                            name: name.to_string(),
                            size: size.parse().map_err(|_| bad())?,
                            crc: hex(crc, n)? as u32,
                            object: Object::Segment {
                                first: hex(first, n)?,
                                last: hex(last, n)?,
                                closed: match *state {
                                    "closed" => true,
                                    "open" => false,
                                    _ => return Err(bad()),
                                },
                            },
                        },
                    );
                }
                _ => return Err(bad()),
            }
        }
        Ok(m)
    }

    /// The manifest in `target`, or an empty one if there is none yet.
    ///
    /// # Errors
    /// A manifest that cannot be read or does not parse.
    pub fn load(target: &dyn BackupTarget) -> Result<Manifest, String> {
        match target.get(MANIFEST) {
            Ok(b) => Manifest::decode(&String::from_utf8_lossy(&b))
                .map_err(|e| format!("{}/{MANIFEST}: {e}", target.describe())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(format!("{}/{MANIFEST}: {e}", target.describe())),
        }
    }

    /// The newest zxid the backup reaches.
    pub fn last_zxid(&self) -> i64 {
        self.entries
            .values()
            .map(|e| match e.object {
                Object::Snapshot { zxid } => zxid,
                Object::Segment { last, .. } => last,
            })
            .max()
            .unwrap_or(0)
    }

    /// Keeps the newest `keep` snapshots (0: everything) and the log from the oldest of
    /// them on; removes the rest from the manifest and returns their names. What stays
    /// restores any point from the oldest kept snapshot to the newest txn.
    pub fn expire(&mut self, keep: usize) -> Vec<String> {
        let mut snaps: Vec<(i64, String)> = self
            .entries
            .values()
            .filter_map(|e| match e.object {
                Object::Snapshot { zxid } => Some((zxid, e.name.clone())),
                _ => None,
            })
            .collect();
        if keep == 0 || snaps.len() <= keep {
            return Vec::new();
        }
        snaps.sort();
        let oldest_kept = snaps[snaps.len() - keep].0;
        let mut gone: Vec<String> = snaps[..snaps.len() - keep]
            .iter()
            .map(|(_, n)| n.clone())
            .collect();
        // Segments wholly before the one that holds the txn after the oldest kept
        // snapshot.
        let segs = self.segments();
        if let Some(k) = segs.iter().rposition(
            |e| matches!(e.object, Object::Segment { first, .. } if first <= oldest_kept + 1),
        ) {
            gone.extend(segs[..k].iter().map(|e| e.name.clone()));
        }
        for n in &gone {
            self.entries.remove(n);
        }
        gone
    }

    fn segments(&self) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| matches!(e.object, Object::Segment { .. }))
            .collect();
        v.sort_by_key(|e| match e.object {
            Object::Segment { first, .. } => first,
            _ => 0,
        });
        v
    }
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(base: &Path, what: &str) -> Result<Scratch, String> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = base.join(format!(".rk-{what}.{}.{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A segment's valid prefix as the log reader sees it: (bytes up to the end of its
/// last complete batch, first zxid, last zxid). `scratch` holds a copy for the reader.
fn segment_prefix(bytes: &[u8], name: &str, scratch: &Path) -> Result<(Vec<u8>, i64, i64), String> {
    let first = crate::storage::format::parse_segment_name(name)
        .ok_or_else(|| format!("{name}: not a log segment name"))?;
    let p = scratch.join(name);
    std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    let result = (|| {
        let reader = LogReader::open(Arc::new(OsDisk), scratch).map_err(|e| e.to_string())?;
        let mut last = first - 1;
        let end = reader
            .replay(0, |rec| {
                last = rec.txn.zxid;
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        let cut = end
            .position
            .tail
            .map_or(bytes.len() as u64, |t| t.end_offset)
            .min(bytes.len() as u64) as usize;
        Ok((bytes[..cut].to_vec(), first, last))
    })();
    let _ = std::fs::remove_file(&p);
    result
}

/// What one backup pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub snapshots_added: usize,
    pub segments_added: usize,
    pub bytes: u64,
    /// The newest zxid the backup now reaches.
    pub last_zxid: i64,
    /// Objects removed by the retention (`keep_snapshots`).
    pub removed: Vec<String>,
    pub notes: Vec<String>,
}

/// One backup pass over `data_dir` (snapshots, epoch files) and `log_dir` (segments)
/// into `target`; `scratch` is a directory for temporary copies (never the server's).
///
/// # Errors
/// A file that cannot be read, a closed segment or snapshot that fails its checks, or a
/// target that cannot be written. The manifest is written only after every object it
/// lists, so an interrupted pass leaves the previous manifest valid.
pub fn backup_pass(
    data_dir: &Path,
    log_dir: &Path,
    target: &dyn BackupTarget,
    scratch: &Path,
    committed: Option<i64>,
    keep_snapshots: usize,
) -> Result<PassReport, String> {
    let mut m = Manifest::load(target)?;
    let mut report = PassReport::default();
    let scratch = Scratch::new(scratch, "backup")?;
    for (zxid, path) in snapshot::list(&OsDisk, data_dir).map_err(|e| e.to_string())? {
        let name = snapshot::file_name(zxid);
        if m.entries.contains_key(&name) {
            continue;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // Purged between the listing and the read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let tree =
            snapshot::read_from(&bytes[..]).map_err(|e| format!("{}: {e}", path.display()))?;
        if tree.zxid() != zxid {
            return Err(format!(
                "{}: holds zxid {:#x}, its name says {zxid:#x}",
                path.display(),
                tree.zxid()
            ));
        }
        target
            .put(&name, &bytes)
            .map_err(|e| format!("{}: {e}", target.describe()))?;
        report.snapshots_added += 1;
        report.bytes += bytes.len() as u64;
        m.entries.insert(
            name.clone(),
            Entry {
                name,
                size: bytes.len() as u64,
                crc: crc32c::crc32c(&bytes),
                object: Object::Snapshot { zxid },
            },
        );
    }
    let segs = snapshot::list_logs(&OsDisk, log_dir).map_err(|e| e.to_string())?;
    for (i, (_, path)) in segs.iter().enumerate() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let closed = i + 1 < segs.len();
        if let (Some(c), Some(first)) =
            (committed, crate::storage::format::parse_segment_name(&name))
        {
            if first > c {
                // Nothing in it is committed yet (and nothing after it).
                break;
            }
        }
        if let Some(Entry {
            object: Object::Segment { closed: true, .. },
            ..
        }) = m.entries.get(&name)
        {
            continue;
        }
        // The active segment is being appended to: a copy may catch a batch half
        // written past the reader's window; copy again (bounded) until it reads clean.
        let mut attempt = 0;
        let (bytes, first, last) = loop {
            attempt += 1;
            let raw = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break (Vec::new(), 0, -1),
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            match segment_prefix(&raw, &name, &scratch.0) {
                Ok(v) => break v,
                Err(e) if closed || attempt >= 5 => {
                    return Err(format!("{}: {e}", path.display()));
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        if bytes.is_empty() {
            continue;
        }
        // Past the committed zxid the log may hold proposals that are never committed
        // (a leader that fails before its quorum acks them; the member is then told to
        // TRUNC them): the entry reaches only the committed prefix, restore cuts there,
        // and a segment is final only once all of it is committed.
        let (last, closed) = match committed {
            Some(c) if last > c => (c.max(first - 1), false),
            _ => (last, closed),
        };
        if let Some(Entry {
            object: Object::Segment { last: had, .. },
            ..
        }) = m.entries.get(&name)
        {
            if *had == last && !closed {
                continue;
            }
        }
        target
            .put(&name, &bytes)
            .map_err(|e| format!("{}: {e}", target.describe()))?;
        report.segments_added += 1;
        report.bytes += bytes.len() as u64;
        m.entries.insert(
            name.clone(),
            Entry {
                name,
                size: bytes.len() as u64,
                crc: crc32c::crc32c(&bytes),
                object: Object::Segment {
                    first,
                    last,
                    closed,
                },
            },
        );
    }
    use crate::server::replication::{read_epoch, ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE};
    m.accepted_epoch = read_epoch(data_dir, ACCEPTED_EPOCH_FILE)
        .ok()
        .filter(|e| *e > 0);
    m.current_epoch = read_epoch(data_dir, CURRENT_EPOCH_FILE)
        .ok()
        .filter(|e| *e > 0);
    // Retention: the manifest that no longer lists them is written first, so a listed
    // object is never missing.
    let expired = m.expire(keep_snapshots);
    target
        .put(MANIFEST, m.encode().as_bytes())
        .map_err(|e| format!("{}: {e}", target.describe()))?;
    for name in &expired {
        target
            .delete(name)
            .map_err(|e| format!("{}: {name}: {e}", target.describe()))?;
    }
    report.removed = expired;
    report.last_zxid = m.last_zxid();
    Ok(report)
}

/// The zxid a running server has committed and applied, from its `srvr` answer (the
/// `Zxid:` line), asked on its client port. Committed zxids only grow, so a value asked
/// before a pass bounds every txn of that pass that may be backed up.
///
/// # Errors
/// No connection, no answer in 10 s, or an answer without a zxid (a server that is not
/// serving: in an election, or `srvr` not in its 4lw whitelist).
pub fn committed_zxid(addr: &str) -> Result<i64, String> {
    let text = crate::top::four_letter_within(addr, "srvr", std::time::Duration::from_secs(10))
        .map_err(|e| format!("asking {addr} for its committed zxid: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .map(|z| z as i64)
        .ok_or_else(|| {
            format!(
                "{addr} answered srvr without a zxid (not serving, or srvr not whitelisted): {}",
                text.trim()
            )
        })
}

/// Fetches `e` from `target` and checks its size and CRC32C against the manifest.
fn fetch(target: &dyn BackupTarget, e: &Entry) -> Result<Vec<u8>, String> {
    let b = target
        .get(&e.name)
        .map_err(|err| format!("{}/{}: {err}", target.describe(), e.name))?;
    let crc = crc32c::crc32c(&b);
    if b.len() as u64 != e.size || crc != e.crc {
        return Err(format!(
            "{}/{}: {} bytes with CRC32C {crc:08x}, the manifest says {} bytes with {:08x}",
            target.describe(),
            e.name,
            b.len(),
            e.size,
            e.crc
        ));
    }
    Ok(b)
}

/// Writes a fetched segment into `dir`, extended with zeros to its preallocated size
/// (the backup keeps only the written prefix).
fn stage_segment(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    if let Ok(h) = SegmentHeader::decode(bytes) {
        if h.segment_bytes > bytes.len() as u64 {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_len(h.segment_bytes))
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    Ok(())
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub ok: bool,
    pub text: String,
}

/// Checks every object against the manifest, then the backup as a data directory
/// (`ringkeeper data check`: snapshots, log CRCs, zxid continuity, recovery against a
/// full replay where the log reaches back far enough).
///
/// # Errors
/// A manifest that cannot be read, or a scratch directory that cannot be written.
pub fn verify(target: &dyn BackupTarget, scratch: &Path) -> Result<VerifyReport, String> {
    let m = Manifest::load(target)?;
    let mut text = String::new();
    let mut ok = true;
    if m.entries.is_empty() {
        return Ok(VerifyReport {
            ok: false,
            text: format!("BAD  {}: the backup holds nothing\n", target.describe()),
        });
    }
    let dir = Scratch::new(scratch, "verify")?;
    for e in m.entries.values() {
        match fetch(target, e) {
            Ok(b) => {
                let staged = match e.object {
                    Object::Snapshot { .. } => std::fs::write(dir.0.join(&e.name), &b)
                        .map_err(|err| format!("{}: {err}", dir.0.display())),
                    Object::Segment { .. } => stage_segment(&dir.0, &e.name, &b),
                };
                staged?;
                let _ = writeln!(
                    text,
                    "ok   {}: {} bytes, CRC32C {:08x}",
                    e.name, e.size, e.crc
                );
            }
            Err(err) => {
                ok = false;
                let _ = writeln!(text, "BAD  {err}");
            }
        }
    }
    // Zxid continuity between the segments the manifest lists.
    let segs = m.segments();
    for w in segs.windows(2) {
        if let (Object::Segment { last, .. }, Object::Segment { first, .. }) =
            (&w[0].object, &w[1].object)
        {
            if !crate::storage::recovery::follows(*last, *first) {
                ok = false;
                let _ = writeln!(
                    text,
                    "BAD  {} starts at zxid {first:#x}, right after {} which ends at {last:#x}: \
                     a gap in the backed-up log",
                    w[1].name, w[0].name
                );
            }
        }
    }
    let mut source = ReaderSource::open(Arc::new(OsDisk), &dir.0).map_err(|e| e.to_string())?;
    let r = crate::datadir::check(&OsDisk, &dir.0, Some(&mut source)).map_err(|e| e.to_string())?;
    // The check prints the scratch paths; show object names instead.
    let prefix = format!("{}/", dir.0.display());
    text.push_str(&r.text.replace(&prefix, ""));
    ok &= r.ok;
    let _ = writeln!(
        text,
        "{}: backup of {} objects through zxid {:#x}",
        if ok { "VALID" } else { "INVALID" },
        m.entries.len(),
        m.last_zxid()
    );
    Ok(VerifyReport { ok, text })
}

/// Where to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Zxid(i64),
    /// Milliseconds since the Unix epoch: the longest prefix of txns committed at or
    /// before it.
    Time(i64),
    Latest,
}

/// What [`restore`] built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub zxid: i64,
    pub snapshot_zxid: Option<i64>,
    pub znodes: usize,
    pub sessions: usize,
    pub digest: u64,
}

/// Builds a new data directory `dst` (must not exist, or be empty) holding the history
/// through `point`, from the backup in `target`.
///
/// # Errors
/// A point the backup does not reach, an object whose CRC does not match, a log that
/// does not recover to exactly the point, a file-system failure; nothing is left at `dst`.
pub fn restore(target: &dyn BackupTarget, point: Point, dst: &Path) -> Result<Restored, String> {
    if dst.exists()
        && std::fs::read_dir(dst)
            .map_err(|e| format!("{}: {e}", dst.display()))?
            .next()
            .is_some()
    {
        return Err(format!("{}: exists and is not empty", dst.display()));
    }
    let m = Manifest::load(target)?;
    if m.entries.is_empty() {
        return Err(format!("{}: the backup holds nothing", target.describe()));
    }
    let parent = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let staging = Scratch::new(parent, "restore")?;
    let segs = m.segments();
    let zxid = match point {
        Point::Zxid(z) => z,
        Point::Latest => m.last_zxid(),
        Point::Time(t) => {
            // Scan every backed-up txn, oldest first, for the prefix committed by t.
            let scan = Scratch::new(parent, "restore-scan")?;
            for e in &segs {
                stage_segment(&scan.0, &e.name, &fetch(target, e)?)?;
            }
            let reader = LogReader::open(Arc::new(OsDisk), &scan.0).map_err(|e| e.to_string())?;
            let mut last: Option<i64> = None;
            let mut done = false;
            reader
                .replay(0, |rec| {
                    if !done {
                        if rec.txn.zxid > m.last_zxid() {
                            // Past what the backup holds as committed.
                            done = true;
                        } else if rec.txn.time_ms <= t {
                            last = Some(rec.txn.zxid);
                        } else {
                            done = true;
                        }
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
            match last {
                Some(z) => z,
                None => {
                    return Err(format!(
                        "no backed-up txn was committed at or before {t} ms: the backup's log \
                         starts later"
                    ))
                }
            }
        }
    };
    if zxid > m.last_zxid() {
        return Err(format!(
            "the backup reaches zxid {:#x}; zxid {zxid:#x} is past it",
            m.last_zxid()
        ));
    }
    // The newest snapshot at or before the point.
    let snap = m
        .entries
        .values()
        .filter_map(|e| match e.object {
            Object::Snapshot { zxid: z } if z <= zxid => Some((z, e)),
            _ => None,
        })
        .max_by_key(|(z, _)| *z);
    let base = snap.map_or(0, |(z, _)| z);
    if let Some((_, e)) = snap {
        let b = fetch(target, e)?;
        let p = staging.0.join(&e.name);
        std::fs::write(&p, b).map_err(|err| format!("{}: {err}", p.display()))?;
    }
    // The segments from the one holding base + 1 on, through the point.
    let start = segs
        .iter()
        .rposition(|e| matches!(e.object, Object::Segment { first, .. } if first <= base + 1))
        .unwrap_or(0);
    for e in &segs[start..] {
        if let Object::Segment { first, .. } = e.object {
            if first > zxid {
                break;
            }
        }
        stage_segment(&staging.0, &e.name, &fetch(target, e)?)?;
    }
    crate::storage::truncate::truncate_log(&staging.0, zxid)
        .map_err(|e| format!("cutting the log back to {zxid:#x}: {e}"))?;
    let opened = crate::storage::open::open(Arc::new(OsDisk), &staging.0, &staging.0)?;
    if opened.zxid != zxid {
        return Err(format!(
            "the backup recovers to zxid {:#x}, not {zxid:#x}: the txns between are not in it",
            opened.zxid
        ));
    }
    use crate::server::replication::{write_epoch, ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE};
    let epoch = crate::zkfiles::epoch_of(zxid);
    let current = m.current_epoch.unwrap_or(0).max(epoch);
    let accepted = m.accepted_epoch.unwrap_or(0).max(current);
    if current > 0 {
        write_epoch(&staging.0, CURRENT_EPOCH_FILE, current).map_err(|e| e.to_string())?;
        write_epoch(&staging.0, ACCEPTED_EPOCH_FILE, accepted).map_err(|e| e.to_string())?;
    }
    let restored = Restored {
        zxid,
        snapshot_zxid: snap.map(|(z, _)| z),
        znodes: opened.tree.len(),
        sessions: opened.tree.session_count(),
        digest: opened.tree.digest(),
    };
    if dst.exists() {
        std::fs::remove_dir(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    }
    std::fs::rename(&staging.0, dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    Ok(restored)
}

/// Parses a restore time: milliseconds since the Unix epoch, or RFC 3339
/// (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.250+02:00`).
///
/// # Errors
/// Anything else.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        format!(
            "{s:?}: not a time (milliseconds since 1970, or RFC 3339 like 2024-05-01T12:00:00Z)"
        )
    };
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num =
        |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok()).ok_or_else(bad);
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return Err(bad());
        }
        let mut f = digits.clone();
        f.truncate(3);
        while f.len() < 3 {
            f.push('0');
        }
        ms = f.parse().map_err(|_| bad())?;
        rest = &frac[digits.len()..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let hh: i64 = o[1..3].parse().map_err(|_| bad())?;
            let mm: i64 = o[4..6].parse().map_err(|_| bad())?;
            let v = hh * 60 + mm;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_and_crc() {
        let mut m = Manifest {
            accepted_epoch: Some(3),
            current_epoch: None,
            ..Default::default()
        };
        m.entries.insert(
            "snapshot.10".into(),
            Entry {
                name: "snapshot.10".into(),
                size: 99,
                crc: 0xdead_beef,
                object: Object::Snapshot { zxid: 0x10 },
            },
        );
        m.entries.insert(
            "log.0000000000000001".into(),
            Entry {
                name: "log.0000000000000001".into(),
                size: 8192,
                crc: 7,
                object: Object::Segment {
                    first: 1,
                    last: 0x20,
                    closed: false,
                },
            },
        );
        let text = m.encode();
        assert_eq!(Manifest::decode(&text).unwrap(), m);
        assert_eq!(m.last_zxid(), 0x20);
        let bad = text.replace("8192", "8193");
        assert!(Manifest::decode(&bad).unwrap_err().contains("CRC32C"));
        assert!(Manifest::decode(&text[..text.len() - 12]).is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000123").unwrap(), 1_700_000_000_123);
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-15T00:13:20.5+02:00").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(parse_time("2000-03-01T00:00:00Z").unwrap(), 951_868_800_000);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2023-13-01T00:00:00Z").is_err());
    }
}
