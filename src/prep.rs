//! The sequencer's validation, ZooKeeper's `PrepRequestProcessor` as pure functions:
//! a write request, the calling session and the speculative tree go in; the txn effect
//! to propose, or the error code to answer, comes out. Must not mutate the tree (it
//! returns txns; applying them is `tree`), read the clock (`now_ms` is an argument), or
//! assign zxids (the sequencer wraps the returned [`TxnOp`] in a [`crate::txn::Txn`]).
//!
//! Checks run in ZooKeeper's order, because when a request breaks several rules the
//! client must see the same code. For create: flags (BADARGUMENTS), TTL allowed
//! (UNIMPLEMENTED) and in range (BADARGUMENTS), session (SESSIONEXPIRED), a '/' and no
//! NUL (BADARGUMENTS), ACL list (INVALIDACL), parent exists (NONODE), CREATE on the
//! parent (NOAUTH), sequential suffix, full path syntax (BADARGUMENTS), NODEEXISTS,
//! ephemeral parent (NOCHILDRENFOREPHEMERALS).
//!
//! Notes for the server:
//! - Sessions: every write checks that the caller's session is live in the tree and
//!   answers SESSIONEXPIRED if not (ZooKeeper's `checkSession`; since the tree is the
//!   speculative one, a session whose close is already proposed counts as gone, like
//!   ZooKeeper's "closing" state). Inside a multi that is the first op's error. The
//!   owner check (SESSIONMOVED) belongs to the server, which knows connections.
//! - Failed writes produce no txn here; ZooKeeper logs an error txn and spends a zxid
//!   on it. The reply to a failed write carries the last zxid instead.
//! - Reads are not prepped: see [`is_write`] and the permission table in `acl`.

use crate::acl;
use crate::proto::request::{MultiOp, Request};
use crate::proto::{
    perms, Acl, Code, CreateMode, Id, OpCode, CONTAINER_EPHEMERAL_OWNER, MAX_TTL_MS,
};
use crate::tree::{self, ttl_owner, DataTree, NodeKind};
use crate::txn::{OpResult, Txn, TxnOp};
use bytes::Bytes;

/// The configuration validation depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepConfig {
    /// `extendedTypesEnabled`: TTL nodes may be created.
    pub extended_types_enabled: bool,
    /// `jute.maxbuffer`: the largest data a create or setData may carry.
    pub max_data_len: usize,
    /// `skipACL`: no permission checks (ACL lists are still validated, as in ZooKeeper).
    pub skip_acl: bool,
    /// `znode.container.maxNeverUsedIntervalMs`: 0 keeps never-used containers forever.
    pub container_max_never_used_ms: i64,
    /// `reconfigEnabled`: reconfig requests are validated (by the sequencer, which
    /// knows the ensemble) instead of answered RECONFIGDISABLED.
    pub reconfig_enabled: bool,
    /// The x509 provider is registered (a TLS client port: ZooKeeper's
    /// `configureSSLAuth`), so `x509:` ACL entries are valid.
    pub x509_acls: bool,
}

impl Default for PrepConfig {
    fn default() -> Self {
        PrepConfig {
            extended_types_enabled: false,
            max_data_len: crate::proto::DEFAULT_MAX_BUFFER,
            skip_acl: false,
            container_max_never_used_ms: 0,
            reconfig_enabled: false,
            x509_acls: false,
        }
    }
}

/// `acl::fixup_acl`, with x509 entries valid only when the x509 provider is
/// registered (ZooKeeper registers it with the TLS client port).
fn fixup_acl(cfg: &PrepConfig, list: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, Code> {
    if !cfg.x509_acls && list.iter().any(|a| a.id.scheme == "x509") {
        return Err(Code::InvalidAcl);
    }
    acl::fixup_acl(list, ids)
}

/// Who sends the request: the session and its authenticated ids (its `ip:` id, any
/// `digest:` ids from addauth, and `super:` for the super user).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub session_id: i64,
    pub ids: &'a [Id],
    /// A local session (`localSessionsEnabled`): live, but not in the tree's sessions.
    /// It may change the tree, but not own an ephemeral (ZooKeeper's
    /// `checkGlobalSession` in `validateCreateRequest`).
    pub local: bool,
    /// A local session that may not become global (`localSessionsUpgradingEnabled`
    /// off): a create of an ephemeral fails with EPHEMERALONLOCALSESSION, where
    /// ZooKeeper's `validateCreateRequest` throws the failed upgrade's exception.
    pub no_ephemeral: bool,
}

/// Why a write is refused: the reply header's code and, for a multi that failed in one
/// of its ops, the per-op results (OK for the ops before the failing one, its code,
/// RUNTIMEINCONSISTENCY after). A multi refused as a whole (undecodable) has `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepError {
    pub code: Code,
    pub multi: Option<Vec<OpResult>>,
}

impl From<Code> for PrepError {
    fn from(code: Code) -> Self {
        PrepError { code, multi: None }
    }
}

/// True for the requests that go through [`prep`] (and become txns when valid): what
/// the sequencer orders ([`Request::is_write`]) except sync, which it answers in order
/// without a txn.
pub fn is_write(req: &Request) -> bool {
    req.is_write() && !matches!(req, Request::Sync(_))
}

