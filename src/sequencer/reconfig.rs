//! Dynamic reconfiguration in the sequencer: the `reconfig` request (ZooKeeper's
//! `PrepRequestProcessor` for `OpCode.reconfig`) and putting a committed config in force.
//!
//! A reconfig is a setData of `/zookeeper/config` (ZooKeeper's own txn for it is a
//! `SetDataTxn` of that node, version -1) whose data is the new config with its version,
//! the txn's own zxid. It is ordered, logged and committed like any txn, so every
//! server sees it at the same point of the history:
//!
//! - the leader checks it (below), proposes it and registers it with its peer as
//!   pending (`peer::Event::Reconfig`); a learner registers it when the txn arrives
//!   from its leader (`logged_txns`), a restarted server when its recovered tree holds a
//!   config newer than its dynamic file. While pending, commits and a new leader's
//!   NEWLEADER need a quorum of both configs, so the two overlap;
//! - when the server's commit point passes it, the peer puts it in force
//!   (`Action::Activated`); the sequencer also steps `Activate` when it applies the
//!   committed txn, and takes the config of an installed SNAP when it is newer (the
//!   peer ignores a config older than the one in force);
//! - then (`activated`) the sequencer holds the new [`Membership`] and tells the driver
//!   (`Output::Membership`): it writes `zoo.cfg.dynamic.<version>` and repoints zoo.cfg,
//!   and updates the election's and the quorum links' member tables.
//!
//! A server removed from the config leaves its role and stays out: it starts no
//! election (its old peers no longer talk to it) and serves no client. A leader
//! removed from the config first hands leadership to a synced voter of the new config
//! (the peer's transfer; ZooKeeper's designated leader), so the others need no
//! election.
//!
//! The checks, in ZooKeeper's order: reconfigEnabled (RECONFIGDISABLED), the session
//! (SESSIONEXPIRED), an ensemble (standalone: UNIMPLEMENTED), no reconfig in flight
//! (RECONFIGINPROGRESS), `curConfigId` -1 or the current version (BADVERSION), the new
//! config parses (BADARGUMENTS), it keeps at least two participants (one with
//! standaloneEnabled=false; BADARGUMENTS), a quorum of its participants is synced with
//! this leader (NEWCONFIG_NO_QUORUM), WRITE on `/zookeeper/config` unless skipACL
//! (NOAUTH: its ACL is world:anyone READ, so only the super user passes).

use super::{Membership, Role, Sequencer};
use crate::config::{parse_properties, parse_server, ServerSpec};
use crate::prep::{Caller, PrepError};
use crate::proto::{perms, Code, ReconfigRequest};
use crate::txn::{Txn, TxnOp};
use crate::zab::{peer, quorum, Ensemble};
use std::collections::BTreeMap;

const CONFIG_NODE: &str = "/zookeeper/config";

impl Sequencer {
    /// Validates a reconfig on the leader and returns its txn (see the module header).
    pub(super) fn prep_reconfig(
        &mut self,
        caller: &Caller<'_>,
        r: &ReconfigRequest,
    ) -> Result<TxnOp, PrepError> {
        if !self.cfg.prep.reconfig_enabled {
            return Err(Code::ReconfigDisabled.into());
        }
        if self.tree.session_timeout(caller.session_id).is_none() {
            return Err(Code::SessionExpired.into());
        }
        let Some(current) = self.membership.as_ref() else {
            // Standalone: ZooKeeper's ZooKeeperServer is no LeaderZooKeeperServer.
            return Err(Code::Unimplemented.into());
        };
        if self.role != Role::Leader {
            return Err(Code::Unimplemented.into());
        }
        if self.ens.as_ref().is_some_and(|e| e.peer.reconfig_pending()) {
            return Err(Code::ReconfigInProgress.into());
        }
        if r.cur_config_id != -1 && r.cur_config_id as u64 != current.version {
            return Err(Code::BadVersion.into());
        }
        let servers = if r.new_members.is_empty() {
            incremental(&current.servers, &r.joining_servers, &r.leaving_servers)?
        } else {
            non_incremental(&r.new_members).map_err(|_| PrepError::from(Code::BadArguments))?
        };
        let ensemble = crate::dynconfig::ensemble_of(&servers)
            .map_err(|_| PrepError::from(Code::BadArguments))?;
        let least = if current.standalone_enabled { 2 } else { 1 };
        if ensemble.voters.len() < least {
            return Err(Code::BadArguments.into());
        }
        let synced = self
            .ens
            .as_ref()
            .map(|e| e.peer.synced_followers())
            .unwrap_or_default();
        if !quorum::is_quorum(&ensemble, synced) {
            return Err(Code::NewConfigNoQuorum.into());
        }
        let (acl, _) = self
            .tree
            .acl(CONFIG_NODE)
            .ok_or(PrepError::from(Code::NoNode))?;
        crate::prep::check_perm(&self.cfg.prep, &acl, perms::WRITE, caller.ids)?;
        let next = Membership {
            servers,
            version: self.next_zxid() as u64,
            ..current.clone()
        };
        let data = bytes::Bytes::from(next.text().into_bytes());
        self.out.push(super::Output::Log(format!(
            "reconfig proposed at {:#x}: {} participants, {} observers",
            next.version,
            ensemble.voters.len(),
            ensemble.observers.len()
        )));
        let zxid = next.version;
        self.reconfig_next = Some(next);
        self.peer_step(peer::Event::Reconfig { zxid, ensemble });
        Ok(TxnOp::SetData {
            path: CONFIG_NODE.to_string(),
            data: Some(data),
            version: -1,
        })
    }

