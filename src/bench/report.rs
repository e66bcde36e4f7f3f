//! Output: the human summary, one JSON line, the HdrHistogram percentile distribution
//! (.hgrm), the per-second timeline, and a self-contained HTML report with inline SVG.

use super::engine::RunStats;
use super::setup::code_name;
use hdrhistogram::Histogram;
use std::fmt::Write as _;

/// The percentiles every output reports.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("max", 100.0),
];

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The value at percentile `p` of `h`, `p` = 100 being the maximum.
pub fn pct(h: &Histogram<u64>, p: f64) -> u64 {
    if p >= 100.0 {
        h.max()
    } else {
        h.value_at_percentile(p)
    }
}

/// The open loop's send lag (`RunStats::send_lag`) at p99, p99.9 and its max, in ms;
/// none for a closed loop.
fn send_lag_ms(s: &RunStats) -> Option<[f64; 3]> {
    (!s.send_lag.is_empty()).then(|| [99.0, 99.9, 100.0].map(|p| ms(pct(&s.send_lag, p))))
}

/// Human-readable summary: throughput, latency percentiles, per-op lines, errors by name.
pub fn summary(label: &str, s: &RunStats) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "== {label}");
    let _ = writeln!(
        o,
        "throughput {:.0} ops/s  ({} answered in {:.1}s, {} errors, {} unanswered, {} disconnects)",
        s.ops_per_sec(),
        s.ops,
        s.window_s,
        s.error_total(),
        s.unanswered,
        s.disconnects
    );
    let _ = write!(o, "latency ms ");
    for (name, p) in PERCENTILES {
        let _ = write!(o, " {name} {:.3}", ms(pct(&s.hist, p)));
    }
    let _ = writeln!(o, "  mean {:.3}", s.hist.mean() / 1000.0);
    if let Some([p99, p999, max]) = send_lag_ms(s) {
        let _ = writeln!(
            o,
            "send lag ms  p99 {p99:.3} p99.9 {p999:.3} max {max:.3}  (how late requests left this client after their slots; in the latency above)"
        );
    }
    if s.per_op.len() > 1 {
        for (op, h) in &s.per_op {
            let _ = write!(o, "  {:<18} {:>9} ops", op.name(), h.len());
            for (name, p) in PERCENTILES {
                let _ = write!(o, " {name} {:.3}", ms(pct(h, p)));
            }
            let _ = writeln!(o);
        }
    }
    if !s.errors.is_empty() {
        let parts: Vec<_> = s
            .errors
            .iter()
            .map(|(c, n)| format!("{}={n}", code_name(*c)))
            .collect();
        let _ = writeln!(o, "errors     {}", parts.join(" "));
    }
    if s.watch_events > 0 {
        let _ = writeln!(o, "watch events {}", s.watch_events);
    }
    if let Some(c) = &s.server_cost {
        o.push_str(&cost_lines(c, s.ops));
    }
    if s.connect_failures > 0 {
        let _ = writeln!(o, "connect failures {} (after retries)", s.connect_failures);
    }
    if !s.reconnect.is_empty() || s.still_disconnected > 0 {
        let _ = write!(
            o,
            "reconnect  {} resumed, {} expired (new session), {} still disconnected; ms",
            s.reconnects, s.expired, s.still_disconnected
        );
        for (name, p) in PERCENTILES {
            let _ = write!(o, " {name} {:.3}", ms(pct(&s.reconnect, p)));
        }
        let _ = writeln!(o);
    }
    o
}

/// A value per operation, or 0 without operations.
fn per_op(v: f64, ops: u64) -> f64 {
    if ops == 0 {
        0.0
    } else {
        v / ops as f64
    }
}