/// Validates one client write against `tree` (the speculative tree) and returns the txn
/// effect to propose.
///
/// # Errors
/// The code ZooKeeper answers (see the module header for the order of checks). A
/// request that is not a write ([`is_write`]) gets UNIMPLEMENTED; reconfig gets
/// RECONFIGDISABLED, ZooKeeper's answer with `reconfigEnabled=false`.
pub fn prep(
    tree: &DataTree,
    cfg: &PrepConfig,
    caller: &Caller<'_>,
    req: &Request,
    now_ms: i64,
) -> Result<TxnOp, PrepError> {
    prep_found(tree, cfg, caller, req, now_ms).map(|(op, _)| op)
}

/// [`prep`], and where the node the txn changes was found (a setData's, setACL's or
/// delete's node, a create's parent), for [`DataTree::apply_found`] on the same tree
/// right after: the write's path is then looked up once, not twice.
///
/// # Errors
/// As [`prep`].
pub fn prep_found(
    tree: &DataTree,
    cfg: &PrepConfig,
    caller: &Caller<'_>,
    req: &Request,
    now_ms: i64,
) -> Result<(TxnOp, Option<tree::Found>), PrepError> {
    let op = match req {
        Request::Create { op, req } => Write::create(cfg, *op, req)?,
        Request::CreateTtl(req) => Write::create_ttl(cfg, req)?,
        Request::Delete(r) => Write::delete(r),
        Request::SetData(r) => Write::set_data(cfg, r)?,
        Request::SetAcl(r) => Write::SetAcl {
            path: &r.path,
            acl: &r.acl,
            version: r.version,
        },
        Request::Check(r) => Write::check(r),
        Request::Multi(ops) => return Ok((prep_multi(tree, cfg, caller, ops, now_ms)?, None)),
        Request::CloseSession => return Ok((prep_close_session(tree, caller.session_id)?, None)),
        Request::Reconfig(_) => return Err(Code::ReconfigDisabled.into()),
        _ => return Err(Code::Unimplemented.into()),
    };
    prep_write(tree, cfg, caller, &op).map_err(PrepError::from)
}

/// Validates a createSession: the id must be new. A clash means the session id
/// generator repeated itself (e.g. after a clock step back); the server should refuse
/// the connection rather than stop.
///
/// # Errors
/// SYSTEMERROR if the session already exists.
pub fn prep_create_session(
    tree: &DataTree,
    session_id: i64,
    timeout_ms: i32,
) -> Result<TxnOp, PrepError> {
    if tree.session_timeout(session_id).is_some() {
        return Err(Code::SystemError.into());
    }
    Ok(TxnOp::CreateSession { timeout_ms })
}

/// Validates a closeSession (client close or expiry): the txn lists the session's
/// ephemerals in sorted order, so every replica deletes the same nodes.
///
/// # Errors
/// SESSIONEXPIRED if the session is not live (already closed or never created).
pub fn prep_close_session(tree: &DataTree, session_id: i64) -> Result<TxnOp, PrepError> {
    if tree.session_timeout(session_id).is_none() {
        return Err(Code::SessionExpired.into());
    }
    Ok(TxnOp::CloseSession {
        ephemerals: tree.ephemerals_of(session_id),
    })
}

/// Validates a server-initiated deleteContainer of `path` (an empty container or an
/// expired TTL node, from [`DataTree::reap_candidates`]).
///
/// ZooKeeper only re-checks "no children" (NOTEMPTY) and "not a session's ephemeral"
/// (BADVERSION). RingKeeper re-checks the whole candidate rule at `now_ms`, answering
/// BADVERSION when the node stopped being a candidate since the scan (e.g. a TTL node
/// modified meanwhile), so a node in use is never reaped.
///
/// # Errors
/// BADARGUMENTS for a reserved path, NONODE, NOTEMPTY, BADVERSION as above.
pub fn prep_reap(
    tree: &DataTree,
    cfg: &PrepConfig,
    path: &str,
    now_ms: i64,
) -> Result<TxnOp, PrepError> {
    if !path.contains('/') || path.contains('\0') || tree::SPECIAL_PATHS.contains(&path) {
        return Err(Code::BadArguments.into());
    }
    let node = tree.get(path).ok_or(Code::NoNode)?;
    if node.num_children() != 0 {
        return Err(Code::NotEmpty.into());
    }
    if matches!(node.kind(), NodeKind::Ephemeral(_)) {
        return Err(Code::BadVersion.into());
    }
    if !tree.is_reap_candidate(path, now_ms, cfg.container_max_never_used_ms) {
        return Err(Code::BadVersion.into());
    }
    Ok(TxnOp::DeleteContainer {
        path: path.to_string(),
    })
}

/// One write op, borrowed from a request or a multi op.
enum Write<'r> {
    Create {
        op: OpCode,
        path: &'r str,
        data: &'r Option<Bytes>,
        acl: &'r [Acl],
        flags: i32,
        /// -1 for requests without a TTL field, as ZooKeeper passes it.
        ttl: i64,
    },
    Delete {
        path: &'r str,
        version: i32,
    },
    SetData {
        path: &'r str,
        data: &'r Option<Bytes>,
        version: i32,
    },
    SetAcl {
        path: &'r str,
        acl: &'r [Acl],
        version: i32,
    },
    Check {
        path: &'r str,
        version: i32,
    },
}

