//! The server's HTTP endpoints, each on its own listener and thread, off every hot
//! path: the Prometheus `/metrics` (`metricsProvider.httpHost`/`httpPort`) and
//! ZooKeeper's AdminServer (`admin.serverAddress`/`admin.serverPort`, commands under
//! `admin.commandURL`, see `admin.rs`). A small blocking HTTP/1.1 server: one request
//! per connection, answered with `Connection: close`.
//!
//! Both listeners also answer the health, readiness and operation paths of
//! `health.rs` (`/health*`, `POST /commands/drain` ...), tried first. Adding an endpoint:
//! give [`Endpoint`] a variant and [`route`] its paths.
//!
//! A scrape of `/metrics` costs the event loops nothing: it is rendered on this thread
//! from what the loops and the core keep anyway (relaxed atomics: the lock-free stage
//! histograms and counters, the numbers each shard stores once per loop pass, the
//! namespace summaries each shard swaps in on its tick; see `stats::Published`). It
//! never wakes, messages or waits for a loop, and takes no lock a loop waits on (a
//! shard only `try_lock`s its namespace slot). Until this was so, each scrape queued a
//! job on the first shard, which made every shard publish a picture of all its
//! connections and watched paths and then merged the histograms on that shard's loop.
//! The rendered text is kept for [`METRICS_CACHE`], so scrapers polling faster than
//! that (several Prometheus servers, a dashboard's refresh) cost one render a second.
//! The AdminServer's commands still run on the first shard's loop (they read its view
//! of the tree), as the four-letter words do.

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
/// How long a rendered `/metrics` text is served again before it is rendered anew: its
/// numbers are then at most this much older than the request.
pub const METRICS_CACHE: Duration = Duration::from_secs(1);

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
            let mut cache = MetricsCache::default();
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((s, _)) => serve(s, &endpoint, &state, &mut cache),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        wait_readable(&listener, STOP_POLL)
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

/// Waits until `listener` has a connection to accept, or `timeout` passed (to look at
/// the stop flag): a scrape is answered at once, not on the next poll.
fn wait_readable(listener: &TcpListener, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; the fd is the listener's,
    // open while `listener` lives.
    let r = unsafe { libc::poll(&mut fds, 1, timeout.as_millis() as libc::c_int) };
    if r < 0 {
        // EINTR or worse: do not spin.
        std::thread::sleep(timeout);
    }
}

/// The last rendered `/metrics` text and when it was rendered (one per listener thread,
/// so no lock).
#[derive(Default)]
pub struct MetricsCache(Option<(std::time::Instant, String)>);

impl MetricsCache {
    /// The text to serve: the cached one while younger than [`METRICS_CACHE`].
    pub fn get(&mut self, state: &ServerState) -> &str {
        let fresh = self
            .0
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < METRICS_CACHE);
        if !fresh {
            // Reuse the buffer: the text is about the same size each time.
            let mut buf = self.0.take().map(|(_, b)| b).unwrap_or_default();
            buf.clear();
            render_into(state, &mut buf);
            self.0 = Some((std::time::Instant::now(), buf));
        }
        self.0.as_ref().map_or("", |(_, b)| b.as_str())
    }
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

