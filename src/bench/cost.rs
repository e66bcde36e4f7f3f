//! What the servers spend per operation: CPU time and context switches of every thread
//! of every server process, sampled from `/proc` at the start and the end of the
//! measured window.
//!
//! CPU time is read from `/proc/<pid>/task/<tid>/schedstat` (nanoseconds on the CPU),
//! or from `stat`'s utime + stime (clock ticks) where schedstat is missing. Context
//! switches come from each thread's `status` (voluntary: the thread blocked; involuntary:
//! it was preempted). These are steadier than wall-clock throughput on a shared,
//! noisy machine: a server's cost per operation does not depend on how busy the other
//! processes keep the CPUs.
//!
//! Server processes are named by pid, or found from the target addresses: the process
//! holding a listening socket on the target's port on this machine (through
//! `/proc/net/tcp{,6}` and each process's open descriptors).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

/// One thread's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreadSample {
    pub name: String,
    pub cpu_ns: u64,
    pub voluntary: u64,
    pub involuntary: u64,
}

/// Every thread of some processes at one moment, by (pid, tid).
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub threads: BTreeMap<(u32, u32), ThreadSample>,
}

/// What one thread (or one name's threads) spent over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spent {
    pub cpu_us: f64,
    pub voluntary: u64,
    pub involuntary: u64,
}

impl Spent {
    fn add(&mut self, o: &Spent) {
        self.cpu_us += o.cpu_us;
        self.voluntary += o.voluntary;
        self.involuntary += o.involuntary;
    }
}

/// What one server process spent over the window, in total and by thread name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerCost {
    pub pid: u32,
    pub total: Spent,
    pub by_thread: BTreeMap<String, Spent>,
}

/// What every server spent over the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cost {
    pub servers: Vec<ServerCost>,
}

impl Cost {
    pub fn total(&self) -> Spent {
        let mut t = Spent::default();
        for s in &self.servers {
            t.add(&s.total);
        }
        t
    }
}

fn read_thread(dir: &Path) -> Option<ThreadSample> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let cpu_ns = match std::fs::read_to_string(dir.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
    {
        Some(ns) => ns,
        None => {
            // utime and stime are fields 14 and 15 of stat (11 and 12 after the name).
            let ticks: u64 =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            // SAFETY: sysconf has no memory arguments.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            ticks * 1_000_000_000 / hz
        }
    };
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let mut t = ThreadSample {
        name,
        cpu_ns,
        ..ThreadSample::default()
    };
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("voluntary_ctxt_switches:") {
            t.voluntary = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
            t.involuntary = v.trim().parse().unwrap_or(0);
        }
    }
    Some(t)
}

/// Samples every thread of `pids` now. A process or thread that ends while it is read
/// is skipped.
pub fn sample(pids: &[u32]) -> Sample {
    let mut s = Sample::default();
    for &pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ts) = read_thread(&t.path()) {
                s.threads.insert((pid, tid), ts);
            }
        }
    }
    s
}

/// What each of `pids` spent between two samples. A thread born inside the window
/// counts from zero; one that ended inside it is lost (its last counters are gone with
/// it; short-lived helper threads only).
pub fn spent(pids: &[u32], before: &Sample, after: &Sample) -> Cost {
    let mut cost = Cost::default();
    for &pid in pids {
        let mut sc = ServerCost {
            pid,
            ..ServerCost::default()
        };
        for ((p, tid), a) in after.threads.range((pid, 0)..=(pid, u32::MAX)) {
            debug_assert_eq!(*p, pid);
            let b = before.threads.get(&(pid, *tid));
            let zero = ThreadSample::default();
            let b = b.unwrap_or(&zero);
            let d = Spent {
                cpu_us: a.cpu_ns.saturating_sub(b.cpu_ns) as f64 / 1000.0,
                voluntary: a.voluntary.saturating_sub(b.voluntary),
                involuntary: a.involuntary.saturating_sub(b.involuntary),
            };
            sc.total.add(&d);
            sc.by_thread.entry(a.name.clone()).or_default().add(&d);
        }
        cost.servers.push(sc);
    }
    cost
}

/// Inodes of the sockets listening on `port` (IPv4 and IPv6 tables).
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is "ADDR:PORT" in hex; state 0A is LISTEN; inode is field 9.
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if p == Some(port) && *state == "0A" {
                if let Ok(i) = inode.parse() {
                    out.push(i);
                }
            }
        }
    }
    out
}

/// The local process listening on each address's port, if one is found (a remote
/// server, or one in another network namespace, is not).
pub fn find_listeners(addrs: &[SocketAddr]) -> Vec<Option<u32>> {
    let wanted: Vec<Vec<u64>> = addrs.iter().map(|a| listening_inodes(a.port())).collect();
    let mut found = vec![None; addrs.len()];
    if wanted.iter().all(|w| w.is_empty()) {
        return found;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            for (i, w) in wanted.iter().enumerate() {
                if found[i].is_none() && w.contains(&inode) {
                    found[i] = Some(pid);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_costs_cpu_and_is_found_by_its_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let me = std::process::id();
        assert_eq!(find_listeners(&[addr]), vec![Some(me)]);
        let before = sample(&[me]);
        // Burn some CPU and block a few times on this thread.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::hint::black_box(x);
        let after = sample(&[me]);
        let c = spent(&[me], &before, &after);
        assert_eq!(c.servers.len(), 1);
        let t = c.total();
        assert!(t.cpu_us > 1000.0, "{t:?}");
        assert!(t.voluntary >= 5, "five sleeps block five times: {t:?}");
    }
}
