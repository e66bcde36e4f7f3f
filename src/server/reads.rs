//! Reads answered by a shard from its view, exactly as ZooKeeper's FinalRequestProcessor
//! answers them: NONODE first, then the ACL check, then the watch (a read that fails sets
//! no watch, except exists, which watches an absent node for its creation). exists needs
//! READ on a node that exists (ZooKeeper >= 3.8.4 / 3.9.2).

use crate::acl;
use crate::proto::request::MultiResult;
use crate::proto::*;
use crate::tree::DataTree;
use crate::watch::{Kind, Watches};

/// Who is reading: the connection's watch handle and identities.
pub struct Reader<'a> {
    pub slot: usize,
    pub session_id: i64,
    pub ids: &'a [Id],
    /// `skipACL=yes`: every permission check passes.
    pub skip_acl: bool,
}

/// A read's answer: an error code, or the encoded body.
pub type ReadResult = Result<Vec<u8>, Code>;

fn check(view: &DataTree, path: &str, perm: i32, who: &Reader) -> Result<(), Code> {
    let (acl, _) = view.acl(path).ok_or(Code::NoNode)?;
    if who.skip_acl || acl::check(&acl, perm, who.ids) {
        Ok(())
    } else {
        Err(Code::NoAuth)
    }
}

fn get_data(
    view: &DataTree,
    watches: &mut Watches<usize>,
    who: &Reader,
    path: &str,
    watch: bool,
) -> Result<GetDataResponse, Code> {
    let (data, stat) = view.data(path).ok_or(Code::NoNode)?;
    check(view, path, perms::READ, who)?;
    if watch {
        watches.add(path, who.slot, Kind::Data);
    }
    Ok(GetDataResponse { data, stat })
}

/// What a getChildren does before it lists: NONODE, the READ check, the child watch.
/// The node's Stat on success.
pub fn children_prelude(
    view: &DataTree,
    watches: &mut Watches<usize>,
    who: &Reader,
    path: &str,
    watch: bool,
) -> Result<Stat, Code> {
    let stat = view.stat(path).ok_or(Code::NoNode)?;
    check(view, path, perms::READ, who)?;
    if watch {
        watches.add(path, who.slot, Kind::Child);
    }
    Ok(stat)
}

/// The body of a getChildren answer (`stat` given: of a getChildren2), after
/// [`children_prelude`] passed.
pub fn children_body(view: &DataTree, path: &str, stat: Option<Stat>) -> Vec<u8> {
    let children = view.children(path).unwrap_or_default();
    match stat {
        Some(stat) => GetChildren2Response { children, stat }.to_bytes(),
        None => GetChildrenResponse { children }.to_bytes(),
    }
}

/// One op of a multiRead once checked: its result, or the children list of a node that
/// passed its checks, still to be built.
#[derive(Debug)]
pub enum MultiPart {
    Ready(MultiResult),
    Children(String),
}

/// What a multiRead does before it lists, op by op in order, as ZooKeeper runs them:
/// NONODE, the READ check and the watch of each. The parts, and how many names their
/// lists will hold (so a big one can be built off the shard's thread, as a getChildren).
pub fn multi_read_prelude(
    view: &DataTree,
    watches: &mut Watches<usize>,
    who: &Reader,
    ops: &[request::MultiOp],
) -> Result<(Vec<MultiPart>, usize), Code> {
    let mut parts = Vec::with_capacity(ops.len());
    let mut names = 0usize;
    for op in ops {
        let part = match op {
            request::MultiOp::GetData(g) => match get_data(view, watches, who, &g.path, g.watch) {
                Ok(d) => MultiPart::Ready(MultiResult::GetData {
                    data: d.data,
                    stat: d.stat,
                }),
                Err(c) => MultiPart::Ready(MultiResult::Error(c)),
            },
            request::MultiOp::GetChildren(g) => {
                match children_prelude(view, watches, who, &g.path, g.watch) {
                    Ok(stat) => {
                        names = names.saturating_add(stat.num_children.max(0) as usize);
                        MultiPart::Children(g.path.clone())
                    }
                    Err(c) => MultiPart::Ready(MultiResult::Error(c)),
                }
            }
            // The decoder admits only reads into a multiRead.
            _ => return Err(Code::BadArguments),
        };
        parts.push(part);
    }
    Ok((parts, names))
}