/// The servers' cost per operation, summed and per server, and per thread name.
pub fn cost_lines(c: &super::cost::Cost, ops: u64) -> String {
    let mut o = String::new();
    let t = c.total();
    let _ = writeln!(
        o,
        "server cost per op: {:.2} us CPU, {:.3} voluntary + {:.3} involuntary context switches ({} server{})",
        per_op(t.cpu_us, ops),
        per_op(t.voluntary as f64, ops),
        per_op(t.involuntary as f64, ops),
        c.servers.len(),
        if c.servers.len() == 1 { "" } else { "s" }
    );
    for sc in &c.servers {
        let _ = write!(
            o,
            "  pid {:<8} {:>8.2} us CPU {:>7.3} vcs {:>7.3} ivcs |",
            sc.pid,
            per_op(sc.total.cpu_us, ops),
            per_op(sc.total.voluntary as f64, ops),
            per_op(sc.total.involuntary as f64, ops)
        );
        for (name, sp) in &sc.by_thread {
            if sp.cpu_us == 0.0 && sp.voluntary == 0 && sp.involuntary == 0 {
                continue;
            }
            let _ = write!(
                o,
                " {name} {:.2}/{:.2}",
                per_op(sp.cpu_us, ops),
                per_op(sp.voluntary as f64, ops)
            );
        }
        let _ = writeln!(o);
    }
    o
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// One JSON object on one line. `meta` holds extra string fields (target, workload...).
pub fn json_line(meta: &[(&str, String)], s: &RunStats) -> String {
    let mut o = String::from("{");
    for (k, v) in meta {
        let _ = write!(o, "{}:{},", json_str(k), json_str(v));
    }
    let _ = write!(
        o,
        "\"ops_per_sec\":{:.1},\"ops\":{},\"window_s\":{:.3},\"errors_total\":{},\"unanswered\":{},\"disconnects\":{}",
        s.ops_per_sec(),
        s.ops,
        s.window_s,
        s.error_total(),
        s.unanswered,
        s.disconnects
    );
    for (name, p) in PERCENTILES {
        let key = format!("{}_ms", name.replace('.', "_"));
        let _ = write!(o, ",\"{key}\":{:.3}", ms(pct(&s.hist, p)));
    }
    let _ = write!(o, ",\"mean_ms\":{:.3}", s.hist.mean() / 1000.0);
    if let Some([p99, p999, max]) = send_lag_ms(s) {
        let _ = write!(
            o,
            ",\"send_lag_p99_ms\":{p99:.3},\"send_lag_p99_9_ms\":{p999:.3},\"send_lag_max_ms\":{max:.3}"
        );
    }
    let _ = write!(
        o,
        ",\"connect_failures\":{},\"reconnects\":{},\"expired\":{},\"still_disconnected\":{},\"reconnect_p50_ms\":{:.3},\"reconnect_max_ms\":{:.3}",
        s.connect_failures,
        s.reconnects,
        s.expired,
        s.still_disconnected,
        ms(pct(&s.reconnect, 50.0)),
        ms(pct(&s.reconnect, 100.0))
    );
    let errs: Vec<_> = s
        .errors
        .iter()
        .map(|(c, n)| format!("{}:{n}", json_str(&code_name(*c))))
        .collect();
    let _ = write!(o, ",\"errors\":{{{}}}", errs.join(","));
    let ops: Vec<_> = s
        .per_op
        .iter()
        .map(|(op, h)| {
            format!(
                "{}:{{\"ops\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
                json_str(op.name()),
                h.len(),
                ms(pct(h, 50.0)),
                ms(pct(h, 99.0))
            )
        })
        .collect();
    let _ = write!(o, ",\"per_op\":{{{}}}", ops.join(","));
    let tl: Vec<_> = s.timeline.iter().map(|v| v.to_string()).collect();
    let _ = write!(o, ",\"timeline\":[{}]", tl.join(","));
    let p99: Vec<_> = (0..s.timeline.len())
        .map(|i| match s.timeline_lat.get(i).filter(|h| !h.is_empty()) {
            Some(h) => format!("{:.3}", h.value_at_quantile(0.99) as f64 / 1000.0),
            None => "null".into(),
        })
        .collect();
    let _ = write!(o, ",\"timeline_p99_ms\":[{}]", p99.join(","));
    let _ = write!(o, ",\"window_start_unix_ms\":{}", s.window_start_unix_ms);
    if s.watch_events > 0 {
        let _ = write!(o, ",\"watch_events\":{}", s.watch_events);
    }
    if let Some(c) = &s.server_cost {
        let t = c.total();
        let _ = write!(
            o,
            ",\"server_cpu_us_per_op\":{:.3},\"server_vcs_per_op\":{:.4},\"server_ivcs_per_op\":{:.4}",
            per_op(t.cpu_us, s.ops),
            per_op(t.voluntary as f64, s.ops),
            per_op(t.involuntary as f64, s.ops)
        );
        let servers: Vec<String> = c
            .servers
            .iter()
            .map(|sc| {
                let threads: Vec<String> = sc
                    .by_thread
                    .iter()
                    .map(|(n, sp)| {
                        format!(
                            "{}:{{\"cpu_us_per_op\":{:.3},\"vcs_per_op\":{:.4},\"ivcs_per_op\":{:.4}}}",
                            json_str(n),
                            per_op(sp.cpu_us, s.ops),
                            per_op(sp.voluntary as f64, s.ops),
                            per_op(sp.involuntary as f64, s.ops)
                        )
                    })
                    .collect();
                format!(
                    "{{\"pid\":{},\"cpu_us_per_op\":{:.3},\"vcs_per_op\":{:.4},\"ivcs_per_op\":{:.4},\"threads\":{{{}}}}}",
                    sc.pid,
                    per_op(sc.total.cpu_us, s.ops),
                    per_op(sc.total.voluntary as f64, s.ops),
                    per_op(sc.total.involuntary as f64, s.ops),
                    threads.join(",")
                )
            })
            .collect();
        let _ = write!(o, ",\"server_cost\":[{}]", servers.join(","));
    }
    o.push('}');
    o
}

/// The HdrHistogram percentile distribution, in milliseconds, in the layout of
/// `outputPercentileDistribution` so HdrHistogram's plotter reads it.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - q))
        } else {
            format!("{:>14}", "")
        };
        let _ = writeln!(
            o,
            "{:>12.3} {:>14.12} {:>10} {inv}",
            ms(v.value_iterated_to()),
            q,
            total,
        );
    }
    let _ = writeln!(
        o,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        o,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        ms(h.max()),
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        // HdrHistogram's sub-bucket count: 2 * 10^sigfig rounded up to a power of two.
        (2 * 10u64.pow(h.sigfig() as u32)).next_power_of_two()
    );
    o
}

