//! The server's HTTP endpoints, each on its own listener and thread, off every hot
//! path: the Prometheus `/metrics` (`metricsProvider.httpHost`/`httpPort`) and
//! ZooKeeper's AdminServer (`admin.serverAddress`/`admin.serverPort`, commands under
//! `admin.commandURL`, see `admin.rs`). A small blocking HTTP/1.1 server: one request
//! per connection, answered with `Connection: close`.
//!
//! Both listeners also answer the health, readiness and operation paths of
//! `health.rs` (`/health*`, `POST /commands/drain` ...), tried first. Adding an endpoint:
//! give [`Endpoint`] a variant and [`route`] its paths.

use super::stats::ServerState;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The most request bytes read before answering; a scrape's request is a few hundred.
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);
/// How long a scrape or a command may wait for the shards' pictures.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener serves.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// Prometheus text exposition on `/metrics` (and `/`).
    Metrics,
    /// The AdminServer, its commands under this URL (`/commands`).
    Admin { command_url: String },
}

/// A parsed request.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
}

/// An answer.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Binds `addr` and serves `endpoint` until `stop` is set.
///
/// # Errors
/// When `addr` cannot be bound.
pub fn start(
    addr: SocketAddr,
    endpoint: Endpoint,
    state: Arc<ServerState>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let name = match endpoint {
        Endpoint::Metrics => "metrics-http",
        Endpoint::Admin { .. } => "admin-http",
    };
    let t = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((s, _)) => serve(s, &endpoint, &state),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(STOP_POLL)
                    }
                    Err(e) => {
                        eprintln!("ringkeeper: {name} accept failed: {e}");
                        std::thread::sleep(STOP_POLL);
                    }
                }
            }
        })?;
    Ok((bound, t))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the request head; `None` when it is not HTTP.
pub fn parse(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let target = first.next()?;
    first.next().filter(|v| v.starts_with("HTTP/"))?;
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Request {
        method,
        path: percent_decode(path),
        query,
        headers,
    })
}

fn serve(mut s: TcpStream, endpoint: &Endpoint, state: &Arc<ServerState>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => return,
        }
    }
    // A POST's body (the command paths): what Content-Length says, within the bound.
    if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let want = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let total = (end + 4 + want).min(buf.len());
        while n < total {
            match s.read(&mut buf[n..total]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    }
    let text = String::from_utf8_lossy(&buf[..n]);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let resp = match parse(head) {
        Some(req) => route(&req, body, endpoint, state),
        None => Response {
            status: 400,
            content_type: "text/plain",
            body: "bad request\n".into(),
        },
    };
    let reason = match resp.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let _ = write!(
        s,
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        resp.status,
        resp.content_type,
        resp.body.len(),
        resp.body
    );
}

