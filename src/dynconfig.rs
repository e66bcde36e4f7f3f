//! The ensemble's membership as data, in ZooKeeper's formats (dynamic reconfiguration,
//! ZooKeeper 3.5+).
//!
//! Three texts describe the same server list:
//!
//! - the data of `/zookeeper/config`: `QuorumMaj.toString`, one `server.N=...` line per
//!   member in id order and a last line `version=<hex>` (no newline after it);
//! - a dynamic file `zoo.cfg.dynamic.<hex version>`: what `writeDynamicConfig` writes,
//!   the `server.N=...` lines sorted as strings, no version (it is in the name);
//! - zoo.cfg itself, which ZooKeeper rewrites (`editStaticConfig`) without its
//!   `server.N` lines and with `dynamicConfigFile=<absolute path>` at the end once a
//!   config with a version is in force.
//!
//! Each line is `QuorumServer.toString`: `host:quorumPort:electionPort:participant` (or
//! `:observer`), then `;clientHost:clientPort` when the line gave a client address. A
//! server whose client address comes from `clientPort` (not from its line) shows none,
//! as ZooKeeper's `isClientAddrFromStatic` does.
//!
//! When it writes: with `reconfigEnabled=true`, the first time an ensemble establishes a
//! leader over a config of version 0 (server lines in zoo.cfg), every member takes the
//! new epoch's first zxid as the version, writes the dynamic file and edits zoo.cfg
//! (ZooKeeper's `Leader.lead` bumps the version to the NEWLEADER zxid so that an
//! established config outranks a joining server's partial view; learners take it at
//! UPTODATE). With `reconfigEnabled=false` nothing is written and the version stays 0.
//! Files are replaced atomically (write a temporary, fsync, rename, fsync the
//! directory), as ZooKeeper's `AtomicFileWritingIdiom` does.
//!
//! This module formats and writes files; it starts nothing.

