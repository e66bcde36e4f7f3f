//! The unmeasured setup phase: creates the root, its parents and the key space.

use super::conn::BlockingClient;
use super::engine::BenchError;
use super::workload::{key_path, open_acl, parent_paths};
use crate::proto::{Code, CreateRequest, OpCode};
use bytes::Bytes;
use std::net::SocketAddr;

/// Requests in flight while populating: enough to hide the round trip.
const SETUP_WINDOW: usize = 512;

/// Creates `root` (and its ancestors), the parents the workloads write under, and
/// `keys` nodes holding `value`. Existing nodes are kept as they are (NODEEXISTS is not
/// an error), so repeated runs on one tree skip the work. Returns how many keys were
/// newly created.
pub fn populate(addr: SocketAddr, root: &str, keys: u64, value: &Bytes) -> Result<u64, BenchError> {
    let mut c =
        BlockingClient::connect(addr, 30_000).map_err(|err| BenchError::Connect { addr, err })?;
    let create = |path: String, data: Option<Bytes>| {
        (
            OpCode::Create,
            CreateRequest {
                path,
                data,
                acl: open_acl(),
                flags: 0,
            },
        )
    };
    let mut dirs = Vec::new();
    let mut acc = String::new();
    for part in root.split('/').filter(|p| !p.is_empty()) {
        acc.push('/');
        acc.push_str(part);
        dirs.push(acc.clone());
    }
    dirs.extend(parent_paths(root));
    // Parents one by one: each must exist before its children.
    for d in dirs {
        let errs = c
            .pipeline([create(d.clone(), None)], 1)
            .map_err(conn_err(addr))?;
        check(&d, errs[0])?;
    }
    let errs = c
        .pipeline(
            (0..keys).map(|i| create(key_path(root, i), Some(value.clone()))),
            SETUP_WINDOW,
        )
        .map_err(conn_err(addr))?;
    let mut created = 0;
    for (i, e) in errs.into_iter().enumerate() {
        check(&key_path(root, i as u64), e)?;
        created += (e == 0) as u64;
    }
    c.close();
    Ok(created)
}

fn conn_err(addr: SocketAddr) -> impl Fn(super::conn::ConnError) -> BenchError {
    move |err| BenchError::Connect { addr, err }
}

fn check(path: &str, err: i32) -> Result<(), BenchError> {
    if err == 0 || err == Code::NodeExists as i32 {
        return Ok(());
    }
    Err(BenchError::Config(format!(
        "setup: create {path} failed with {}",
        code_name(err)
    )))
}

/// ZooKeeper's name of an error code, or the number.
pub fn code_name(err: i32) -> String {
    match Code::from_i32(err) {
        Some(c) => c.name().to_string(),
        None => format!("code {err}"),
    }
}