    /// A learner applied `txn`: a setData of `/zookeeper/config` is a committed
    /// reconfig, put in force here.
    pub(super) fn applied_config_txn(&mut self, txn: &Txn) {
        if let TxnOp::SetData {
            path,
            data: Some(d),
            ..
        } = &txn.op
        {
            if path == CONFIG_NODE {
                let text = String::from_utf8_lossy(d).into_owned();
                self.take_config(&text, "a committed reconfig");
            }
        }
    }

    /// A learner received txns from its leader: a reconfig among them is pending here
    /// until it commits (`peer::Event::Reconfig`), so that, should this server lead, its
    /// NEWLEADER needs a quorum of both configs.
    pub(super) fn logged_txns(&mut self, txns: &[Txn]) {
        for t in txns {
            let TxnOp::SetData {
                path,
                data: Some(d),
                ..
            } = &t.op
            else {
                continue;
            };
            if path != CONFIG_NODE {
                continue;
            }
            let text = String::from_utf8_lossy(d).into_owned();
            self.seen_config(&text);
        }
    }

    /// Registers the config `text` as pending when it is newer than the one in force.
    pub(super) fn seen_config(&mut self, text: &str) {
        let Some(current) = self.membership.as_ref() else {
            return;
        };
        let Ok((servers, version)) = crate::dynconfig::parse_config_text(text) else {
            return;
        };
        let Ok(ensemble) = crate::dynconfig::ensemble_of(&servers) else {
            return;
        };
        if version <= current.version {
            return;
        }
        self.reconfig_next = Some(Membership {
            servers,
            version,
            ..current.clone()
        });
        self.peer_step(peer::Event::Reconfig {
            zxid: version,
            ensemble: ensemble.clone(),
        });
        // At or below the commit point (a recovered snapshot holds it): committed.
        if self
            .ens
            .as_ref()
            .is_some_and(|e| !e.peer.reconfig_pending())
        {
            self.peer_step(peer::Event::Activate {
                zxid: version,
                ensemble,
            });
        }
    }

    /// A SNAP installed a tree: its `/zookeeper/config` may be newer than ours.
    pub(super) fn installed_tree_config(&mut self) {
        let data = self.tree.data(CONFIG_NODE).and_then(|(d, _)| d);
        if let Some(d) = data {
            let text = String::from_utf8_lossy(&d).into_owned();
            self.take_config(&text, "the leader's snapshot");
        }
    }

    /// Puts the config `text` in force if it is newer than the one in force.
    fn take_config(&mut self, text: &str, from: &str) {
        let Some(current) = self.membership.as_ref() else {
            return;
        };
        let (servers, version) = match crate::dynconfig::parse_config_text(text) {
            Ok(x) => x,
            Err(e) => {
                self.out.push(super::Output::Log(format!(
                    "ignoring the configuration in {from}: {e}"
                )));
                return;
            }
        };
        if version <= current.version || servers.is_empty() {
            return;
        }
        let ensemble = match crate::dynconfig::ensemble_of(&servers) {
            Ok(e) => e,
            Err(e) => {
                self.out.push(super::Output::Log(format!(
                    "ignoring the configuration in {from}: {e}"
                )));
                return;
            }
        };
        self.reconfig_next = Some(Membership {
            servers,
            version,
            ..current.clone()
        });
        self.peer_step(peer::Event::Activate {
            zxid: version,
            ensemble,
        });
        // The peer's ensemble was this one already (a config that changed only
        // addresses): it reported nothing, the membership still moves on.
        if self.reconfig_next.is_some() {
            self.finish_activation();
        }
    }

    /// The peer put `ensemble` in force.
    pub(super) fn activated(&mut self, zxid: u64, ensemble: Ensemble) {
        match &self.reconfig_next {
            Some(m)
                if m.version == zxid
                    && crate::dynconfig::ensemble_of(&m.servers).ok() == Some(ensemble) =>
            {
                self.finish_activation()
            }
            // Put in force already (the peer reports a reconfig both when its commit
            // point passes it and when the sequencer applies it).
            _ => {}
        }
    }

    fn finish_activation(&mut self) {
        let Some(m) = self.reconfig_next.take() else {
            return;
        };
        let me = self.ens.as_ref().map(|e| e.peer.my_id());
        let member = me.is_some_and(|id| m.servers.contains_key(&id));
        self.out.push(super::Output::Log(format!(
            "configuration version {:x} in force: {} servers{}",
            m.version,
            m.servers.len(),
            if member {
                ""
            } else {
                "; this server is no longer a member and stops serving"
            }
        )));
        self.membership = Some(m.clone());
        self.out.push(super::Output::Membership(m));
    }