/// Per-second throughput and latency of the measured window as CSV: each second's
/// wall-clock start (ms since the Unix epoch, to line it up with server logs), answered
/// requests, and their p50, p99 and max latency in ms (empty for a second with none).
pub fn timeline_csv(s: &RunStats) -> String {
    let mut o = String::from("second,unix_ms,ops,p50_ms,p99_ms,max_ms\n");
    for (i, v) in s.timeline.iter().enumerate() {
        let unix_ms = if s.window_start_unix_ms > 0 {
            (s.window_start_unix_ms + 1000 * i as u64).to_string()
        } else {
            String::new()
        };
        let _ = write!(o, "{i},{unix_ms},{v}");
        match s.timeline_lat.get(i).filter(|h| !h.is_empty()) {
            Some(h) => {
                let ms = |us: u64| us as f64 / 1000.0;
                let _ = writeln!(
                    o,
                    ",{:.3},{:.3},{:.3}",
                    ms(h.value_at_quantile(0.5)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.max())
                );
            }
            None => o.push_str(",,,\n"),
        }
    }
    o
}

/// The gaps of at least `min_us` between consecutive successful replies (all sessions
/// merged), as CSV `at_ms,gap_ms`: when the gap began (ms since the run's start) and how
/// long it lasted. A `# start_unix_ms=` line places the run on the wall clock, a
/// `# acks=` line says how many replies were seen and when the first and last came.
pub fn ack_gaps_csv(s: &RunStats, min_us: u64) -> String {
    let mut t = s.acks.clone();
    t.sort_unstable();
    let mut o = format!("# start_unix_ms={}\n", s.start_unix_ms);
    let (first, last) = (
        t.first().copied().unwrap_or(0),
        t.last().copied().unwrap_or(0),
    );
    let _ = writeln!(
        o,
        "# acks={} first_ms={:.3} last_ms={:.3}",
        t.len(),
        first as f64 / 1000.0,
        last as f64 / 1000.0
    );
    o.push_str("at_ms,gap_ms\n");
    for w in t.windows(2) {
        let gap = w[1] - w[0];
        if gap >= min_us {
            let _ = writeln!(o, "{:.3},{:.3}", w[0] as f64 / 1000.0, gap as f64 / 1000.0);
        }
    }
    o
}

