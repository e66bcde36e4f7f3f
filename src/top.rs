//! `ringkeeper top`: a live view of a cluster's load, like `top`, from every server of a
//! connect string, refreshed every second: each server's role, ops/s, write and read
//! p99, connections; then the sessions, client addresses and path prefixes that drive
//! the load (ops/s, bytes in and out, watches fired), merged across servers. `--once
//! --json` prints the same as one JSON document for scripts.
//!
//! It reads the four-letter words `mntr` and `load` (both must be in
//! `4lw.commands.whitelist`). Rates are the difference between two samples.

use crate::server::json::Json;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long one server may take to answer a word.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Rows per table in the terminal.
const ROWS: usize = 10;

/// Sends a four-letter word and reads the whole answer.
pub fn four_letter(hostport: &str, word: &str) -> std::io::Result<String> {
    four_letter_within(hostport, word, TIMEOUT)
}

/// [`four_letter`], with `timeout` for the connect and for each read.
pub fn four_letter_within(
    hostport: &str,
    word: &str,
    timeout: Duration,
) -> std::io::Result<String> {
    let addr = hostport
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{hostport} resolves to nothing")))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(word.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// One key's counters in a `load` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Row {
    pub ops: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub watches: u64,
}

/// One server's sample.
#[derive(Debug, Clone, Default)]
pub struct ServerSample {
    pub server: String,
    pub error: Option<String>,
    pub mntr: BTreeMap<String, String>,
    /// (kind, key) -> counters; kind is `session`, `client` or `path`.
    pub load: HashMap<(String, String), Row>,
}

impl ServerSample {
    fn num(&self, k: &str) -> f64 {
        self.mntr.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    }
}

/// Parses the `load` word's lines.
pub fn parse_load(text: &str) -> HashMap<(String, String), Row> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() == 7 && matches!(f[0], "session" | "client" | "path") {
            let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
            m.insert(
                (f[0].to_string(), f[1].to_string()),
                Row {
                    ops: n(2),
                    bytes_in: n(4),
                    bytes_out: n(5),
                    watches: n(6),
                },
            );
        }
    }
    m
}