/// The body of a multiRead answer after [`multi_read_prelude`]: the lists built from
/// the same view.
pub fn multi_read_body(view: &DataTree, parts: Vec<MultiPart>) -> Vec<u8> {
    let results: Vec<MultiResult> = parts
        .into_iter()
        .map(|p| match p {
            MultiPart::Ready(r) => r,
            MultiPart::Children(path) => MultiResult::GetChildren {
                children: view.children(&path).unwrap_or_default(),
            },
        })
        .collect();
    let mut out = Vec::new();
    request::encode_multi_response(&results, &mut out);
    out
}

fn body<T: Jute>(rec: &T) -> ReadResult {
    Ok(rec.to_bytes())
}

/// Executes one read (everything `Request::is_write` says is not a write, except ping,
/// auth and setWatches, which the shard handles).
pub fn execute(
    view: &DataTree,
    watches: &mut Watches<usize>,
    who: &Reader,
    req: &Request,
) -> ReadResult {
    match req {
        Request::Exists(r) => {
            if r.path.contains('\0') {
                return Err(Code::BadArguments);
            }
            // ZooKeeper >= 3.8.4 / 3.9.2 (ZOOKEEPER-2590): READ on an existing node,
            // checked before the watch is set, so a refused exists sets no watch; an
            // absent node needs no permission and is watched for its creation.
            let stat = view.stat(&r.path);
            if stat.is_some() {
                check(view, &r.path, perms::READ, who)?;
            }
            if r.watch {
                watches.add(&r.path, who.slot, Kind::Data);
            }
            body(&ExistsResponse {
                stat: stat.ok_or(Code::NoNode)?,
            })
        }
        Request::GetData(r) => body(&get_data(view, watches, who, &r.path, r.watch)?),
        Request::GetChildren(r) => {
            children_prelude(view, watches, who, &r.path, r.watch)?;
            Ok(children_body(view, &r.path, None))
        }
        Request::GetChildren2(r) => {
            let stat = children_prelude(view, watches, who, &r.path, r.watch)?;
            Ok(children_body(view, &r.path, Some(stat)))
        }
        Request::GetAcl(r) => {
            let stat = view.stat(&r.path).ok_or(Code::NoNode)?;
            check(view, &r.path, perms::READ | perms::ADMIN, who)?;
            let (acl_list, _) = view.acl(&r.path).ok_or(Code::NoNode)?;
            // Without ADMIN, digest hashes are masked (ZooKeeper 3.9 does the same).
            let acl_list = if check(view, &r.path, perms::ADMIN, who).is_ok() {
                acl_list.to_vec()
            } else {
                acl::redact_for_get_acl(&acl_list)
            };
            body(&GetAclResponse {
                acl: acl_list,
                stat,
            })
        }
        Request::GetAllChildrenNumber(r) => {
            view.stat(&r.path).ok_or(Code::NoNode)?;
            check(view, &r.path, perms::READ, who)?;
            body(&GetAllChildrenNumberResponse {
                total_number: view.all_children_number(&r.path).unwrap_or(0) as i32,
            })
        }
        Request::GetEphemerals(r) => {
            let prefix = r.prefix_path.trim();
            let ephemerals = if prefix.is_empty() || prefix == "/" {
                view.ephemerals_of(who.session_id)
            } else {
                view.ephemerals_with_prefix(who.session_id, &r.prefix_path)
            };
            body(&GetEphemeralsResponse { ephemerals })
        }
        Request::CheckWatches(r) => {
            let ty = WatcherType::from_i32(r.watcher_type).ok_or(Code::BadArguments)?;
            if watches.contains(&r.path, who.slot, ty) {
                Ok(Vec::new())
            } else {
                Err(Code::NoWatcher)
            }
        }
        Request::RemoveWatches(r) => {
            let ty = WatcherType::from_i32(r.watcher_type).ok_or(Code::BadArguments)?;
            if watches.remove(&r.path, who.slot, ty) {
                Ok(Vec::new())
            } else {
                Err(Code::NoWatcher)
            }
        }
        Request::AddWatch(r) => {
            let kind = match AddWatchMode::from_i32(r.mode) {
                Some(AddWatchMode::Persistent) => Kind::Persistent,
                Some(AddWatchMode::PersistentRecursive) => Kind::PersistentRecursive,
                None => return Err(Code::BadArguments),
            };
            watches.add(&r.path, who.slot, kind);
            // ZooKeeper answers addWatch with an ErrorResponse(0) body.
            body(&ErrorResponse { err: 0 })
        }
        Request::WhoAmI => body(&WhoAmIResponse {
            client_info: who
                .ids
                .iter()
                .map(|id| ClientInfo {
                    auth_scheme: id.scheme.clone(),
                    // The digest provider names the user without the hash
                    // (`DigestAuthenticationProvider.getUserName`); a sasl id has a
                    // user only with its provider registered.
                    user: acl::user_name(id),
                })
                .collect(),
        }),
        Request::MultiRead(ops) => {
            let (parts, _) = multi_read_prelude(view, watches, who, ops)?;
            Ok(multi_read_body(view, parts))
        }
        Request::Reconfig(_) => Err(Code::ReconfigDisabled),
        // The shard answers SASL packets itself (crate::sasl) before any read runs.
        Request::Sasl(_) => Err(Code::Unimplemented),
        other => panic!("not a read: {:?}", other.op()),
    }
}

