//! The HTTP endpoint (`metricsProvider.httpHost`/`httpPort`): Prometheus `/metrics`,
//! and the health and command paths of `health.rs`. A small blocking HTTP server on its
//! own thread, off every hot path.

use super::stats::ServerState;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The most request bytes read before answering; a scrape's request is a few hundred.
const MAX_REQUEST_BYTES: usize = 8192;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Binds `addr` and serves `/metrics` until `stop` is set.
///
/// # Errors
/// When `addr` cannot be bound.
pub fn start(
    addr: SocketAddr,
    state: Arc<ServerState>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let t = std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((s, _)) => serve(s, &state),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(STOP_POLL)
                    }
                    Err(e) => {
                        eprintln!("ringkeeper: metrics endpoint accept failed: {e}");
                        std::thread::sleep(STOP_POLL);
                    }
                }
            }
        })?;
    Ok((bound, t))
}

fn serve(mut s: TcpStream, state: &Arc<ServerState>) {
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
    let req = String::from_utf8_lossy(&buf[..n]);
    let mut words = req.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let body_text = req.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let (status, ctype, body) =
        if let Some(a) = super::health::route(method, path, body_text, state) {
            a
        } else if method == "GET" && (path == "/metrics" || path == "/") {
            ("200 OK", "text/plain; version=0.0.4", render(state))
        } else {
            (
                "404 Not Found",
                "text/plain; version=0.0.4",
                "not found: try /metrics or /health\n".to_string(),
            )
        };
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The exposition: ZooKeeper-named gauges, then the stage histograms.
pub fn render(state: &ServerState) -> String {
    let mut out = String::new();
    let gauges: [(&str, &str, f64); 5] = [
        (
            "num_alive_connections",
            "Client connections",
            state.connections() as f64,
        ),
        (
            "packets_received",
            "Packets received from clients",
            state.packets_received() as f64,
        ),
        (
            "packets_sent",
            "Packets sent to clients",
            state.packets_sent() as f64,
        ),
        (
            "last_zxid",
            "The last committed zxid",
            state.seq.last_zxid.load(Ordering::Relaxed) as f64,
        ),
        (
            "global_sessions",
            "Live sessions",
            state.seq.sessions.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, help, v) in gauges {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
        ));
    }
    out.push_str(&state.seq.metrics.prometheus());
    out
}