use crate::config::{parse_properties, PeerType, ServerSpec};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A host as `QuorumServer.delimitedHostString` writes it: IPv6 literals in brackets.
fn host(h: &str) -> String {
    if h.contains(':') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

/// One server's value (`QuorumServer.toString`).
pub fn server_value(s: &ServerSpec) -> String {
    let role = match s.peer_type {
        PeerType::Participant => "participant",
        PeerType::Observer => "observer",
    };
    let mut v = format!(
        "{}:{}:{}:{role}",
        host(&s.host),
        s.quorum_port,
        s.election_port
    );
    if let Some(c) = &s.client {
        v.push_str(&format!(";{}:{}", host(&c.host), c.port));
    }
    v
}

/// The data of `/zookeeper/config` (`QuorumMaj.toString`).
pub fn config_text(servers: &BTreeMap<u64, ServerSpec>, version: u64) -> String {
    let mut s = String::new();
    for (id, spec) in servers {
        s.push_str(&format!("server.{id}={}\n", server_value(spec)));
    }
    s.push_str(&format!("version={version:x}"));
    s
}

/// Reads `/zookeeper/config` data back: its `server.N` lines and `version=<hex>`.
///
/// # Errors
/// A line that is not `server.N=...` or `version=...`, or a bad server line.
pub fn parse_config_text(text: &str) -> Result<(BTreeMap<u64, ServerSpec>, u64), String> {
    let mut servers = BTreeMap::new();
    let mut version = 0;
    for p in parse_properties(text) {
        if p.key == "version" {
            version = u64::from_str_radix(&p.value, 16)
                .map_err(|_| format!("version {:?} is not hex", p.value))?;
        } else if let Some(id) = p.key.strip_prefix("server.") {
            let id: u64 = id
                .parse()
                .map_err(|_| format!("{} is not server.<id>", p.key))?;
            servers.insert(id, crate::config::parse_server(id, &p.value)?);
        } else {
            return Err(format!("Unrecognised parameter: {}", p.key));
        }
    }
    Ok((servers, version))
}

/// The replication core's view of a server list: ids of voters and observers.
///
/// # Errors
/// No voter.
pub fn ensemble_of(servers: &BTreeMap<u64, ServerSpec>) -> Result<crate::zab::Ensemble, String> {
    let voters: Vec<u64> = servers
        .values()
        .filter(|s| s.peer_type == PeerType::Participant)
        .map(|s| s.id)
        .collect();
    let observers: Vec<u64> = servers
        .values()
        .filter(|s| s.peer_type == PeerType::Observer)
        .map(|s| s.id)
        .collect();
    if voters.is_empty() {
        return Err("a configuration needs at least one participant".into());
    }
    Ok(crate::zab::Ensemble::new(voters, observers))
}

/// The body of a dynamic file (`writeDynamicConfig` without the version): the lines
/// sorted as strings (so `server.10` comes before `server.2`, as in ZooKeeper).
pub fn dynamic_file_text(servers: &BTreeMap<u64, ServerSpec>) -> String {
    let mut lines: Vec<String> = servers
        .iter()
        .map(|(id, s)| format!("server.{id}={}", server_value(s)))
        .collect();
    lines.sort();
    lines.join("\n")
}

/// `zoo.cfg.dynamic.<hex version>` next to `config_path` (`makeDynamicConfigFilename`).
pub fn dynamic_file_name(config_path: &Path, version: u64) -> PathBuf {
    let mut name = config_path.as_os_str().to_owned();
    name.push(format!(".dynamic.{version:x}"));
    PathBuf::from(name)
}

/// zoo.cfg as `editStaticConfig` rewrites it: every `key=value` (trimmed, comments
/// dropped, the last of duplicate keys) except the quorum keys and the old pointer, and
/// the client port keys too when `erase_client` (this server's line now carries its
/// client address); then `dynamicConfigFile=<dynamic>`.
pub fn edited_static_text(static_text: &str, dynamic: &Path, erase_client: bool) -> String {
    let mut keys: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for p in parse_properties(static_text) {
        if !values.contains_key(&p.key) {
            keys.push(p.key.clone());
        }
        values.insert(p.key, p.value);
    }
    let mut out = String::new();
    for k in keys {
        let dropped = k.starts_with("server.")
            || k.starts_with("group")
            || k.starts_with("weight")
            || k.starts_with("dynamicConfigFile")
            || k.starts_with("peerType")
            || (erase_client && k.starts_with("clientPort"));
        if !dropped {
            out.push_str(&format!("{k}={}\n", values[&k].trim()));
        }
    }
    out.push_str(&format!("dynamicConfigFile={}\n", dynamic.display()));
    out
}

/// Replaces `path` with `data` atomically: a temporary beside it, fsync, rename, fsync
/// of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

/// What a server needs to write its config files: zoo.cfg's path and whether this
/// server's own line carries its client address (then zoo.cfg loses `clientPort`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    pub config_path: PathBuf,
    pub my_id: u64,
}

impl Files {
    /// Writes `zoo.cfg.dynamic.<version>` and points zoo.cfg at it
    /// (`QuorumPeer.setQuorumVerifier(qv, true)`). Returns the dynamic file's path.
    ///
    /// # Errors
    /// A file that cannot be read or written.
    pub fn activate(
        &self,
        servers: &BTreeMap<u64, ServerSpec>,
        version: u64,
    ) -> std::io::Result<PathBuf> {
        let dynamic = dynamic_file_name(&self.config_path, version);
        write_atomic(&dynamic, dynamic_file_text(servers).as_bytes())?;
        let dynamic = std::fs::canonicalize(&dynamic)?;
        let erase_client = servers.get(&self.my_id).is_some_and(|s| s.client.is_some());
        let text = std::fs::read_to_string(&self.config_path)?;
        write_atomic(
            &self.config_path,
            edited_static_text(&text, &dynamic, erase_client).as_bytes(),
        )?;
        Ok(dynamic)
    }