/// Points of the percentile curve: (1/(1-q), latency ms), q up to 99.9999%.
fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    if h.is_empty() {
        return pts;
    }
    let mut x = 1.0f64;
    while x <= 1e6 {
        let q = 1.0 - 1.0 / x;
        pts.push((x, ms(h.value_at_quantile(q))));
        x *= 1.25;
    }
    pts
}

const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// SVG of latency by percentile, x on a log scale of 1/(1-q) (the HdrHistogram plot).
fn svg_percentiles(series: &[(&str, &RunStats)]) -> String {
    let (w, h, l, b) = (720.0, 360.0, 60.0, 40.0);
    let curves: Vec<_> = series.iter().map(|(n, s)| (*n, curve(&s.hist))).collect();
    let ymax = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(0.001f64, f64::max)
        * 1.1;
    let xs = |x: f64| l + (x.log10() / 6.0) * (w - l - 20.0);
    let ys = |y: f64| (h - b) - (y / ymax) * (h - b - 20.0);
    let mut o = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">");
    let _ = write!(
        o,
        "<rect x=\"{l}\" y=\"20\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        w - l - 20.0,
        h - b - 20.0
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = xs(10f64.powi(i as i32));
        let _ = write!(o, "<line x1=\"{x:.1}\" y1=\"20\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>", h - b, h - b + 15.0);
    }
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = ys(v);
        let _ = write!(o, "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>", w - 20.0, l - 5.0, y + 4.0);
    }
    let _ = write!(o, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile (log scale of 1/(1-p))</text><text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">latency ms</text>", (w + l) / 2.0, h - 5.0, h / 2.0, h / 2.0);
    for (i, (name, c)) in curves.iter().enumerate() {
        let pts: Vec<_> = c
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", xs(*x), ys(*y)))
            .collect();
        let color = COLORS[i % COLORS.len()];
        let _ = write!(
            o,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>",
            l + 10.0,
            35.0 + 14.0 * i as f64,
            esc(name)
        );
    }
    o.push_str("</svg>");
    o
}