/// One constructor per write record, shared by top-level requests and multi ops.
impl<'r> Write<'r> {
    fn create(
        cfg: &PrepConfig,
        op: OpCode,
        req: &'r crate::proto::CreateRequest,
    ) -> Result<Self, PrepError> {
        check_data_len(cfg, &req.data)?;
        Ok(Write::Create {
            op,
            path: &req.path,
            data: &req.data,
            acl: &req.acl,
            flags: req.flags,
            ttl: -1,
        })
    }

    fn create_ttl(
        cfg: &PrepConfig,
        req: &'r crate::proto::CreateTtlRequest,
    ) -> Result<Self, PrepError> {
        check_data_len(cfg, &req.data)?;
        Ok(Write::Create {
            op: OpCode::CreateTtl,
            path: &req.path,
            data: &req.data,
            acl: &req.acl,
            flags: req.flags,
            ttl: req.ttl,
        })
    }

    fn delete(r: &'r crate::proto::DeleteRequest) -> Self {
        Write::Delete {
            path: &r.path,
            version: r.version,
        }
    }

    fn set_data(cfg: &PrepConfig, r: &'r crate::proto::SetDataRequest) -> Result<Self, PrepError> {
        check_data_len(cfg, &r.data)?;
        Ok(Write::SetData {
            path: &r.path,
            data: &r.data,
            version: r.version,
        })
    }

    fn check(r: &'r crate::proto::CheckVersionRequest) -> Self {
        Write::Check {
            path: &r.path,
            version: r.version,
        }
    }
}

/// Jute refuses a buffer longer than `jute.maxbuffer` while decoding the request
/// (`BinaryInputArchive.checkLength`), which ZooKeeper answers MARSHALLINGERROR.
fn check_data_len(cfg: &PrepConfig, data: &Option<Bytes>) -> Result<(), PrepError> {
    match data {
        Some(d) if d.len() > cfg.max_data_len => Err(Code::MarshallingError.into()),
        _ => Ok(()),
    }
}

fn check_session(tree: &DataTree, caller: &Caller<'_>) -> Result<(), Code> {
    if caller.local {
        return Ok(());
    }
    check_global_session(tree, caller)
}

/// The session must be global: one the tree holds.
fn check_global_session(tree: &DataTree, caller: &Caller<'_>) -> Result<(), Code> {
    match tree.session_timeout(caller.session_id) {
        Some(_) => Ok(()),
        None => Err(Code::SessionExpired),
    }
}

pub(crate) fn check_perm(cfg: &PrepConfig, acl: &[Acl], perm: i32, ids: &[Id]) -> Result<(), Code> {
    if cfg.skip_acl || acl::check(acl, perm, ids) {
        Ok(())
    } else {
        Err(Code::NoAuth)
    }
}