/// Samples one server.
pub fn sample(server: &str) -> ServerSample {
    let mut s = ServerSample {
        server: server.to_string(),
        ..Default::default()
    };
    match four_letter(server, "mntr") {
        Ok(text) if text.starts_with("zk_") => {
            s.mntr = text
                .lines()
                .filter_map(|l| l.split_once('\t'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
        Ok(text) => s.error = Some(text.trim().to_string()),
        Err(e) => s.error = Some(e.to_string()),
    }
    if s.error.is_none() {
        match four_letter(server, "load") {
            Ok(text) if text.starts_with("ops\t") => s.load = parse_load(&text),
            Ok(text) => s.error = Some(text.trim().to_string()),
            Err(e) => s.error = Some(e.to_string()),
        }
    }
    s
}

/// Two samples of the cluster, `dt` apart, as rates.
#[derive(Debug, Clone)]
pub struct View {
    pub servers: Vec<ServerView>,
    /// kind -> rows (key, ops/s, totals), heaviest first.
    pub tops: BTreeMap<String, Vec<(String, f64, Row)>>,
}

#[derive(Debug, Clone)]
pub struct ServerView {
    pub server: String,
    pub error: Option<String>,
    pub state: String,
    pub ops_per_sec: f64,
    pub write_p99_us: f64,
    pub read_p99_us: f64,
    pub connections: f64,
    pub znodes: f64,
}

/// The view between samples `a` (earlier; `None`: rates from zero) and `b`.
pub fn view(a: Option<&[ServerSample]>, b: &[ServerSample], dt: Duration) -> View {
    let secs = dt.as_secs_f64().max(1e-3);
    let before = |i: usize| a.and_then(|a| a.get(i));
    let servers = b
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let prev = before(i).map_or(0.0, |p| p.num("zk_packets_received"));
            let now = s.num("zk_packets_received");
            ServerView {
                server: s.server.clone(),
                error: s.error.clone(),
                state: s
                    .mntr
                    .get("zk_server_state")
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                ops_per_sec: if now >= prev {
                    (now - prev) / secs
                } else {
                    0.0
                },
                write_p99_us: s.num("zk_rk_write_total_p99_us"),
                read_p99_us: s.num("zk_rk_read_total_p99_us"),
                connections: s.num("zk_num_alive_connections"),
                znodes: s.num("zk_znode_count"),
            }
        })
        .collect();
    let mut sum_b: HashMap<(String, String), Row> = HashMap::new();
    let mut sum_a: HashMap<(String, String), Row> = HashMap::new();
    for (sums, samples) in [(&mut sum_b, Some(b)), (&mut sum_a, a)] {
        for s in samples.into_iter().flatten() {
            for (k, r) in &s.load {
                let e = sums.entry(k.clone()).or_default();
                e.ops += r.ops;
                e.bytes_in += r.bytes_in;
                e.bytes_out += r.bytes_out;
                e.watches += r.watches;
            }
        }
    }
    let mut tops: BTreeMap<String, Vec<(String, f64, Row)>> = BTreeMap::new();
    for kind in ["session", "client", "path"] {
        tops.insert(kind.to_string(), Vec::new());
    }
    for ((kind, key), r) in sum_b {
        let p = sum_a
            .get(&(kind.clone(), key.clone()))
            .copied()
            .unwrap_or_default();
        let rate = r.ops.saturating_sub(p.ops) as f64 / secs;
        tops.entry(kind).or_default().push((key, rate, r));
    }
    for v in tops.values_mut() {
        v.sort_by(|x, y| {
            y.1.total_cmp(&x.1)
                .then(y.2.ops.cmp(&x.2.ops))
                .then(x.0.cmp(&y.0))
        });
    }
    View { servers, tops }
}

impl View {
    pub fn json(&self) -> Json {
        let servers = self
            .servers
            .iter()
            .map(|s| {
                Json::obj([
                    ("server", Json::str(s.server.clone())),
                    ("error", s.error.clone().map_or(Json::Null, Json::Str)),
                    ("state", Json::str(s.state.clone())),
                    ("ops_per_sec", Json::Float(s.ops_per_sec)),
                    ("write_p99_us", Json::Float(s.write_p99_us)),
                    ("read_p99_us", Json::Float(s.read_p99_us)),
                    ("connections", Json::Float(s.connections)),
                    ("znodes", Json::Float(s.znodes)),
                ])
            })
            .collect();
        let mut pairs = vec![("servers".to_string(), Json::Arr(servers))];
        for (kind, rows) in &self.tops {
            pairs.push((
                format!("{kind}s"),
                Json::Arr(
                    rows.iter()
                        .map(|(k, rate, r)| {
                            Json::obj([
                                ("key", Json::str(k.clone())),
                                ("ops_per_sec", Json::Float(*rate)),
                                ("ops", Json::Int(r.ops as i64)),
                                ("bytes_in", Json::Int(r.bytes_in as i64)),
                                ("bytes_out", Json::Int(r.bytes_out as i64)),
                                ("watches", Json::Int(r.watches as i64)),
                            ])
                        })
                        .collect(),
                ),
            ));
        }
        Json::Obj(pairs)
    }

    /// The terminal screen.
    pub fn screen(&self, connect: &str) -> String {
        let mut out = String::new();
        let total: f64 = self.servers.iter().map(|s| s.ops_per_sec).sum();
        out.push_str(&format!(
            "ringkeeper top - {connect} - {:.0} ops/s\n\n",
            total
        ));
        out.push_str(&format!(
            "{:<24} {:<11} {:>9} {:>11} {:>11} {:>6} {:>9}\n",
            "SERVER", "STATE", "OPS/S", "WRITE p99", "READ p99", "CONNS", "ZNODES"
        ));
        for s in &self.servers {
            match &s.error {
                Some(e) => out.push_str(&format!("{:<24} error: {e}\n", s.server)),
                None => out.push_str(&format!(
                    "{:<24} {:<11} {:>9.0} {:>9.0}us {:>9.0}us {:>6.0} {:>9.0}\n",
                    s.server,
                    s.state,
                    s.ops_per_sec,
                    s.write_p99_us,
                    s.read_p99_us,
                    s.connections,
                    s.znodes
                )),
            }
        }
        for (kind, title) in [
            ("session", "TOP SESSIONS"),
            ("client", "TOP CLIENTS"),
            ("path", "TOP PATHS"),
        ] {
            out.push_str(&format!(
                "\n{:<40} {:>9} {:>12} {:>12} {:>12} {:>8}\n",
                title, "OPS/S", "OPS", "BYTES IN", "BYTES OUT", "WATCHES"
            ));
            for (k, rate, r) in self.tops.get(kind).into_iter().flatten().take(ROWS) {
                out.push_str(&format!(
                    "{:<40} {:>9.0} {:>12} {:>12} {:>12} {:>8}\n",
                    k, rate, r.ops, r.bytes_in, r.bytes_out, r.watches
                ));
            }
        }
        out
    }
}

/// The servers of a connect string (`host:port,host:port[/chroot]`).
pub fn servers(connect: &str) -> Vec<String> {
    let hosts = connect.split('/').next().unwrap_or("");
    hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.contains(':') {
                h.to_string()
            } else {
                format!("{h}:2181")
            }
        })
        .collect()
}