/// SVG of answered ops per second over the measured window.
fn svg_timeline(series: &[(&str, &RunStats)]) -> String {
    let (w, h, l, b) = (720.0, 260.0, 70.0, 40.0);
    let n = series
        .iter()
        .map(|(_, s)| s.timeline.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let ymax = series
        .iter()
        .flat_map(|(_, s)| s.timeline.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let xs = |i: f64| l + i / (n - 1) as f64 * (w - l - 20.0);
    let ys = |y: f64| (h - b) - (y / ymax) * (h - b - 20.0);
    let mut o = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">");
    let _ = write!(
        o,
        "<rect x=\"{l}\" y=\"20\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        w - l - 20.0,
        h - b - 20.0
    );
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = ys(v);
        let _ = write!(o, "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>", w - 20.0, l - 5.0, y + 4.0);
    }
    let _ = write!(o, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">second of the measured window</text><text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">ops/s</text>", (w + l) / 2.0, h - 5.0, h / 2.0, h / 2.0);
    let _ = write!(
        o,
        "<text x=\"{l}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        h - b + 15.0,
        w - 20.0,
        h - b + 15.0,
        n - 1
    );
    for (i, (name, s)) in series.iter().enumerate() {
        let pts: Vec<_> = s
            .timeline
            .iter()
            .enumerate()
            .map(|(k, v)| format!("{:.1},{:.1}", xs(k as f64), ys(*v as f64)))
            .collect();
        let color = COLORS[i % COLORS.len()];
        let _ = write!(
            o,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>",
            l + 10.0,
            35.0 + 14.0 * i as f64,
            esc(name)
        );
    }
    o.push_str("</svg>");
    o
}

/// A self-contained HTML page (no scripts, no external resources) with the summary of
/// each series, the percentile curve and the throughput timeline.
pub fn html(title: &str, notes: &[(&str, String)], series: &[(&str, &RunStats)]) -> String {
    let mut o = String::new();
    let _ = write!(o, "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}pre{{background:#f6f6f6;padding:1em}}</style></head><body><h1>{}</h1>", esc(title), esc(title));
    if !notes.is_empty() {
        o.push_str("<table>");
        for (k, v) in notes {
            let _ = write!(o, "<tr><th style=\"text-align:left\">{}</th><td style=\"text-align:left\">{}</td></tr>", esc(k), esc(v));
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Summary</h2><table><tr><th>series</th><th>ops/s</th>");
    for (name, _) in PERCENTILES {
        let _ = write!(o, "<th>{name} ms</th>");
    }
    o.push_str("<th>server CPU us/op</th><th>server cs/op (vol+invol)</th><th>errors</th></tr>");
    for (name, s) in series {
        let _ = write!(
            o,
            "<tr><td style=\"text-align:left\">{}</td><td>{:.0}</td>",
            esc(name),
            s.ops_per_sec()
        );
        for (_, p) in PERCENTILES {
            let _ = write!(o, "<td>{:.3}</td>", ms(pct(&s.hist, p)));
        }
        match &s.server_cost {
            Some(c) => {
                let t = c.total();
                let _ = write!(
                    o,
                    "<td>{:.2}</td><td>{:.3}</td>",
                    per_op(t.cpu_us, s.ops),
                    per_op((t.voluntary + t.involuntary) as f64, s.ops)
                );
            }
            None => o.push_str("<td>-</td><td>-</td>"),
        }
        let errs: Vec<_> = s
            .errors
            .iter()
            .map(|(c, n)| format!("{}={n}", code_name(*c)))
            .collect();
        let _ = write!(
            o,
            "<td style=\"text-align:left\">{}</td></tr>",
            esc(&errs.join(" "))
        );
    }
    o.push_str("</table>");
    let costs: Vec<String> = series
        .iter()
        .filter_map(|(name, s)| {
            s.server_cost
                .as_ref()
                .map(|c| format!("{name}\n{}", cost_lines(c, s.ops)))
        })
        .collect();
    if !costs.is_empty() {
        let _ = write!(
            o,
            "<h2>Server cost per operation</h2><pre>{}</pre>",
            esc(&costs.join("\n"))
        );
    }
    o.push_str("<h2>Latency by percentile</h2>");
    o.push_str(&svg_percentiles(series));
    o.push_str("<h2>Throughput per second</h2>");
    o.push_str(&svg_timeline(series));
    for (name, s) in series {
        let _ = write!(
            o,
            "<h3>{}</h3><pre>{}</pre>",
            esc(name),
            esc(&summary(name, s))
        );
    }
    o.push_str("</body></html>\n");
    o
}
