//! The four-letter words on the client port: detection on a fresh connection, the
//! whitelist, and gathering the server's state for the formatters.

use super::stats::{ConnStats, ServerState};
use crate::tree::DataTree;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// One connection as `cons` shows it.
#[derive(Debug, Clone)]
pub struct ConnLine {
    pub peer: SocketAddr,
    pub session_id: i64,
    pub timeout_ms: i32,
    pub queued: usize,
    pub stats: ConnStats,
}

/// One shard's watches for `wchs`/`wchc`/`wchp`.
#[derive(Debug, Clone, Default)]
pub struct WatchSummary {
    pub total: usize,
    pub by_session: BTreeMap<i64, BTreeSet<String>>,
}

const COMMANDS: &[&str] = &[
    "ruok", "srvr", "stat", "conf", "cons", "crst", "envi", "mntr", "wchs", "wchc", "wchp", "dump",
    "isro", "dirs", "srst", "gtmk", "stmk", "hash",
];

/// The command a fresh connection's first four bytes spell, if any.
pub fn command(head: [u8; 4]) -> Option<&'static str> {
    COMMANDS.iter().copied().find(|c| c.as_bytes() == head)
}

/// Runs a four-letter word and returns its full output.
pub fn run(cmd: &str, state: &ServerState, view: &DataTree, zxid: i64) -> String {
    if let Some(list) = &state.settings.fourlw_whitelist {
        if !list.iter().any(|c| c == cmd) {
            return format!("{cmd} is not executed because it is not in the whitelist.\n");
        }
    }
    match cmd {
        "ruok" => "imok".to_string(),
        "isro" => "rw".to_string(),
        "srvr" => srvr(state, view, zxid),
        _ => format!("{cmd} is not supported yet.\n"),
    }
}

fn srvr(state: &ServerState, view: &DataTree, zxid: i64) -> String {
    let (min, avg, max) = state.latency_ms();
    format!(
        "Zookeeper version: 3.8.0-ringkeeper-{}, built on unknown\n\
         Latency min/avg/max: {:.0}/{:.4}/{:.0}\n\
         Received: {}\nSent: {}\nConnections: {}\nOutstanding: 0\n\
         Zxid: {:#x}\nMode: standalone\nNode count: {}\n",
        env!("CARGO_PKG_VERSION"),
        min,
        avg,
        max,
        state.packets_received(),
        state.packets_sent(),
        state.connections(),
        zxid,
        view.node_count()
    )
}