fn serve(
    mut s: TcpStream,
    endpoint: &Endpoint,
    state: &Arc<ServerState>,
    cache: &mut MetricsCache,
) {
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
        Some(req) => route(&req, body, endpoint, state, cache),
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
pub fn route(
    req: &Request,
    body: &str,
    endpoint: &Endpoint,
    state: &Arc<ServerState>,
    cache: &mut MetricsCache,
) -> Response {
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
                    body: cache.get(state).to_string(),
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
/// (`ringkeeper_latency_seconds{stage=..}`) and counters. Reads only what the loops
/// publish (see the module header): safe to call on any thread, at any rate.
pub fn render(state: &ServerState) -> String {
    let mut out = String::new();
    render_into(state, &mut out);
    out
}

fn render_into(state: &ServerState, out: &mut String) {
    use std::fmt::Write as _;
    let m = super::fourlw::monitor(state, super::fourlw::LoopNumbers::published(state));
    let mut keys: Vec<&str> = crate::fourlw::MNTR_GAUGES
        .iter()
        .chain(crate::fourlw::MNTR_COUNTERS)
        .chain(crate::fourlw::MNTR_COUNTERS_SINCE_39)
        .copied()
        .chain(m.values.iter().map(|(k, _)| k.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let v = match m.value(key) {
            crate::fourlw::MetricValue::Int(n) => n as f64,
            crate::fourlw::MetricValue::Float(f) => f,
            crate::fourlw::MetricValue::Text(_) => continue,
        };
        let kind = if is_counter(key) { "counter" } else { "gauge" };
        let _ = write!(
            out,
            "# HELP {key} {}\n# TYPE {key} {kind}\n{key} {v}\n",
            help(key)
        );
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
        let _ = write!(
            out,
            "# HELP {name} ZooKeeper summary (see docs/compat.md)\n# TYPE {name} summary\n"
        );
        if pct {
            for (q, v) in [("0.5", s.percentiles[0]), ("0.99", s.percentiles[2])] {
                let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v}");
            }
        }
        let _ = write!(out, "{name}_sum {}\n{name}_count {}\n", s.sum, s.count);
    }
    // Summary sets, labelled by `key` as ZooKeeper's provider does.
    for (i, name) in ["read_per_namespace", "write_per_namespace"]
        .iter()
        .enumerate()
    {
        let _ = write!(
            out,
            "# HELP {name} Bytes per request by top namespace\n# TYPE {name} summary\n"
        );
        for (ns, r, w) in &m.namespaces {
            let s = if i == 0 { r } else { w };
            let ns = label_value(ns);
            let _ = write!(
                out,
                "{name}_sum{{key=\"{ns}\"}} {}\n{name}_count{{key=\"{ns}\"}} {}\n",
                s.sum, s.count
            );
        }
    }
    state.seq.metrics.prometheus_into(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::load::ByteSummary;
    use crate::server::stats::SequencerStats;
    use std::time::Instant;

    /// A server state with two shards and no loop behind it: nothing would answer a
    /// message to a shard.
    fn state() -> ServerState {
        let settings =
            crate::server::ServerConfig::standalone("127.0.0.1:0".parse().unwrap(), 2).settings;
        ServerState::new(settings, 2, Arc::new(SequencerStats::default()))
    }

    #[test]
    fn metrics_render_from_what_the_loops_published_without_asking_them() {
        let st = state();
        assert!(st.shard_inboxes().is_empty(), "no loop to ask");
        st.publish_counts(&crate::tree::DataTree::new().counts(), 7);
        st.publish_watches(0, 3);
        st.publish_watches(1, 4);
        st.publish_outstanding(1, 2);
        let b = |count, sum| ByteSummary {
            count,
            sum,
            min: 1,
            max: sum,
        };
        st.publish_namespaces(0, &vec![("app".into(), [b(2, 10), b(1, 5)])]);
        st.publish_namespaces(1, &vec![("app".into(), [b(1, 4), b(0, 0)])]);
        st.seq
            .metrics
            .total
            .record(std::time::Duration::from_micros(1500));
        let text = render(&st);
        for line in [
            "znode_count 5\n",
            "watch_count 7\n",
            "outstanding_requests 2\n",
            "read_per_namespace_sum{key=\"app\"} 14\n",
            "read_per_namespace_count{key=\"app\"} 3\n",
            "write_per_namespace_count{key=\"app\"} 1\n",
            "ringkeeper_latency_seconds_count{stage=\"write_total\"} 1\n",
            "updatelatency_count 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn the_metrics_cache_serves_a_young_text_and_renders_an_old_one() {
        let st = state();
        let mut cache = MetricsCache(Some((
            Instant::now() + Duration::from_secs(3600),
            "young".to_string(),
        )));
        assert_eq!(cache.get(&st), "young");
        cache.0 = Some((Instant::now() - 2 * METRICS_CACHE, "old".to_string()));
        assert!(cache.get(&st).contains("# TYPE znode_count gauge"));
    }
}
