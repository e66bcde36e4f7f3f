//! The audit log (`audit.enable=true`): who (session, users, address) changed what
//! (operation, znode, create mode, ACL) with which result, one line per event in
//! ZooKeeper 3.9's format (`AuditEvent.toString`, logged by `Slf4jAuditLogger` with
//! ZooKeeper's default log pattern):
//!
//! ```text
//! 2026-12-05 01:02:03,456 INFO audit.Slf4jAuditLogger: session=0x100..<TAB>user=127.0.0.1,alice<TAB>ip=127.0.0.1<TAB>operation=create<TAB>znode=/a<TAB>znode_type=persistent<TAB>result=success
//! ```
//!
//! Fields are tab-separated `key=value`, in that order, absent ones left out; failures
//! are logged at ERROR. Audited, as ZooKeeper's `AuditHelper` does: create (all kinds),
//! delete, setData, setAcl (with the new ACL), multi (each create, delete and setData of
//! a committed multi; one `multiOperation` failure for a failed one), reconfig,
//! ephemeral nodes deleted when their session closes or expires, and server start and
//! stop. Reads are not audited.
//!
//! When the key is off nothing here is created and the shards test one `Option`.
//! Lines are written by the shard that answers the request, under a mutex, and flushed
//! at once (as a synchronous log appender would).

use crate::proto::{perms, Acl, Id};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// An event's outcome (`AuditEvent.Result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Invoked,
}

/// One audit event; `None` fields are left out of the line.
#[derive(Debug, Default, Clone)]
pub struct Event<'a> {
    pub session: Option<i64>,
    pub user: Option<String>,
    pub ip: Option<IpAddr>,
    pub operation: &'a str,
    pub znode: Option<&'a str>,
    pub znode_type: Option<&'static str>,
    pub acl: Option<String>,
}

/// The event as ZooKeeper's `AuditEvent.toString` writes it.
pub fn format_event(e: &Event<'_>, outcome: Outcome) -> String {
    let mut fields: Vec<String> = Vec::with_capacity(8);
    if let Some(s) = e.session {
        fields.push(format!("session=0x{:x}", s as u64));
    }
    if let Some(u) = &e.user {
        fields.push(format!("user={u}"));
    }
    if let Some(ip) = e.ip {
        fields.push(format!("ip={ip}"));
    }
    fields.push(format!("operation={}", e.operation));
    if let Some(z) = e.znode {
        fields.push(format!("znode={z}"));
    }
    if let Some(t) = e.znode_type {
        fields.push(format!("znode_type={t}"));
    }
    if let Some(a) = &e.acl {
        fields.push(format!("acl={a}"));
    }
    fields.push(format!(
        "result={}",
        match outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Invoked => "invoked",
        }
    ));
    fields.join("\t")
}

/// `AuthUtil.getUsers`: the user names of a session's ids, comma-separated (the ip
/// provider's name is the address, digest's the user; ids of schemes without a
/// provider, such as super, give none); `None` if there are none.
pub fn users(ids: &[Id]) -> Option<String> {
    let names: Vec<&str> = ids
        .iter()
        .filter_map(|id| match id.scheme.as_str() {
            "ip" => Some(id.id.as_str()),
            "digest" => id.id.split(':').next(),
            "sasl" if crate::acl::sasl_provider() => Some(id.id.as_str()),
            _ => None,
        })
        .filter(|n| !n.trim().is_empty())
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// `ZKUtil.aclToString`: `scheme:id:perms` per entry, with no separator between
/// entries (as ZooKeeper writes it), perms as `cdrwa` letters.
pub fn acl_string(acl: &[Acl]) -> String {
    let mut s = String::new();
    for a in acl {
        s.push_str(&a.id.scheme);
        s.push(':');
        s.push_str(&a.id.id);
        s.push(':');
        for (bit, c) in [
            (perms::CREATE, 'c'),
            (perms::DELETE, 'd'),
            (perms::READ, 'r'),
            (perms::WRITE, 'w'),
            (perms::ADMIN, 'a'),
        ] {
            if a.perms & bit != 0 {
                s.push(c);
            }
        }
    }
    s
}

/// `CreateMode.fromFlag(flags).toString().toLowerCase()`; `None` for an invalid flag.
pub fn create_mode(flags: i32) -> Option<&'static str> {
    Some(match flags {
        0 => "persistent",
        1 => "ephemeral",
        2 => "persistent_sequential",
        3 => "ephemeral_sequential",
        4 => "container",
        5 => "persistent_with_ttl",
        6 => "persistent_sequential_with_ttl",
        _ => return None,
    })
}

/// `yyyy-MM-dd HH:mm:ss,SSS` in UTC.
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::datadir::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02},{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The open audit log file.
pub struct AuditLog {
    out: Mutex<BufWriter<File>>,
    /// The operating-system user the server runs as (serverStart/serverStop and
    /// ephemeral deletions are logged as this user, as ZooKeeper does).
    pub server_user: String,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

impl AuditLog {
    /// Opens (appends to) `path`.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog {
            out: Mutex::new(BufWriter::new(f)),
            server_user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        })
    }

    /// Writes one event line.
    pub fn log(&self, e: &Event<'_>, outcome: Outcome) {
        let level = if outcome == Outcome::Failure {
            "ERROR"
        } else {
            "INFO"
        };
        let line = format!(
            "{} {level} audit.Slf4jAuditLogger: {}\n",
            timestamp(SystemTime::now()),
            format_event(e, outcome)
        );
        let mut out = self.out.lock().expect("audit log poisoned");
        if let Err(err) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            eprintln!("ringkeeper: cannot write the audit log: {err}");
        }
    }

    /// serverStart / serverStop lines (user, operation, result only).
    pub fn server_event(&self, operation: &str, outcome: Outcome) {
        self.log(
            &Event {
                user: Some(self.server_user.clone()),
                operation,
                ..Default::default()
            },
            outcome,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str, i: &str) -> Id {
        Id {
            scheme: s.into(),
            id: i.into(),
        }
    }

    #[test]
    fn lines_are_zookeepers() {
        let e = Event {
            session: Some(0x1000_0a2b_0000_0001),
            user: users(&[id("ip", "127.0.0.1"), id("digest", "alice:abc=")]),
            ip: Some("127.0.0.1".parse().unwrap()),
            operation: "create",
            znode: Some("/a"),
            znode_type: create_mode(0),
            acl: None,
        };
        assert_eq!(
            format_event(&e, Outcome::Success),
            "session=0x10000a2b00000001\tuser=127.0.0.1,alice\tip=127.0.0.1\toperation=create\tznode=/a\tznode_type=persistent\tresult=success"
        );
        let start = Event {
            user: Some("zk".into()),
            operation: "serverStart",
            ..Default::default()
        };
        assert_eq!(
            format_event(&start, Outcome::Success),
            "user=zk\toperation=serverStart\tresult=success"
        );
    }

    #[test]
    fn acls_users_modes_and_time() {
        let acl = vec![
            Acl {
                perms: perms::ALL,
                id: id("world", "anyone"),
            },
            Acl {
                perms: perms::READ | perms::ADMIN,
                id: id("digest", "bob:x="),
            },
        ];
        assert_eq!(acl_string(&acl), "world:anyone:cdrwadigest:bob:x=:ra");
        assert_eq!(users(&[id("super", "")]), None);
        assert_eq!(create_mode(6), Some("persistent_sequential_with_ttl"));
        assert_eq!(create_mode(7), None);
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_709_251_200_123);
        assert_eq!(timestamp(t), "2024-03-01 00:00:00,123");
    }
}