/// Answers one request (and its `body`) on `endpoint`.
pub fn route(req: &Request, body: &str, endpoint: &Endpoint, state: &Arc<ServerState>) -> Response {
    if let Some((status, content_type, body)) =
        super::health::route(&req.method, &req.path, body, state)
    {
        let status = status
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(500);
        return Response {
            status,
            content_type,
            body,
        };
    }
    let not_found = |hint: &str| Response {
        status: 404,
        content_type: "text/plain",
        body: format!("not found: try {hint}\n"),
    };
    if req.method != "GET" && req.method != "POST" {
        return Response {
            status: 405,
            content_type: "text/plain",
            body: "only GET and POST\n".into(),
        };
    }
    match endpoint {
        Endpoint::Metrics => {
            if req.path == "/metrics" || req.path == "/" {
                Response {
                    status: 200,
                    content_type: "text/plain; version=0.0.4",
                    body: render(state),
                }
            } else {
                not_found("/metrics")
            }
        }
        Endpoint::Admin { command_url } => {
            let base = command_url.trim_end_matches('/');
            if req.path == base || req.path == format!("{base}/") {
                let links: String = super::admin::primary_names()
                    .iter()
                    .map(|c| format!("<a href=\"{base}/{c}\">{c}</a>\n<br/>\n"))
                    .collect();
                return Response {
                    status: 200,
                    content_type: "text/html",
                    body: links,
                };
            }
            let Some(name) = req.path.strip_prefix(&format!("{base}/")) else {
                return not_found(base);
            };
            let a = super::admin::run(
                name.trim_end_matches('/'),
                &req.query,
                req.headers.get("authorization").map(String::as_str),
                state,
            );
            Response {
                status: a.status,
                content_type: "application/json",
                body: a.body.render() + "\n",
            }
        }
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn help(name: &str) -> &'static str {
    match name {
        "znode_count" => "Number of znodes",
        "watch_count" => "Number of watches",
        "global_sessions" => "Number of global sessions",
        "local_sessions" => "Number of local sessions of this server",
        "num_alive_connections" => "Number of client connections",
        "packets_received" => "Packets received from clients",
        "packets_sent" => "Packets sent to clients",
        "approximate_data_size" => "Bytes of data and paths in the tree",
        "ephemerals_count" => "Number of ephemeral znodes",
        _ => "ZooKeeper metric (see docs/compat.md)",
    }
}

/// Names ZooKeeper's Prometheus provider exports as counters (the others are gauges).
fn is_counter(name: &str) -> bool {
    crate::fourlw::MNTR_COUNTERS.contains(&name)
        || crate::fourlw::MNTR_COUNTERS_SINCE_39.contains(&name)
}

/// The exposition as ZooKeeper's Prometheus provider names it: every `mntr` number
/// under its `mntr` name without `zk_` (summaries as `<name>{quantile=..}`,
/// `<name>_sum`, `<name>_count`), then RingKeeper's stage histograms
/// (`ringkeeper_latency_seconds{stage=..}`) and counters.
pub fn render(state: &ServerState) -> String {
    let info = state.inspect(INSPECT_TIMEOUT, |st, view, zxid| {
        super::fourlw::monitor_info(st, view, zxid)
    });
    let mut out = String::new();
    if let Some(m) = info {
        for key in crate::fourlw::MNTR_GAUGES
            .iter()
            .chain(crate::fourlw::MNTR_COUNTERS)
            .chain(crate::fourlw::MNTR_COUNTERS_SINCE_39)
            .map(|k| k.to_string())
            .chain(m.values.iter().map(|(k, _)| k.clone()))
            .collect::<std::collections::BTreeSet<_>>()
        {
            let v = match m.value(&key) {
                crate::fourlw::MetricValue::Int(n) => n as f64,
                crate::fourlw::MetricValue::Float(f) => f,
                crate::fourlw::MetricValue::Text(_) => continue,
            };
            let kind = if is_counter(&key) { "counter" } else { "gauge" };
            out.push_str(&format!(
                "# HELP {key} {}\n# TYPE {key} {kind}\n{key} {v}\n",
                help(&key)
            ));
        }
        let basic = crate::fourlw::MNTR_SUMMARIES
            .iter()
            .chain(crate::fourlw::MNTR_SUMMARIES_SINCE_39)
            .map(|n| (n, false));
        let advanced = crate::fourlw::MNTR_PERCENTILE_SUMMARIES
            .iter()
            .map(|n| (n, true));
        for (name, pct) in basic.chain(advanced) {
            let s = m.summary(name);
            out.push_str(&format!(
                "# HELP {name} ZooKeeper summary (see docs/compat.md)\n# TYPE {name} summary\n"
            ));
            if pct {
                for (q, v) in [("0.5", s.percentiles[0]), ("0.99", s.percentiles[2])] {
                    out.push_str(&format!("{name}{{quantile=\"{q}\"}} {v}\n"));
                }
            }
            out.push_str(&format!("{name}_sum {}\n{name}_count {}\n", s.sum, s.count));
        }
        // Summary sets, labelled by `key` as ZooKeeper's provider does.
        for (i, name) in ["read_per_namespace", "write_per_namespace"]
            .iter()
            .enumerate()
        {
            out.push_str(&format!(
                "# HELP {name} Bytes per request by top namespace\n# TYPE {name} summary\n"
            ));
            for (ns, r, w) in &m.namespaces {
                let s = if i == 0 { r } else { w };
                let ns = label_value(ns);
                out.push_str(&format!(
                    "{name}_sum{{key=\"{ns}\"}} {}\n{name}_count{{key=\"{ns}\"}} {}\n",
                    s.sum, s.count
                ));
            }
        }
    }
    out.push_str(&state.seq.metrics.prometheus());
    out
}