    /// True when a config in force no longer lists this server.
    pub(super) fn removed(&self) -> bool {
        match (&self.membership, &self.ens) {
            // An empty list is no config (tests that build a core without one).
            (Some(m), Some(e)) => !m.servers.is_empty() && !m.servers.contains_key(&e.peer.my_id()),
            _ => false,
        }
    }
}

/// `members` of a non-incremental reconfig: `server.N=...` entries separated by commas
/// or newlines (ZooKeeper turns the commas into newlines and reads properties).
fn non_incremental(members: &str) -> Result<BTreeMap<u64, ServerSpec>, String> {
    let text = members.replace(',', "\n");
    let mut servers = BTreeMap::new();
    for p in parse_properties(&text) {
        let id: u64 = p
            .key
            .strip_prefix("server.")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("Unrecognised parameter: {}", p.key))?;
        servers.insert(id, parse_server(id, &p.value)?);
    }
    Ok(servers)
}

/// An incremental reconfig: the current servers minus `leaving` (comma-separated ids)
/// plus `joining` (comma-separated `server.N=host:q:e[:role];client` entries, each with
/// its client address, as ZooKeeper requires; one that names a current server replaces
/// it). A joining server may not reuse another server's quorum or election address.
/// An id that is not a number is MARSHALLINGERROR (ZooKeeper's `Long.parseLong` throws
/// past its checks; checked on ZooKeeper 3.8), any other fault BADARGUMENTS.
fn incremental(
    current: &BTreeMap<u64, ServerSpec>,
    joining: &str,
    leaving: &str,
) -> Result<BTreeMap<u64, ServerSpec>, Code> {
    let mut next = current.clone();
    for id in leaving.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let id: u64 = id.parse().map_err(|_| Code::MarshallingError)?;
        next.remove(&id);
    }
    for j in joining.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // "Wrong format of server string"
        let (key, value) = j.split_once('=').ok_or(Code::BadArguments)?;
        let id: u64 = key
            .trim()
            .rsplit('.')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or(Code::MarshallingError)?;
        let spec = parse_server(id, value.trim()).map_err(|_| Code::BadArguments)?;
        if spec.client.is_none() {
            // "each server should have 3 ports specified"
            return Err(Code::BadArguments);
        }
        let clash = next.values().any(|o| {
            o.id != id
                && o.host == spec.host
                && [o.quorum_port, o.election_port]
                    .iter()
                    .any(|p| *p == spec.quorum_port || *p == spec.election_port)
        });
        if clash {
            return Err(Code::BadArguments);
        }
        next.insert(id, spec);
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> BTreeMap<u64, ServerSpec> {
        (1..=3)
            .map(|i| {
                let v = format!("127.0.0.1:{}:{};{}", 2000 + i, 3000 + i, 4000 + i);
                (i, parse_server(i, &v).expect("valid"))
            })
            .collect()
    }

    #[test]
    fn incremental_adds_replaces_and_removes() {
        let next = incremental(
            &current(),
            "server.4=127.0.0.1:2004:3004:observer;4004,server.2=127.0.0.1:2002:3002:observer;4002",
            "3",
        )
        .expect("valid");
        assert_eq!(next.keys().copied().collect::<Vec<_>>(), vec![1, 2, 4]);
        let e = crate::dynconfig::ensemble_of(&next).expect("voters");
        assert_eq!((e.voters, e.observers), (vec![1], vec![2, 4]));
    }

    #[test]
    fn incremental_refuses_what_zookeeper_refuses() {
        let bad = |j: &str, l: &str| incremental(&current(), j, l).err();
        // No client port; not server.N=...; another server's quorum port.
        assert_eq!(
            bad("server.4=127.0.0.1:2004:3004", ""),
            Some(Code::BadArguments)
        );
        assert_eq!(
            bad("127.0.0.1:2004:3004;4004", ""),
            Some(Code::BadArguments)
        );
        assert_eq!(
            bad("server.4=127.0.0.1:2001:3004;4004", ""),
            Some(Code::BadArguments)
        );
        // Ids that are no numbers: Long.parseLong throws (checked on ZooKeeper 3.8).
        assert_eq!(bad("", "x"), Some(Code::MarshallingError));
        assert_eq!(
            bad("server.x=127.0.0.1:2004:3004;4004", ""),
            Some(Code::MarshallingError)
        );
    }

    #[test]
    fn non_incremental_takes_commas_or_newlines() {
        let m = non_incremental(
            "server.1=127.0.0.1:2001:3001;4001,server.5=127.0.0.1:2005:3005:participant;4005",
        )
        .expect("valid");
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![1, 5]);
        assert!(non_incremental("server.1=127.0.0.1:2001:3001;4001\nversion=5").is_err());
        assert!(non_incremental("server.1=nonsense").is_err());
    }
}