    /// Copies zoo.cfg to `zoo.cfg.bak` (`QuorumPeerConfig.backupOldConfig`, done at
    /// start when reconfig is enabled and zoo.cfg still holds the server lines).
    ///
    /// # Errors
    /// zoo.cfg cannot be read or the copy written.
    pub fn backup(&self) -> std::io::Result<()> {
        let mut bak = self.config_path.as_os_str().to_owned();
        bak.push(".bak");
        let text = std::fs::read(&self.config_path)?;
        write_atomic(Path::new(&bak), &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_server;

    fn servers(lines: &[(u64, &str)]) -> BTreeMap<u64, ServerSpec> {
        lines
            .iter()
            .map(|(id, v)| (*id, parse_server(*id, v).expect("valid line")))
            .collect()
    }

    #[test]
    fn config_text_is_quorum_maj_to_string() {
        let s = servers(&[
            (1, "127.0.0.1:2888:3888;2181"),
            (2, "127.0.0.1:2889:3889:participant;127.0.0.1:2182"),
            (3, "localhost:2890:3890:observer"),
            (4, "[::1]:2891:3891"),
        ]);
        assert_eq!(
            config_text(&s, 0x100000000),
            "server.1=127.0.0.1:2888:3888:participant;0.0.0.0:2181\n\
             server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n\
             server.3=localhost:2890:3890:observer\n\
             server.4=[::1]:2891:3891:participant\n\
             version=100000000"
        );
        assert!(config_text(&s, 0).ends_with("\nversion=0"));
    }

    #[test]
    fn dynamic_file_sorts_lines_as_strings_without_version() {
        let s = servers(&[(2, "h:1:2"), (10, "h:3:4")]);
        assert_eq!(
            dynamic_file_text(&s),
            "server.10=h:3:4:participant\nserver.2=h:1:2:participant"
        );
        assert_eq!(
            dynamic_file_name(Path::new("conf/zoo.cfg"), 0x200000003),
            PathBuf::from("conf/zoo.cfg.dynamic.200000003")
        );
    }

    #[test]
    fn static_file_loses_quorum_keys_and_points_at_the_dynamic_file() {
        let text = "# c\ntickTime=2000\nserver.1=a:1:2\nclientPort=2181\n\
                    clientPortAddress=127.0.0.1\npeerType=participant\ndataDir=/d\n";
        let kept = edited_static_text(text, Path::new("/x/zoo.cfg.dynamic.1"), false);
        assert_eq!(
            kept,
            "tickTime=2000\nclientPort=2181\nclientPortAddress=127.0.0.1\ndataDir=/d\n\
             dynamicConfigFile=/x/zoo.cfg.dynamic.1\n"
        );
        let erased = edited_static_text(text, Path::new("/x/d"), true);
        assert_eq!(
            erased,
            "tickTime=2000\ndataDir=/d\ndynamicConfigFile=/x/d\n"
        );
    }

    #[test]
    fn activate_writes_both_files_and_backup_copies() {
        let dir = std::env::temp_dir().join(format!("rk-dynconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let cfg = dir.join("zoo.cfg");
        std::fs::write(&cfg, "dataDir=d\nclientPort=2181\nserver.1=h:1:2;2181\n").expect("w");
        let f = Files {
            config_path: cfg.clone(),
            my_id: 1,
        };
        f.backup().expect("backup");
        let s = servers(&[(1, "h:1:2;2181")]);
        let dynamic = f.activate(&s, 0x100000000).expect("activate");
        assert!(dynamic.ends_with("zoo.cfg.dynamic.100000000"));
        assert_eq!(
            std::fs::read_to_string(&dynamic).expect("read"),
            "server.1=h:1:2:participant;0.0.0.0:2181"
        );
        assert_eq!(
            std::fs::read_to_string(&cfg).expect("read"),
            format!("dataDir=d\ndynamicConfigFile={}\n", dynamic.display())
        );
        let bak = dir.join("zoo.cfg.bak");
        assert!(std::fs::read_to_string(bak)
            .expect("bak")
            .contains("server.1="));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