/// `checkAndIncVersion`: -1 matches any version; the result is the next version, with
/// Java's int wrap-around.
fn check_version(current: i32, expected: i32) -> Result<i32, Code> {
    if expected != -1 && expected != current {
        return Err(Code::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

fn valid_path(path: &str) -> Result<(), Code> {
    tree::validate_path(path).map_err(|_| Code::BadArguments)
}

fn prep_write(
    tree: &DataTree,
    cfg: &PrepConfig,
    caller: &Caller<'_>,
    op: &Write<'_>,
) -> Result<(TxnOp, Option<tree::Found>), Code> {
    match *op {
        Write::Create {
            op,
            path,
            data,
            acl,
            flags,
            ttl,
        } => prep_create(tree, cfg, caller, op, path, data, acl, flags, ttl),
        Write::Delete { path, version } => {
            check_session(tree, caller)?;
            // `getParentPathAndValidate`: no full syntax check for delete, but reserved
            // nodes are refused.
            if !path.contains('/') || path.contains('\0') || tree::SPECIAL_PATHS.contains(&path) {
                return Err(Code::BadArguments);
            }
            let (parent_path, _) = tree::split_parent(path).ok_or(Code::BadArguments)?;
            let parent = tree.get(parent_path).ok_or(Code::NoNode)?;
            check_perm(cfg, parent.acl(), perms::DELETE, caller.ids)?;
            let (node, found) = tree.find(path).ok_or(Code::NoNode)?;
            check_version(node.version(), version)?;
            if node.num_children() != 0 {
                return Err(Code::NotEmpty);
            }
            Ok((
                TxnOp::Delete {
                    path: path.to_string(),
                },
                Some(found),
            ))
        }
        Write::SetData {
            path,
            data,
            version,
        } => {
            check_session(tree, caller)?;
            valid_path(path)?;
            let (node, fields, found) = tree.find_fields(path).ok_or(Code::NoNode)?;
            check_perm(cfg, node.acl(), perms::WRITE, caller.ids)?;
            let version = check_version(fields.version, version)?;
            Ok((
                TxnOp::SetData {
                    path: path.to_string(),
                    data: data.clone(),
                    version,
                },
                Some(found),
            ))
        }
        Write::SetAcl { path, acl, version } => {
            check_session(tree, caller)?;
            valid_path(path)?;
            let acl = fixup_acl(cfg, acl, caller.ids)?;
            let (node, found) = tree.find(path).ok_or(Code::NoNode)?;
            check_perm(cfg, node.acl(), perms::ADMIN, caller.ids)?;
            let aversion = check_version(node.aversion(), version)?;
            Ok((
                TxnOp::SetAcl {
                    path: path.to_string(),
                    acl,
                    aversion,
                },
                Some(found),
            ))
        }
        Write::Check { path, version } => {
            check_session(tree, caller)?;
            valid_path(path)?;
            let node = tree.get(path).ok_or(Code::NoNode)?;
            check_perm(cfg, node.acl(), perms::READ, caller.ids)?;
            check_version(node.version(), version)?;
            Ok((
                TxnOp::Check {
                    path: path.to_string(),
                },
                None,
            ))
        }
    }
}

/// `pRequest2TxnCreate` with `validateCreateRequest` and `validatePathForCreate`.
///
/// The node's kind follows the opcode as ZooKeeper's txn types do: createContainer
/// always makes a container and createTTL a TTL node, whatever the flags say about
/// persistence; create/create2 make an ephemeral when the flags say so and a plain
/// persistent node otherwise (so create with the CONTAINER flag is persistent, as in
/// ZooKeeper, whose Java client sends containers as createContainer).
#[allow(clippy::too_many_arguments)]
fn prep_create(
    tree: &DataTree,
    cfg: &PrepConfig,
    caller: &Caller<'_>,
    op: OpCode,
    path: &str,
    data: &Option<Bytes>,
    acl: &[Acl],
    flags: i32,
    ttl: i64,
) -> Result<(TxnOp, Option<tree::Found>), Code> {
    let mode = CreateMode::from_flags(flags).ok_or(Code::BadArguments)?;
    if mode.is_ttl() && !cfg.extended_types_enabled {
        return Err(Code::Unimplemented);
    }
    // `EphemeralType.validateTTL`.
    if mode.is_ttl() {
        if ttl <= 0 || ttl > MAX_TTL_MS {
            return Err(Code::BadArguments);
        }
    } else if ttl >= 0 {
        return Err(Code::BadArguments);
    }
    // ZooKeeper accepts createTTL with a non-TTL mode and ttl -1 here and then fails
    // applying it (no TTL to encode); refusing it up front keeps the log clean.
    if op == OpCode::CreateTtl && !mode.is_ttl() {
        return Err(Code::BadArguments);
    }
    if mode.is_ephemeral() && caller.no_ephemeral {
        return Err(Code::EphemeralOnLocalSession);
    } else if mode.is_ephemeral() {
        check_global_session(tree, caller)?;
    } else {
        check_session(tree, caller)?;
    }
    if !path.contains('/') || path.contains('\0') {
        return Err(Code::BadArguments);
    }
    let (parent_path, _) = tree::split_parent(path).ok_or(Code::BadArguments)?;
    let acl = fixup_acl(cfg, acl, caller.ids)?;
    let (parent, parent_found) = tree.find(parent_path).ok_or(Code::NoNode)?;
    check_perm(cfg, parent.acl(), perms::CREATE, caller.ids)?;
    let path = if mode.is_sequential() {
        // Java's "%010d": ten digits, zero-padded, the sign counting towards the width.
        format!("{path}{:010}", parent.cversion())
    } else {
        path.to_string()
    };
    valid_path(&path)?;
    if tree.exists(&path) {
        return Err(Code::NodeExists);
    }
    if matches!(parent.kind(), NodeKind::Ephemeral(_)) {
        return Err(Code::NoChildrenForEphemerals);
    }
    let ephemeral_owner = match op {
        OpCode::CreateContainer => CONTAINER_EPHEMERAL_OWNER,
        OpCode::CreateTtl => ttl_owner(ttl),
        _ if mode.is_ephemeral() => caller.session_id,
        _ => 0,
    };
    Ok((
        TxnOp::Create {
            path,
            data: data.clone(),
            acl,
            ephemeral_owner,
        },
        Some(parent_found),
    ))
}

/// A multi: each op is validated against a scratch tree holding the earlier ops'
/// effects (a clone of the persistent tree, so O(1) to make and dropped afterwards).
fn prep_multi(
    tree: &DataTree,
    cfg: &PrepConfig,
    caller: &Caller<'_>,
    ops: &[MultiOp],
    now_ms: i64,
) -> Result<TxnOp, PrepError> {
    let mut writes = Vec::with_capacity(ops.len());
    for op in ops {
        let w = match op {
            MultiOp::Create { op, req } => Write::create(cfg, *op, req)?,
            MultiOp::CreateTtl(req) => Write::create_ttl(cfg, req)?,
            MultiOp::Delete(r) => Write::delete(r),
            MultiOp::SetData(r) => Write::set_data(cfg, r)?,
            MultiOp::Check(r) => Write::check(r),
            // ZooKeeper's MultiOperationRecord refuses to decode reads mixed into a
            // write multi, which it answers MARSHALLINGERROR.
            MultiOp::GetChildren(_) | MultiOp::GetData(_) => {
                return Err(Code::MarshallingError.into());
            }
        };
        writes.push(w);
    }
    let mut scratch = tree.clone();
    let mut txns = Vec::with_capacity(writes.len());
    for (i, w) in writes.iter().enumerate() {
        match prep_write(&scratch, cfg, caller, w).map(|(op, _)| op) {
            Ok(op) => {
                // The zxid and time only shape stats, which later ops never check.
                let txn = Txn {
                    session_id: caller.session_id,
                    cxid: 0,
                    zxid: scratch.zxid() + 1,
                    time_ms: now_ms,
                    op,
                };
                scratch.apply(&txn);
                txns.push(txn.op);
            }
            Err(code) => {
                let results = (0..writes.len())
                    .map(|j| {
                        OpResult::Error(match j.cmp(&i) {
                            std::cmp::Ordering::Less => Code::Ok,
                            std::cmp::Ordering::Equal => code,
                            std::cmp::Ordering::Greater => Code::RuntimeInconsistency,
                        })
                    })
                    .collect();
                return Err(PrepError {
                    code,
                    multi: Some(results),
                });
            }
        }
    }
    Ok(TxnOp::Multi(txns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::records::*;
    use crate::tree::open_acl_unsafe;

    const S: i64 = 0x0100_0000_0000_0007;
    const NOW: i64 = 1_000_000;

    /// A tree with session S live, and a helper to run requests through prep + apply.
    struct Env {
        tree: DataTree,
        cfg: PrepConfig,
        ids: Vec<Id>,
        zxid: i64,
    }

    impl Env {
        fn new() -> Env {
            let mut e = Env {
                tree: DataTree::new(),
                cfg: PrepConfig::default(),
                ids: vec![],
                zxid: 0,
            };
            e.commit(S, TxnOp::CreateSession { timeout_ms: 10_000 });
            e
        }
        fn commit(&mut self, session_id: i64, op: TxnOp) -> OpResult {
            self.zxid += 1;
            let txn = Txn {
                session_id,
                cxid: 0,
                zxid: self.zxid,
                time_ms: NOW,
                op,
            };
            self.tree.apply(&txn).result
        }
        fn prep_as(&self, session_id: i64, req: &Request) -> Result<TxnOp, PrepError> {
            let caller = Caller {
                session_id,
                ids: &self.ids,
                local: false,
                no_ephemeral: false,
            };
            prep(&self.tree, &self.cfg, &caller, req, NOW)
        }
        fn prep(&self, req: &Request) -> Result<TxnOp, PrepError> {
            self.prep_as(S, req)
        }
        /// Preps and commits; returns the code (Ok for success).
        fn run(&mut self, req: &Request) -> Code {
            match self.prep(req) {
                Ok(op) => {
                    self.commit(S, op);
                    Code::Ok
                }
                Err(e) => e.code,
            }
        }
    }

    fn create_req(op: OpCode, path: &str, flags: i32, acl: Vec<Acl>) -> Request {
        Request::Create {
            op,
            req: CreateRequest {
                path: path.into(),
                data: Some(Bytes::from_static(b"v")),
                acl,
                flags,
            },
        }
    }
    fn create(path: &str, flags: i32) -> Request {
        create_req(OpCode::Create, path, flags, open_acl_unsafe())
    }
    fn create_ttl(path: &str, flags: i32, ttl: i64) -> Request {
        Request::CreateTtl(CreateTtlRequest {
            path: path.into(),
            data: None,
            acl: open_acl_unsafe(),
            flags,
            ttl,
        })
    }
    fn delete(path: &str, version: i32) -> Request {
        Request::Delete(DeleteRequest {
            path: path.into(),
            version,
        })
    }
    fn set_data(path: &str, version: i32) -> Request {
        Request::SetData(SetDataRequest {
            path: path.into(),
            data: None,
            version,
        })
    }
    fn acl_of(perms: i32, scheme: &str, id: &str) -> Vec<Acl> {
        vec![Acl {
            perms,
            id: Id {
                scheme: scheme.into(),
                id: id.into(),
            },
        }]
    }
    fn code(r: Result<TxnOp, PrepError>) -> Code {
        r.map(|_| Code::Ok).unwrap_or_else(|e| e.code)
    }

    #[test]
    fn create_flags_and_ttl_rules() {
        let mut e = Env::new();
        assert_eq!(code(e.prep(&create("/a", 7))), Code::BadArguments);
        assert_eq!(code(e.prep(&create_ttl("/t", 5, 100))), Code::Unimplemented);
        e.cfg.extended_types_enabled = true;
        assert_eq!(code(e.prep(&create_ttl("/t", 5, 0))), Code::BadArguments);
        assert_eq!(
            code(e.prep(&create_ttl("/t", 5, MAX_TTL_MS + 1))),
            Code::BadArguments
        );
        assert_eq!(
            code(e.prep(&create_ttl("/t", 0, 100))),
            Code::BadArguments,
            "ttl on a non-TTL mode"
        );
        assert_eq!(code(e.prep(&create_ttl("/t", 0, -1))), Code::BadArguments);
        // create (op 1) with a TTL mode has ttl -1, which validateTTL refuses.
        assert_eq!(code(e.prep(&create("/t", 5))), Code::BadArguments);
        let Ok(TxnOp::Create {
            ephemeral_owner, ..
        }) = e.prep(&create_ttl("/t", 5, MAX_TTL_MS))
        else {
            panic!("max TTL must be accepted")
        };
        assert_eq!(
            NodeKind::of_owner(ephemeral_owner),
            NodeKind::Ttl(MAX_TTL_MS)
        );
    }

    #[test]
    fn create_kind_follows_the_opcode() {
        let e = Env::new();
        let owner = |r: Request| match e.prep(&r) {
            Ok(TxnOp::Create {
                ephemeral_owner, ..
            }) => ephemeral_owner,
            other => panic!("{other:?}"),
        };
        assert_eq!(owner(create("/a", 1)), S);
        assert_eq!(
            owner(create("/a", 4)),
            0,
            "CONTAINER flag on plain create is persistent"
        );
        assert_eq!(
            owner(create_req(
                OpCode::CreateContainer,
                "/a",
                4,
                open_acl_unsafe()
            )),
            CONTAINER_EPHEMERAL_OWNER
        );
        assert_eq!(
            owner(create_req(OpCode::Create2, "/a", 0, open_acl_unsafe())),
            0
        );
    }

    #[test]
    fn create_path_rules_and_their_order() {
        let mut e = Env::new();
        assert_eq!(code(e.prep(&create("a", 0))), Code::BadArguments);
        assert_eq!(code(e.prep(&create("/a\0", 0))), Code::BadArguments);
        // The parent is looked up before the full syntax check, so a trailing '/' under
        // a missing parent is NONODE and under an existing one BADARGUMENTS.
        assert_eq!(code(e.prep(&create("/a/", 0))), Code::NoNode);
        assert_eq!(code(e.prep(&create("/a//b", 0))), Code::NoNode);
        assert_eq!(e.run(&create("/a", 0)), Code::Ok);
        assert_eq!(code(e.prep(&create("/a/", 0))), Code::BadArguments);
        assert_eq!(code(e.prep(&create("/a/.", 0))), Code::BadArguments);
        // An invalid ACL is reported before a missing parent.
        assert_eq!(
            code(e.prep(&create_req(OpCode::Create, "/x/y", 0, vec![]))),
            Code::InvalidAcl
        );
        assert_eq!(code(e.prep(&create("/x/y", 0))), Code::NoNode);
        assert_eq!(code(e.prep(&create("/a", 0))), Code::NodeExists);
        assert_eq!(code(e.prep(&create("/", 0))), Code::NodeExists);
    }

    #[test]
    fn sequential_suffix_comes_from_the_stored_cversion() {
        let mut e = Env::new();
        e.run(&create("/q", 0));
        e.run(&create("/q/x", 0));
        e.run(&delete("/q/x", -1));
        match e.prep(&create("/q/", 2)) {
            Ok(TxnOp::Create { path, .. }) => assert_eq!(path, "/q/0000000001"),
            other => panic!("{other:?}"),
        }
        match e.prep(&create("/q/lock-", 3)) {
            Ok(TxnOp::Create {
                path,
                ephemeral_owner,
                ..
            }) => {
                assert_eq!(path, "/q/lock-0000000001");
                assert_eq!(ephemeral_owner, S);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_children_for_ephemerals_and_expired_sessions() {
        let mut e = Env::new();
        assert_eq!(e.run(&create("/e", 1)), Code::Ok);
        assert_eq!(
            code(e.prep(&create("/e/c", 0))),
            Code::NoChildrenForEphemerals
        );
        // An unknown session is refused before anything else about the path.
        assert_eq!(
            code(e.prep_as(42, &create("/e/c", 0))),
            Code::SessionExpired
        );
        assert_eq!(code(e.prep_as(42, &delete("/e", -1))), Code::SessionExpired);
        assert_eq!(
            code(e.prep_as(42, &Request::CloseSession)),
            Code::SessionExpired
        );
    }

    #[test]
    fn create_needs_create_on_the_parent() {
        let mut e = Env::new();
        let bob = acl::digest("bob:pw");
        e.run(&create_req(
            OpCode::Create,
            "/p",
            0,
            acl_of(perms::READ, "digest", &bob),
        ));
        assert_eq!(code(e.prep(&create("/p/c", 0))), Code::NoAuth);
        e.ids = vec![Id {
            scheme: "super".into(),
            id: String::new(),
        }];
        assert_eq!(code(e.prep(&create("/p/c", 0))), Code::Ok);
        e.ids = vec![];
        e.cfg.skip_acl = true;
        assert_eq!(code(e.prep(&create("/p/c", 0))), Code::Ok);
    }

    #[test]
    fn x509_acls_need_the_x509_provider() {
        let mut e = Env::new();
        let req = create_req(OpCode::Create, "/a", 0, acl_of(31, "x509", "CN=alice"));
        assert_eq!(code(e.prep(&req)), Code::InvalidAcl);
        e.cfg.x509_acls = true;
        assert_eq!(code(e.prep(&req)), Code::Ok);
    }

    #[test]
    fn auth_acl_expands_to_the_callers_digest() {
        let mut e = Env::new();
        let bob = Id {
            scheme: "digest".into(),
            id: acl::digest("bob:pw"),
        };
        assert_eq!(
            code(e.prep(&create_req(OpCode::Create, "/a", 0, acl_of(31, "auth", "")))),
            Code::InvalidAcl
        );
        e.ids = vec![bob.clone()];
        match e.prep(&create_req(OpCode::Create, "/a", 0, acl_of(31, "auth", ""))) {
            Ok(TxnOp::Create { acl, .. }) => assert_eq!(acl, vec![Acl { perms: 31, id: bob }]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delete_rules() {
        let mut e = Env::new();
        for p in [
            "/",
            "/zookeeper",
            "/zookeeper/quota",
            "/zookeeper/config",
            "nope",
        ] {
            assert_eq!(code(e.prep(&delete(p, -1))), Code::BadArguments, "{p}");
        }
        assert_eq!(code(e.prep(&delete("/a", -1))), Code::NoNode);
        e.run(&create("/a", 0));
        e.run(&create("/a/b", 0));
        assert_eq!(code(e.prep(&delete("/a", -1))), Code::NotEmpty);
        // BADVERSION is checked before NOTEMPTY.
        assert_eq!(code(e.prep(&delete("/a", 3))), Code::BadVersion);
        assert_eq!(code(e.prep(&delete("/a/b", 0))), Code::Ok);
        // DELETE is checked on the parent, not on the node.
        e.run(&Request::SetAcl(SetAclRequest {
            path: "/a".into(),
            acl: acl_of(perms::READ, "world", "anyone"),
            version: -1,
        }));
        assert_eq!(code(e.prep(&delete("/a/b", -1))), Code::NoAuth);
    }

    #[test]
    fn set_data_versions_and_permissions() {
        let mut e = Env::new();
        assert_eq!(code(e.prep(&set_data("/a", -1))), Code::NoNode);
        assert_eq!(code(e.prep(&set_data("/a/", -1))), Code::BadArguments);
        e.run(&create("/a", 0));
        assert_eq!(code(e.prep(&set_data("/a", 1))), Code::BadVersion);
        match e.prep(&set_data("/a", 0)) {
            Ok(TxnOp::SetData { version, data, .. }) => assert_eq!((version, data), (1, None)),
            other => panic!("{other:?}"),
        }
        e.run(&Request::SetAcl(SetAclRequest {
            path: "/a".into(),
            acl: acl_of(perms::READ, "world", "anyone"),
            version: 0,
        }));
        assert_eq!(code(e.prep(&set_data("/a", -1))), Code::NoAuth);
        e.cfg.max_data_len = 0;
        let big = Request::SetData(SetDataRequest {
            path: "/a".into(),
            data: Some(Bytes::from_static(b"x")),
            version: -1,
        });
        assert_eq!(code(e.prep(&big)), Code::MarshallingError);
    }

    #[test]
    fn set_acl_rules() {
        let mut e = Env::new();
        let set = |acl: Vec<Acl>, version: i32| {
            Request::SetAcl(SetAclRequest {
                path: "/a".into(),
                acl,
                version,
            })
        };
        assert_eq!(
            code(e.prep(&set(vec![], -1))),
            Code::InvalidAcl,
            "before NONODE"
        );
        assert_eq!(code(e.prep(&set(open_acl_unsafe(), -1))), Code::NoNode);
        e.run(&create("/a", 0));
        assert_eq!(code(e.prep(&set(open_acl_unsafe(), 1))), Code::BadVersion);
        match e.prep(&set(open_acl_unsafe(), 0)) {
            Ok(TxnOp::SetAcl { aversion, .. }) => assert_eq!(aversion, 1),
            other => panic!("{other:?}"),
        }
        e.run(&set(
            acl_of(perms::ALL & !perms::ADMIN, "world", "anyone"),
            -1,
        ));
        assert_eq!(code(e.prep(&set(open_acl_unsafe(), -1))), Code::NoAuth);
    }

    #[test]
    fn check_rules() {
        let mut e = Env::new();
        let check = |v: i32| {
            Request::Check(CheckVersionRequest {
                path: "/a".into(),
                version: v,
            })
        };
        assert_eq!(code(e.prep(&check(0))), Code::NoNode);
        e.run(&create("/a", 0));
        assert_eq!(code(e.prep(&check(1))), Code::BadVersion);
        assert_eq!(e.prep(&check(0)), Ok(TxnOp::Check { path: "/a".into() }));
        e.run(&Request::SetAcl(SetAclRequest {
            path: "/a".into(),
            acl: acl_of(perms::WRITE, "world", "anyone"),
            version: -1,
        }));
        assert_eq!(code(e.prep(&check(-1))), Code::NoAuth, "check needs READ");
    }

    fn m_create(path: &str, flags: i32) -> MultiOp {
        MultiOp::Create {
            op: OpCode::Create,
            req: CreateRequest {
                path: path.into(),
                data: None,
                acl: open_acl_unsafe(),
                flags,
            },
        }
    }

    #[test]
    fn multi_validates_against_its_own_earlier_ops() {
        let mut e = Env::new();
        let req = Request::Multi(vec![
            m_create("/m", 0),
            m_create("/m/c", 0),
            m_create("/m/s-", 2),
            m_create("/m/s-", 2),
            MultiOp::SetData(SetDataRequest {
                path: "/m".into(),
                data: None,
                version: 0,
            }),
            MultiOp::Check(CheckVersionRequest {
                path: "/m".into(),
                version: 1,
            }),
            MultiOp::Delete(DeleteRequest {
                path: "/m/c".into(),
                version: 0,
            }),
        ]);
        let before = e.tree.clone();
        let op = e.prep(&req).expect("valid multi");
        assert_eq!(e.tree, before, "prep leaves the tree alone");
        let TxnOp::Multi(ops) = &op else {
            panic!("{op:?}")
        };
        assert_eq!(ops.len(), 7);
        assert!(matches!(&ops[2], TxnOp::Create { path, .. } if path == "/m/s-0000000001"));
        assert!(matches!(&ops[3], TxnOp::Create { path, .. } if path == "/m/s-0000000002"));
        e.commit(S, op);
        assert_eq!(
            e.tree.children("/m").unwrap(),
            vec!["s-0000000001", "s-0000000002"]
        );
    }

    #[test]
    fn failed_multi_reports_ok_then_code_then_runtime_inconsistency() {
        let e = Env::new();
        let req = Request::Multi(vec![
            m_create("/a", 0),
            MultiOp::Delete(DeleteRequest {
                path: "/zz".into(),
                version: -1,
            }),
            m_create("/b", 0),
        ]);
        let err = e.prep(&req).unwrap_err();
        assert_eq!(err.code, Code::NoNode);
        assert_eq!(
            err.multi,
            Some(vec![
                OpResult::Error(Code::Ok),
                OpResult::Error(Code::NoNode),
                OpResult::Error(Code::RuntimeInconsistency),
            ])
        );
        // Reads inside a write multi fail the request as a whole.
        let mixed = Request::Multi(vec![MultiOp::GetData(GetDataRequest {
            path: "/".into(),
            watch: false,
        })]);
        assert_eq!(
            e.prep(&mixed).unwrap_err(),
            PrepError {
                code: Code::MarshallingError,
                multi: None
            }
        );
        assert_eq!(e.prep(&Request::Multi(vec![])), Ok(TxnOp::Multi(vec![])));
    }

    #[test]
    fn close_and_create_session() {
        let mut e = Env::new();
        e.run(&create("/z", 1));
        e.run(&create("/a", 1));
        assert_eq!(
            e.prep(&Request::CloseSession),
            Ok(TxnOp::CloseSession {
                ephemerals: vec!["/a".into(), "/z".into()]
            })
        );
        assert_eq!(
            prep_create_session(&e.tree, S, 1).unwrap_err().code,
            Code::SystemError
        );
        assert_eq!(
            prep_create_session(&e.tree, 9, 1),
            Ok(TxnOp::CreateSession { timeout_ms: 1 })
        );
        assert_eq!(code(e.prep(&Request::Ping)), Code::Unimplemented);
        assert!(!is_write(&Request::Ping));
        assert!(!is_write(&Request::Sync(SyncRequest { path: "/".into() })));
        assert!(is_write(&Request::CloseSession));
    }

    #[test]
    fn reap_rechecks_the_candidate_rule() {
        let mut e = Env::new();
        e.cfg.extended_types_enabled = true;
        e.run(&create_req(
            OpCode::CreateContainer,
            "/c",
            4,
            open_acl_unsafe(),
        ));
        assert_eq!(
            code(prep_reap(&e.tree, &e.cfg, "/c", NOW + 1)),
            Code::BadVersion,
            "never had children"
        );
        e.run(&create("/c/x", 0));
        assert_eq!(
            code(prep_reap(&e.tree, &e.cfg, "/c", NOW + 1)),
            Code::NotEmpty
        );
        e.run(&delete("/c/x", -1));
        assert_eq!(
            prep_reap(&e.tree, &e.cfg, "/c", NOW + 1),
            Ok(TxnOp::DeleteContainer { path: "/c".into() })
        );
        e.run(&create_ttl("/t", 5, 10));
        assert_eq!(
            code(prep_reap(&e.tree, &e.cfg, "/t", NOW + 10)),
            Code::BadVersion
        );
        assert_eq!(code(prep_reap(&e.tree, &e.cfg, "/t", NOW + 11)), Code::Ok);
        e.run(&create("/e", 1));
        assert_eq!(
            code(prep_reap(&e.tree, &e.cfg, "/e", NOW + 11)),
            Code::BadVersion
        );
        assert_eq!(
            code(prep_reap(&e.tree, &e.cfg, "/zookeeper", NOW)),
            Code::BadArguments
        );
        assert_eq!(code(prep_reap(&e.tree, &e.cfg, "/gone", NOW)), Code::NoNode);
    }
}
