//! Health a machine can read, and the operator's commands on leadership and clients:
//! the `hlth` four-letter word, the HTTP paths `/health`, `/health/ready`,
//! `/health/live`, `/health/safe-to-stop`, ZooKeeper's `shed_connections` command and a
//! gradual `drain`, and `rqld`/`ydld` (see docs/replication.md, "Operating an
//! ensemble").
//!
//! Everything here reads `ServerState` (the core publishes its health view every peer
//! tick) or hands a command to the core loop or the shards; no protocol decisions.

use super::shard::ToShard;
use super::stats::ServerState;
use crate::fourlw::Mode;
use crate::sequencer::LeadershipCmd;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a readiness probe or a rolling-restart script wants to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `leader`, `follower`, `observer`, `standalone` or `looking`.
    pub role: &'static str,
    /// Serving clients with a quorum behind it: a leader of an established epoch, a
    /// learner up to date with one, or a standalone server.
    pub serving: bool,
    /// A learner up to date with its leader (a leader is synced with itself).
    pub synced: bool,
    /// Stopping this server now keeps a quorum of synced voters (a leader hands off
    /// first, so it counts itself out too). Never true standalone, nor when the view is
    /// unknown (looking, or no view from the leader yet).
    pub safe_to_stop: bool,
    /// Voters synced with the leader, leader included (0: unknown).
    pub synced_voters: usize,
    pub voters: usize,
    pub quorum_size: usize,
    pub transferring: bool,
    pub draining: bool,
}

impl Readiness {
    /// Ready for clients: serving with a quorum and not draining.
    pub fn ready(&self) -> bool {
        self.serving && !self.draining
    }
}

/// The readiness of this server now.
pub fn readiness(state: &ServerState) -> Readiness {
    let mode = state.mode();
    let role = match mode {
        Some(Mode::Standalone) => "standalone",
        Some(Mode::Leader) => "leader",
        Some(Mode::Follower) => "follower",
        Some(Mode::Observer) => "observer",
        Some(Mode::ReadOnly) => "read-only",
        None => "looking",
    };
    let draining = state.draining.load(Ordering::Relaxed);
    let Some(h) = state.health() else {
        let standalone = mode == Some(Mode::Standalone);
        return Readiness {
            role,
            serving: standalone,
            synced: standalone,
            safe_to_stop: false,
            synced_voters: 0,
            voters: 1,
            quorum_size: 1,
            transferring: false,
            draining,
        };
    };
    let me_synced = usize::from(h.voter && h.serving);
    let others = h.synced_voters.len().saturating_sub(me_synced);
    Readiness {
        role,
        serving: h.serving && mode.is_some(),
        synced: h.serving,
        safe_to_stop: h.serving && !h.synced_voters.is_empty() && others >= h.quorum,
        synced_voters: h.synced_voters.len(),
        voters: h.voters,
        quorum_size: h.quorum,
        transferring: h.transferring,
        draining,
    }
}

/// `key=value` lines, one per field (the `hlth` answer and the HTTP body).
pub fn format(r: &Readiness) -> String {
    format!(
        "status={}\nrole={}\nready={}\nsynced={}\nsafe_to_stop={}\nsynced_voters={}\nvoters={}\nquorum_size={}\ntransferring={}\ndraining={}\n",
        if r.serving { "serving" } else { "not_serving" },
        r.role,
        r.ready(),
        r.synced,
        r.safe_to_stop,
        r.synced_voters,
        r.voters,
        r.quorum_size,
        r.transferring,
        r.draining,
    )
}

/// The `hlth` answer.
pub fn report(state: &ServerState) -> String {
    format(&readiness(state))
}

/// `rqld`: ask the leader to hand leadership to this server (ClickHouse Keeper's
/// answers).
pub fn request_leadership(state: &ServerState) -> String {
    match state.mode() {
        Some(Mode::Leader) => "This instance is already the leader.\n".into(),
        Some(Mode::Follower) if state.leadership(LeadershipCmd::Request) => {
            "Sent leadership request to leader.\n".into()
        }
        _ => "Failed to send leadership request to leader.\n".into(),
    }
}

/// `ydld`: the leader hands leadership to its most up-to-date synced follower.
pub fn yield_leadership(state: &ServerState) -> String {
    match state.mode() {
        Some(Mode::Leader) if state.leadership(LeadershipCmd::Yield(None)) => {
            "Sent yield leadership request to leader.\n".into()
        }
        Some(Mode::Leader) => "Failed to send yield leadership request to leader.\n".into(),
        _ => "This instance is not the leader.\n".into(),
    }
}