fn sample_all(servers: &[String]) -> Vec<ServerSample> {
    let handles: Vec<_> = servers
        .iter()
        .cloned()
        .map(|s| std::thread::spawn(move || sample(&s)))
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect()
}

/// Runs `ringkeeper top`. `iterations`: screens to draw (`None`: until interrupted).
pub fn run(connect: &str, interval: Duration, once: bool, json: bool, iterations: Option<u64>) {
    let servers = servers(connect);
    let mut prev = sample_all(&servers);
    let mut at = Instant::now();
    let mut drawn = 0u64;
    loop {
        std::thread::sleep(interval);
        let now = sample_all(&servers);
        let dt = at.elapsed();
        at = Instant::now();
        let v = view(Some(&prev), &now, dt);
        if once {
            if json {
                println!("{}", v.json().render());
            } else {
                print!("{}", v.screen(connect));
            }
            return;
        }
        // Home and clear, then the screen.
        print!("\x1b[H\x1b[2J{}", v.screen(connect));
        let _ = std::io::stdout().flush();
        prev = now;
        drawn += 1;
        if iterations.is_some_and(|n| drawn >= n) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings_and_load_lines_parse() {
        assert_eq!(servers("a:1,b, c:3/chroot"), vec!["a:1", "b:2181", "c:3"]);
        let m = parse_load(
            "ops\t5\nsession\t0x1\t5\t0\t50\t60\t1\npath\t/a/b\t3\t0\t30\t0\t0\nbad line\n",
        );
        assert_eq!(m[&("session".into(), "0x1".into())].bytes_out, 60);
        assert_eq!(m[&("path".into(), "/a/b".into())].ops, 3);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn rates_are_differences_over_the_interval() {
        let mut a = ServerSample::default();
        a.mntr.insert("zk_packets_received".into(), "100".into());
        a.load.insert(
            ("path".into(), "/x".into()),
            Row {
                ops: 10,
                ..Default::default()
            },
        );
        let mut b = a.clone();
        b.mntr.insert("zk_packets_received".into(), "300".into());
        b.load.insert(
            ("path".into(), "/x".into()),
            Row {
                ops: 110,
                ..Default::default()
            },
        );
        b.load.insert(
            ("path".into(), "/y".into()),
            Row {
                ops: 20,
                ..Default::default()
            },
        );
        let v = view(Some(&[a]), &[b], Duration::from_secs(2));
        assert_eq!(v.servers[0].ops_per_sec, 100.0);
        let paths = &v.tops["path"];
        assert_eq!(paths[0].0, "/x");
        assert_eq!(paths[0].1, 50.0);
        assert_eq!(paths[1].1, 10.0);
        assert!(v.json().render().contains("\"paths\":[{\"key\":\"/x\""));
    }
}