/// The watch lists of a setWatches (3.5) or setWatches2 (3.6+) request.
pub struct WatchLists<'a> {
    pub relative_zxid: i64,
    pub data: &'a [String],
    pub exist: &'a [String],
    pub child: &'a [String],
    pub persistent: &'a [String],
    pub recursive: &'a [String],
}

impl<'a> WatchLists<'a> {
    /// The lists of `req`, or `None` if it is not a setWatches request.
    pub fn of(req: &'a Request) -> Option<WatchLists<'a>> {
        match req {
            Request::SetWatches(s) => Some(WatchLists {
                relative_zxid: s.relative_zxid,
                data: &s.data_watches,
                exist: &s.exist_watches,
                child: &s.child_watches,
                persistent: &[],
                recursive: &[],
            }),
            Request::SetWatches2(s) => Some(WatchLists {
                relative_zxid: s.relative_zxid,
                data: &s.data_watches,
                exist: &s.exist_watches,
                child: &s.child_watches,
                persistent: &s.persistent_watches,
                recursive: &s.persistent_recursive_watches,
            }),
            _ => None,
        }
    }
}

/// setWatches / setWatches2: re-arms the watches of a reconnecting client, and reports
/// what it missed since `relative_zxid` as events (ZooKeeper's `DataTree.setWatches`).
pub fn set_watches(
    view: &DataTree,
    watches: &mut Watches<usize>,
    slot: usize,
    lists: &WatchLists<'_>,
    missed: &mut Vec<(EventType, String)>,
) {
    let relative_zxid = lists.relative_zxid;
    for p in lists.data {
        match view.stat(p) {
            None => missed.push((EventType::NodeDeleted, p.clone())),
            Some(s) if s.mzxid > relative_zxid => {
                missed.push((EventType::NodeDataChanged, p.clone()))
            }
            Some(_) => watches.add(p, slot, Kind::Data),
        }
    }
    for p in lists.exist {
        match view.stat(p) {
            Some(_) => missed.push((EventType::NodeCreated, p.clone())),
            None => watches.add(p, slot, Kind::Data),
        }
    }
    for p in lists.child {
        match view.stat(p) {
            None => missed.push((EventType::NodeDeleted, p.clone())),
            Some(s) if s.pzxid > relative_zxid => {
                missed.push((EventType::NodeChildrenChanged, p.clone()))
            }
            Some(_) => watches.add(p, slot, Kind::Child),
        }
    }
    for p in lists.persistent {
        watches.add(p, slot, Kind::Persistent);
    }
    for p in lists.recursive {
        watches.add(p, slot, Kind::PersistentRecursive);
    }
}