/// Closes `percentage` percent of each shard's client connections (rounded up, so
/// that 1% of one connection sheds it), as ZooKeeper's `shed_connections` admin command
/// does; returns how many were closed. Clients reconnect to another server of their
/// connect string (or to this one), keeping their sessions.
pub fn shed(state: &ServerState, percentage: u8) -> usize {
    let (tx, rx) = std::sync::mpsc::channel();
    let inboxes = state.shard_inboxes();
    for b in inboxes {
        b.push_unbounded(ToShard::Shed {
            percentage,
            reply: tx.clone(),
        });
    }
    drop(tx);
    let mut shed = 0;
    for _ in inboxes {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(n) => shed += n,
            Err(_) => break,
        }
    }
    shed
}

/// Sheds every client connection over `seconds` in ten steps (each closes an equal
/// share of what is left), so that sessions move elsewhere gradually before a stop.
/// Readiness says not ready from the start. Returns at once.
pub fn drain(state: std::sync::Arc<ServerState>, seconds: u64) {
    state.draining.store(true, Ordering::Relaxed);
    let step = Duration::from_millis(seconds.saturating_mul(1000) / 10);
    let _ = std::thread::Builder::new()
        .name("drain".into())
        .spawn(move || {
            for k in 0..10u8 {
                if !state.draining.load(Ordering::Relaxed) {
                    return;
                }
                // Step k closes 1/(10-k) of what is left: ten even shares, the last all.
                let pct = (100 / (10 - u16::from(k))) as u8;
                let n = shed(&state, pct);
                eprintln!(
                    "ringkeeper: drain: step {} of 10 closed {n} connections",
                    k + 1
                );
                std::thread::sleep(step);
            }
        });
}

/// The value of `"key": <number>` in a small JSON object, if present.
fn json_number(body: &str, key: &str) -> Option<i64> {
    let at = body.find(&format!("\"{key}\""))?;
    let rest = body[at + key.len() + 2..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// An HTTP answer: status line text, content type, body.
pub type Answer = (&'static str, &'static str, String);

fn status(ok: bool) -> &'static str {
    if ok {
        "200 OK"
    } else {
        "503 Service Unavailable"
    }
}

/// The health and command paths, or `None` for a path that is not ours.
pub fn route(
    method: &str,
    path: &str,
    body: &str,
    state: &std::sync::Arc<ServerState>,
) -> Option<Answer> {
    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    let path = path.split('?').next().unwrap_or(path);
    let bad = |what: &str| {
        Some((
            "400 Bad Request",
            JSON,
            format!("{{\"error\": \"{what}\"}}\n"),
        ))
    };
    match (method, path) {
        ("GET", "/health") => {
            let r = readiness(state);
            Some((status(r.serving), TEXT, format(&r)))
        }
        ("GET", "/health/ready") => {
            let r = readiness(state);
            Some((status(r.ready()), TEXT, format(&r)))
        }
        ("GET", "/health/live") => Some(("200 OK", TEXT, "alive\n".into())),
        ("GET", "/health/safe-to-stop") => {
            let r = readiness(state);
            Some((status(r.safe_to_stop), TEXT, format(&r)))
        }
        ("POST", "/commands/shed_connections" | "/commands/shed") => {
            let Some(p) = json_number(body, "percentage") else {
                return bad("Missing required field: percentage");
            };
            if !(0..=100).contains(&p) {
                return bad("Percentage must be between 0 and 100");
            }
            let n = if p > 0 { shed(state, p as u8) } else { 0 };
            eprintln!("ringkeeper: shed {n} connections ({p}%)");
            Some((
                "200 OK",
                JSON,
                format!("{{\"connections_shed\": {n}, \"percentage_requested\": {p}, \"command\": \"shed_connections\", \"error\": null}}\n"),
            ))
        }
        ("POST", "/commands/drain") => {
            let seconds = json_number(body, "seconds").unwrap_or(10);
            if !(0..=3600).contains(&seconds) {
                return bad("seconds must be between 0 and 3600");
            }
            drain(state.clone(), seconds as u64);
            Some((
                "200 OK",
                JSON,
                format!("{{\"draining\": true, \"seconds\": {seconds}, \"command\": \"drain\", \"error\": null}}\n"),
            ))
        }
        ("POST", "/commands/undrain") => {
            state.draining.store(false, Ordering::Relaxed);
            Some((
                "200 OK",
                JSON,
                "{\"draining\": false, \"command\": \"undrain\", \"error\": null}\n".into(),
            ))
        }
        ("POST", "/commands/ydld") => Some(("200 OK", TEXT, yield_leadership(state))),
        ("POST", "/commands/rqld") => Some(("200 OK", TEXT, request_leadership(state))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers() {
        assert_eq!(json_number("{\"percentage\": 50}", "percentage"), Some(50));
        assert_eq!(json_number("{\"percentage\":-3}", "percentage"), Some(-3));
        assert_eq!(json_number("{\"percentage\": \"x\"}", "percentage"), None);
        assert_eq!(json_number("{}", "percentage"), None);
        assert_eq!(json_number("{\"percentage\"", "percentage"), None);
    }
}
