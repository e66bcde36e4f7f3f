//! `ringkeeper`: the server. With no arguments, a standalone server on 127.0.0.1:2181;
//! with a zoo.cfg path, that configuration, as ZooKeeper's QuorumPeerMain.

use ringkeeper::cli::{self, Subcommand};
use ringkeeper::config::{Config, PeerType};
use ringkeeper::fourlw::ConfInfo;
use ringkeeper::prep::PrepConfig;
use ringkeeper::sequencer::{EnsembleConfig, Membership, SnapshotConfig};
use ringkeeper::server::core_loop::{EnsembleSetup, StorageSetup};
use ringkeeper::server::replication::{Member, ReplConfig};
use ringkeeper::server::{self, ServerConfig};
use ringkeeper::storage::{LogConfig, OsDisk, SyncMode};
use ringkeeper::zab::Ensemble;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;

/// See Cargo.toml for why (measured with zkbench ab against the glibc build).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often empty containers and expired TTL nodes are looked for, unless zoo.cfg sets
/// `znode.container.checkIntervalMs` (ZooKeeper's default).
const CONTAINER_CHECK_INTERVAL_MS: i64 = 60_000;

fn server_config(cfg: &Config) -> Result<ServerConfig, String> {
    let ca = cfg.client_address();
    let addr: SocketAddr = (ca.host.as_str(), ca.port)
        .to_socket_addrs()
        .map_err(|e| format!("clientPortAddress {ca}: {e}"))?
        .next()
        .ok_or_else(|| format!("clientPortAddress {ca} resolves to nothing"))?;
    let mut sc = ServerConfig::standalone(addr, cfg.shard_count());
    // TLS (docs/security.md): the stores are read now, so a bad one stops the start.
    if cfg.secure_client_port.is_some() || cfg.client_port_unification {
        let tls = ringkeeper::tls::client_settings(&cfg.system_properties)
            .map_err(|e| format!("TLS on the client port: {e}"))?;
        sc.tls = Some(Arc::new(tls));
        if cfg.client_port_unification {
            sc.client_wire = ringkeeper::tls::Wire::Either;
        }
    }
    if let Some(port) = cfg.secure_client_port {
        if cfg.has_plain_client_port() {
            let host = cfg
                .secure_client_port_address
                .as_deref()
                .unwrap_or("0.0.0.0");
            sc.secure_client_addr =
                Some(resolve(host, port).map_err(|e| format!("secureClientPortAddress {e}"))?);
        } else {
            // TLS only: the one client listener (`client_address` is the secure one).
            sc.client_wire = ringkeeper::tls::Wire::Tls;
        }
    }
    let tick = cfg.tick_time_ms as i64;
    sc.max_client_cnxns_per_ip = cfg.max_client_cnxns as usize;
    sc.max_cnxns = cfg.max_cnxns as usize;
    sc.core.tick_ms = tick;
    // Session ids carry the server id in their top byte (as ZooKeeper's do), so ids
    // chosen by different servers of an ensemble never collide. ZooKeeper takes myid
    // modulo 256 the same way.
    sc.core.server_id = cfg.my_id.unwrap_or(0) as u8;
    sc.core.min_session_timeout_ms = cfg.min_session_timeout_ms as i32;
    sc.core.max_session_timeout_ms = cfg.max_session_timeout_ms as i32;
    sc.core.read_only = cfg.read_only_mode;
    sc.core.local_sessions = cfg.local_sessions_enabled;
    sc.core.local_upgrading = cfg.local_sessions_upgrading_enabled;
    sc.core.prep = PrepConfig {
        extended_types_enabled: cfg.extended_types_enabled,
        max_data_len: cfg.jute_maxbuffer as usize,
        skip_acl: cfg.skip_acl,
        reconfig_enabled: cfg.reconfig_enabled,
        // ZooKeeper registers the x509 provider with TLS (configureSSLAuth).
        x509_acls: sc.tls.is_some(),
        ..PrepConfig::default()
    };
    let prop = |k: &str| cfg.system_properties.get(&format!("zookeeper.{k}"));
    sc.core.container_check_interval_ms = prop("znode.container.checkIntervalMs")
        .and_then(|v| v.parse().ok())
        .filter(|v: &i64| *v > 0)
        .unwrap_or(CONTAINER_CHECK_INTERVAL_MS);
    // maxPerMinute spread over the checks of one minute, at least one per check.
    if let Some(per_min) = prop("znode.container.maxPerMinute").and_then(|v| v.parse::<i64>().ok())
    {
        let checks_per_min = (60_000 / sc.core.container_check_interval_ms).max(1);
        sc.core.container_max_per_check = (per_min / checks_per_min).max(1) as usize;
    }
    let mut log = LogConfig::new(&cfg.data_log_dir);
    log.segment_bytes = cfg.log_segment_size;
    log.sync_interval = std::time::Duration::from_micros(cfg.log_sync_interval_us);
    if cfg.log_fdatasync {
        log.sync = SyncMode::Fdatasync;
    }
    if !cfg.force_sync {
        eprintln!(
            "ringkeeper: WARNING: forceSync=no: the transaction log is never synced; \
             acknowledged writes can be lost on power loss"
        );
        log.sync = SyncMode::None;
    }
    sc.storage = Some(StorageSetup {
        disk: Arc::new(OsDisk),
        log,
        position: Default::default(),
        data_dir: cfg.data_dir.clone(),
        snap_retain_count: (cfg.snap_retain_count as usize).max(3),
        snapshot_write_rate: cfg.snapshot_write_rate_mb.saturating_mul(1_000_000),
    });
    sc.core.snapshots = Some(SnapshotConfig {
        snap_count: cfg.snap_count,
        snap_size_bytes: u64::try_from(cfg.snap_size_limit_kb)
            .unwrap_or(0)
            .saturating_mul(1024),
        purge_interval_ms: cfg.purge_interval_hours as i64 * 3_600_000,
        diff_size_factor: cfg.snapshot_size_factor.0,
        // The snapshot points differ between servers (ZooKeeper's randomization).
        seed: u64::from(cfg.my_id.unwrap_or(0) as u32) ^ std::process::id() as u64,
    });
    // The Prometheus endpoint, when zoo.cfg asks for ZooKeeper's Prometheus provider.
    if cfg
        .metrics_provider_class
        .as_deref()
        .is_some_and(|c| c.contains("Prometheus"))
    {
        let host = cfg
            .metrics_provider
            .get("httpHost")
            .map_or("0.0.0.0", |h| h.as_str());
        let port: u16 = match cfg.metrics_provider.get("httpPort").map(|p| p.parse()) {
            None => 7000,
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(format!("metricsProvider.httpPort: {e}")),
        };
        sc.metrics_addr = Some(
            (host, port)
                .to_socket_addrs()
                .map_err(|e| format!("metricsProvider.httpHost {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("metricsProvider.httpHost {host} resolves to nothing"))?,
        );
    }
    // The AdminServer: ZooKeeper's keys and defaults, but loopback unless told
    // otherwise (docs/compat.md).
    let admin_on = cfg
        .admin
        .get("enableServer")
        .is_none_or(|v| v.trim().eq_ignore_ascii_case("true"));
    if admin_on {
        let host = cfg
            .admin
            .get("serverAddress")
            .map_or("127.0.0.1", |h| h.as_str());
        let port: u16 = match cfg.admin.get("serverPort").map(|p| p.trim().parse()) {
            None => 8080,
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(format!("admin.serverPort: {e}")),
        };
        let url = cfg
            .admin
            .get("commandURL")
            .map_or("/commands", |u| u.as_str())
            .to_string();
        if !url.starts_with('/') {
            return Err(format!("admin.commandURL {url:?} must start with /"));
        }
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("admin.serverAddress {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("admin.serverAddress {host} resolves to nothing"))?;
        sc.admin = Some((addr, url));
    }
    sc.settings.ops = ringkeeper::server::observe::OpsSettings {
        load_attribution: cfg.load_attribution,
        slow_threshold: (cfg.slow_request_threshold_ms > 0)
            .then(|| std::time::Duration::from_millis(cfg.slow_request_threshold_ms)),
        slow_per_second: cfg.slow_request_log_per_second,
    };
    sc.settings.max_frame = cfg.jute_maxbuffer as usize;
    sc.settings.super_digest = cfg.super_digest.clone();
    sc.settings.skip_acl = cfg.skip_acl;
    sc.settings.global_outstanding_limit = cfg.global_outstanding_limit as usize;
    sc.settings.conn_throttle = cfg.conn_throttle.clone();
    sc.settings.large_requests = cfg.large_requests;
    if cfg.audit_enable {
        let log = ringkeeper::server::audit::AuditLog::open(&cfg.audit_log_file)
            .map_err(|e| format!("audit.logFile {}: {e}", cfg.audit_log_file.display()))?;
        sc.settings.audit = Some(std::sync::Arc::new(log));
    }
    sc.settings.sessionless_timeout =
        std::time::Duration::from_millis(cfg.sessionless_cnxn_timeout_ms);
    sc.settings.bulk_children = cfg.bulk_read_children;
    sc.settings.fsync_warning_ms = cfg.fsync_warning_threshold_ms;
    // Client SASL (docs/security.md): the JAAS file is read and checked now, so a
    // malformed one stops the server with its line instead of failing logins later.
    let (sasl, sasl_warnings) =
        ringkeeper::sasl::SaslSettings::from_properties(&cfg.system_properties)?;
    for w in sasl_warnings {
        eprintln!("ringkeeper: warning: {w}");
    }
    if sasl.provider {
        ringkeeper::acl::register_sasl_provider();
    }
    if let Some(login) = &sasl.login {
        eprintln!(
            "ringkeeper: SASL: DIGEST-MD5 with {} user(s) from section {} of {}",
            login.users.len(),
            login.section,
            login.jaas_file.display()
        );
    }
    sc.settings.sasl = std::sync::Arc::new(sasl);
    sc.settings.fourlw_whitelist = cfg.four_letter_whitelist.clone();
    sc.settings.conf = ConfInfo {
        client_port: addr.port(),
        secure_client_port: -1,
        data_dir: cfg.data_dir.display().to_string(),
        data_dir_size: 0,
        data_log_dir: cfg.data_log_dir.display().to_string(),
        data_log_size: 0,
        tick_time_ms: cfg.tick_time_ms,
        max_client_cnxns: cfg.max_client_cnxns,
        min_session_timeout_ms: cfg.min_session_timeout_ms,
        max_session_timeout_ms: cfg.max_session_timeout_ms,
        client_port_listen_backlog: -1,
        server_id: cfg.my_id.unwrap_or(0),
        quorum: None,
    };
    Ok(sc)
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolves to nothing"))
}

/// The ensemble from the `server.N` lines. Ports bind on this server's own line's host,
/// as ZooKeeper binds `quorumListenOnAllIPs=false`.
fn repl_config(cfg: &Config) -> Result<ReplConfig, String> {
    let my_id = cfg.my_id.ok_or("an ensemble needs myid in dataDir")?;
    let mut members = BTreeMap::new();
    let (mut voters, mut observers) = (Vec::new(), Vec::new());
    for (id, s) in &cfg.servers {
        members.insert(
            *id,
            Member {
                quorum: resolve(&s.host, s.quorum_port)?,
                election: resolve(&s.host, s.election_port)?,
            },
        );
        match s.peer_type {
            PeerType::Participant => voters.push(*id),
            PeerType::Observer => observers.push(*id),
        }
    }
    Ok(ReplConfig {
        my_id,
        ensemble: Ensemble::new(voters, observers),
        members,
        data_dir: cfg.data_dir.clone(),
        log_dir: cfg.data_log_dir.clone(),
        tick_ms: cfg.tick_time_ms as u64,
        init_limit: cfg.init_limit as u64,
        sync_limit: cfg.sync_limit as u64,
        recovered_zxid: 0,
        snapshot_zxid: None,
        // Test-only: a lower limit makes a leader reach the end of its epoch's zxids
        // (and renew the epoch in place) after a few writes instead of 4 billion.
        max_counter: std::env::var("RINGKEEPER_TEST_MAX_ZXID_COUNTER")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX),
    })
}

/// Blocks SIGINT and SIGTERM in this thread and every thread it starts, so that only
/// `wait_for_signal` receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: the sigset is initialised by sigemptyset before use, and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is an initialised sigset; sigwait writes the signal number.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// `ringkeeper data check|dump`: snapshots in `dir`, the log in `--log-dir` (default
/// `dir`), read without changing anything.
fn data_command(action: &cli::DataAction) -> ExitCode {
    use ringkeeper::datadir;
    use ringkeeper::storage::open::ReaderSource;
    use ringkeeper::storage::OsDisk;
    let log_dir = match action {
        cli::DataAction::Check { dir, log_dir } | cli::DataAction::Dump { dir, log_dir } => {
            log_dir.as_ref().unwrap_or(dir)
        }
        cli::DataAction::ImportZookeeper {
            src,
            dst,
            log_dir,
            trust_empty_snapshot,
        } => return import_zookeeper(src, log_dir.as_deref(), dst, *trust_empty_snapshot),
        cli::DataAction::ExportZookeeper { src, dst, log_dir } => {
            return export_zookeeper(src, log_dir.as_deref(), dst)
        }
    };
    let mut source = match ReaderSource::open(Arc::new(OsDisk), log_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringkeeper: {e}");
            return ExitCode::from(1);
        }
    };
    match action {
        cli::DataAction::Check { dir, .. } => match datadir::check(&OsDisk, dir, Some(&mut source))
        {
            Ok(r) => {
                print!("{}", r.text);
                if r.ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("ringkeeper: {}: {e}", dir.display());
                ExitCode::from(2)
            }
        },
        cli::DataAction::Dump { dir, .. } => match datadir::dump(&OsDisk, dir, Some(&mut source)) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringkeeper: {e}");
                ExitCode::from(1)
            }
        },
        cli::DataAction::ImportZookeeper { .. } | cli::DataAction::ExportZookeeper { .. } => {
            unreachable!("handled above")
        }
    }
}

/// `ringkeeper data import-zookeeper SRC DST`.
fn import_zookeeper(
    src: &std::path::Path,
    src_log: Option<&std::path::Path>,
    dst: &std::path::Path,
    trust_empty_snapshot: bool,
) -> ExitCode {
    use ringkeeper::zkfiles::import;
    let started = std::time::Instant::now();
    let opts = import::Options {
        trust_empty_snapshot,
    };
    match import::import_offline(src, src_log, dst, opts) {
        Ok(imp) => {
            for n in &imp.notes {
                eprintln!("ringkeeper: import: {n}");
            }
            println!(
                "imported {} into {} in {:.3} s: {}",
                src.display(),
                dst.display(),
                started.elapsed().as_secs_f64(),
                imp.summary()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringkeeper: cannot import ZooKeeper data, nothing written: {e}");
            ExitCode::from(1)
        }
    }
}

/// `ringkeeper data export-zookeeper SRC DST`.
fn export_zookeeper(
    src: &std::path::Path,
    src_log: Option<&std::path::Path>,
    dst: &std::path::Path,
) -> ExitCode {
    let started = std::time::Instant::now();
    match ringkeeper::zkfiles::export::export_offline(src, src_log, dst) {
        Ok(x) => {
            println!(
                "exported {} to {} in {:.3} s: {} znodes, {} sessions through zxid {:#x} in {} \
                 ({} bytes, ZooKeeper digest {}), acceptedEpoch {}, currentEpoch {}",
                src.display(),
                dst.display(),
                started.elapsed().as_secs_f64(),
                x.written.nodes,
                x.written.sessions,
                x.zxid,
                x.snapshot.display(),
                x.written.bytes,
                x.written.digest,
                x.accepted_epoch,
                x.current_epoch
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringkeeper: cannot export, nothing written: {e}");
            ExitCode::from(1)
        }
    }
}

/// `ringkeeper backup ...` and `ringkeeper backup verify DIR`.
fn backup_command(args: &cli::BackupArgs) -> ExitCode {
    use ringkeeper::backup::{self, DirTarget};
    if let Some(cli::BackupAction::Verify { dir }) = &args.action {
        let target = match DirTarget::open(dir) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("ringkeeper: {e}");
                return ExitCode::from(2);
            }
        };
        return match backup::verify(&target, &std::env::temp_dir()) {
            Ok(r) => {
                print!("{}", r.text);
                if r.ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("ringkeeper: {e}");
                ExitCode::from(2)
            }
        };
    }
    let mut from_cfg = None;
    let (data_dir, log_dir) = match (&args.config, &args.data_dir) {
        (Some(cfg), None) => match Config::load(cfg) {
            Ok((c, _)) => {
                from_cfg = c.client_port.map(|p| {
                    let host = c.client_port_address.as_deref().unwrap_or("127.0.0.1");
                    let host = if host == "0.0.0.0" || host == "::" {
                        "127.0.0.1"
                    } else {
                        host
                    };
                    if host.contains(':') {
                        format!("[{host}]:{p}")
                    } else {
                        format!("{host}:{p}")
                    }
                });
                (
                    c.data_dir.clone(),
                    args.log_dir.clone().unwrap_or(c.data_log_dir),
                )
            }
            Err(e) => {
                eprintln!("ringkeeper: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(d)) => (d.clone(), args.log_dir.clone().unwrap_or_else(|| d.clone())),
        _ => {
            eprintln!("ringkeeper: backup needs the server's zoo.cfg or --data-dir (one of them)");
            return ExitCode::from(2);
        }
    };
    let Some(to) = &args.to else {
        eprintln!("ringkeeper: backup needs --to DIR");
        return ExitCode::from(2);
    };
    let server = match (args.offline, args.server.clone().or(from_cfg)) {
        (true, _) => None,
        (false, Some(s)) => Some(s),
        (false, None) => {
            eprintln!(
                "ringkeeper: backup needs the server's client address to learn its committed \
                 zxid (--server HOST:PORT, or a zoo.cfg with clientPort), or --offline for a \
                 stopped server's directories"
            );
            return ExitCode::from(2);
        }
    };
    let target = match DirTarget::create(to) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ringkeeper: {}: {e}", to.display());
            return ExitCode::from(1);
        }
    };
    let signals = block_signals();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if !args.once {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sig = wait_for_signal(&signals);
            eprintln!("ringkeeper: backup: signal {sig} received, stopping after this pass");
            stop.store(true, std::sync::atomic::Ordering::Release);
        });
    }
    eprintln!(
        "ringkeeper: backup of {} (log {}) to {}",
        data_dir.display(),
        log_dir.display(),
        to.display()
    );
    match &server {
        Some(s) => eprintln!("ringkeeper: backup: up to the committed zxid of {s} (srvr)"),
        None => eprintln!(
            "ringkeeper: backup: offline: everything the log holds (an ensemble member's last \
             txns may be uncommitted proposals)"
        ),
    }
    let mut last = None;
    loop {
        let pass = match &server {
            Some(s) => backup::committed_zxid(s).and_then(|c| {
                backup::backup_pass(
                    &data_dir,
                    &log_dir,
                    &target,
                    &std::env::temp_dir(),
                    Some(c),
                    args.keep_snapshots,
                )
            }),
            None => backup::backup_pass(
                &data_dir,
                &log_dir,
                &target,
                &std::env::temp_dir(),
                None,
                args.keep_snapshots,
            ),
        };
        match pass {
            Ok(r) => {
                if !r.removed.is_empty() {
                    eprintln!(
                        "ringkeeper: backup: retention (--keep-snapshots {}) removed {}",
                        args.keep_snapshots,
                        r.removed.join(", ")
                    );
                }
                if r.snapshots_added + r.segments_added > 0 || last.is_none() {
                    eprintln!(
                        "ringkeeper: backup: +{} snapshots, +{} segments ({} bytes), through zxid {:#x}",
                        r.snapshots_added, r.segments_added, r.bytes, r.last_zxid
                    );
                }
                last = Some(r.last_zxid);
            }
            Err(e) => {
                eprintln!("ringkeeper: backup pass failed: {e}");
                if args.once {
                    return ExitCode::from(1);
                }
            }
        }
        if args.once {
            println!("{:#x}", last.unwrap_or(0));
            return ExitCode::SUCCESS;
        }
        // Sleep in short steps so that a signal ends the loop promptly.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(args.interval_ms);
        while std::time::Instant::now() < until {
            if stop.load(std::sync::atomic::Ordering::Acquire) {
                return ExitCode::SUCCESS;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            return ExitCode::SUCCESS;
        }
    }
}

/// `ringkeeper restore --from DIR (--to-zxid Z | --to-time T | --latest) DST`.
fn restore_command(
    from: &std::path::Path,
    to_zxid: Option<i64>,
    to_time: Option<&str>,
    latest: bool,
    dst: &std::path::Path,
) -> ExitCode {
    use ringkeeper::backup::{self, DirTarget, Point};
    let point = match (to_zxid, to_time, latest) {
        (Some(z), None, false) => Point::Zxid(z),
        (None, Some(t), false) => match backup::parse_time(t) {
            Ok(ms) => Point::Time(ms),
            Err(e) => {
                eprintln!("ringkeeper: --to-time {e}");
                return ExitCode::from(2);
            }
        },
        (None, None, true) => Point::Latest,
        _ => {
            eprintln!("ringkeeper: restore needs one of --to-zxid, --to-time, --latest");
            return ExitCode::from(2);
        }
    };
    let target = match DirTarget::open(from) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ringkeeper: {e}");
            return ExitCode::from(2);
        }
    };
    match backup::restore(&target, point, dst) {
        Ok(r) => {
            println!(
                "restored zxid {:#x} into {} (snapshot {}, {} znodes, {} sessions, digest {})",
                r.zxid,
                dst.display(),
                r.snapshot_zxid
                    .map_or("none".to_string(), |z| format!("{z:#x}")),
                r.znodes,
                r.sessions,
                r.digest as i64
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringkeeper: cannot restore, nothing written: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = cli::parse_args();
    if let Some(Subcommand::CheckConfig { config }) = &cli.command {
        return match Config::load(config) {
            Ok((cfg, warnings)) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                println!("{cfg:#?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringkeeper: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Subcommand::Top {
        connect,
        interval_ms,
        once,
        json,
        iterations,
    }) = &cli.command
    {
        ringkeeper::top::run(
            connect,
            std::time::Duration::from_millis(*interval_ms),
            *once,
            *json,
            *iterations,
        );
        return ExitCode::SUCCESS;
    }
    if let Some(Subcommand::Data { action }) = &cli.command {
        return data_command(action);
    }
    if let Some(Subcommand::Backup(args)) = &cli.command {
        return backup_command(args);
    }
    if let Some(Subcommand::Restore {
        from,
        to_zxid,
        to_time,
        latest,
        dst,
    }) = &cli.command
    {
        return restore_command(from, *to_zxid, to_time.as_deref(), *latest, dst);
    }
    let (cfg, warnings) = match cli.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringkeeper: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &warnings {
        eprintln!("ringkeeper: warning: {w}");
    }
    let repl = if cfg.is_distributed() {
        match repl_config(&cfg) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("ringkeeper: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    if let Err(e) = ringkeeper::io::probe() {
        eprintln!("ringkeeper: {e}");
        return ExitCode::from(1);
    }
    let sc = match server_config(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringkeeper: {e}");
            return ExitCode::from(2);
        }
    };
    for (key, dir) in [
        ("dataDir", &cfg.data_dir),
        ("dataLogDir", &cfg.data_log_dir),
    ] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("ringkeeper: cannot create {key} {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    }
    // Held until the process ends: a second server on these directories refuses to start
    // (before the import below, which writes into them).
    let _dir_lock =
        match ringkeeper::storage::dirlock::lock_dirs(&[&cfg.data_dir, &cfg.data_log_dir]) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("ringkeeper: refusing to start: {e}");
                return ExitCode::from(1);
            }
        };
    let mut sc = sc;
    // A ZooKeeper dataDir with no RingKeeper data yet: import it first.
    let trust_empty = cfg
        .system_properties
        .get("zookeeper.snapshot.trust.empty")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    {
        use ringkeeper::zkfiles::import::{self, AtStart};
        let opts = import::Options {
            trust_empty_snapshot: trust_empty,
        };
        let zk = import::ZkDirs::of(&cfg.data_dir, &cfg.data_log_dir);
        if zk.has_zookeeper_data()
            && !import::has_ringkeeper_data(&cfg.data_dir, &cfg.data_log_dir).unwrap_or(true)
        {
            eprintln!(
                "ringkeeper: {} holds Apache ZooKeeper's data and no RingKeeper data: importing \
                 it into RingKeeper's format in {} (the ZooKeeper files are only read, and left \
                 as they are)",
                zk.snap_dir.display(),
                cfg.data_dir.display()
            );
        }
        match import::import_at_start(&cfg.data_dir, &cfg.data_log_dir, opts) {
            Ok(AtStart::Nothing) => {}
            Ok(AtStart::Stale(msg)) => eprintln!("ringkeeper: WARNING: {msg}"),
            Ok(AtStart::Imported {
                summary,
                notes,
                seconds,
            }) => {
                for n in notes {
                    eprintln!("ringkeeper: import: {n}");
                }
                eprintln!("ringkeeper: imported ZooKeeper's data in {seconds:.3} s: {summary}");
            }
            Err(e) => {
                eprintln!(
                    "ringkeeper: cannot import the ZooKeeper data, refusing to start (nothing was \
                     written): {e}"
                );
                return ExitCode::from(1);
            }
        }
    }
    let started = std::time::Instant::now();
    let mut opened =
        match ringkeeper::storage::open::open(Arc::new(OsDisk), &cfg.data_dir, &cfg.data_log_dir) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("ringkeeper: cannot recover the data directory, refusing to start: {e}");
                return ExitCode::from(1);
            }
        };
    eprintln!(
        "ringkeeper: recovered {} znodes and {} sessions through zxid {:#x} in {:.3} s",
        opened.tree.len(),
        opened.tree.session_count(),
        opened.zxid,
        started.elapsed().as_secs_f64()
    );
    // Recovery's temporaries (the log segment it read, the snapshot loader's buffers)
    // were freed on this thread, and mimalloc returns freed memory to the OS only on the
    // freeing thread's later allocations, which this thread hardly makes from here on.
    // SAFETY: mi_collect has no preconditions; it only purges mimalloc's free memory.
    unsafe { libmimalloc_sys::mi_collect(true) };
    keep_freed_memory();
    if let Some(st) = sc.storage.as_mut() {
        st.position = opened.position;
    }
    if let Some(mut rc) = repl {
        rc.recovered_zxid = opened.zxid as u64;
        rc.snapshot_zxid = opened.snapshot_zxid.map(|z| z as u64);
        let persisted = match server::replication::persisted(&rc) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("ringkeeper: cannot read the epoch files: {e}");
                return ExitCode::from(1);
            }
        };
        // A snapshot a crash cut short while it arrived: never read, removed before any
        // connection can receive another.
        match ringkeeper::storage::snapshot::remove_received(&OsDisk, &cfg.data_dir) {
            Ok(removed) if !removed.is_empty() => {
                eprintln!("ringkeeper: removed snapshots left half received: {removed:?}")
            }
            Ok(_) => {}
            Err(e) => eprintln!("ringkeeper: cannot remove snapshots left half received: {e}"),
        }
        let membership = Membership {
            servers: cfg.servers.clone(),
            version: cfg.config_version,
            reconfig_enabled: cfg.reconfig_enabled,
            standalone_enabled: cfg.standalone_enabled,
        };
        // /zookeeper/config holds the config in force on every member, as after
        // ZooKeeper's initConfigInZKDatabase at start; unless the log holds a newer
        // one (a reconfig logged after the newest dynamic file was written): the
        // sequencer then treats that one as proposed and puts it in force once it
        // commits.
        let logged = opened
            .tree
            .data("/zookeeper/config")
            .and_then(|(d, _)| d)
            .and_then(|d| {
                ringkeeper::dynconfig::parse_config_text(&String::from_utf8_lossy(&d)).ok()
            })
            .map_or(0, |(_, v)| v);
        if logged <= membership.version {
            opened
                .tree
                .set_config_node(membership.text().as_bytes(), membership.version as i64, 0);
        }
        let config_files = match (&cfg.config_path, cfg.reconfig_enabled) {
            (Some(path), true) => Some(ringkeeper::dynconfig::Files {
                config_path: path.clone(),
                my_id: rc.my_id,
            }),
            _ => None,
        };
        if let Some(f) = &config_files {
            // QuorumPeerConfig.backupOldConfig: zoo.cfg still holds the server lines.
            if cfg.dynamic_config_file.is_none() {
                if let Err(e) = f.backup() {
                    eprintln!(
                        "ringkeeper: cannot back {} up: {e}",
                        f.config_path.display()
                    );
                }
            }
        }
        let membership_text = membership.text();
        if let Some(me) = rc.members.get(&rc.my_id) {
            sc.settings.conf.quorum = Some(ringkeeper::fourlw::QuorumConf {
                init_limit: cfg.init_limit,
                sync_limit: cfg.sync_limit,
                election_port: me.election.port(),
                quorum_port: me.quorum.port(),
            });
        }
        sc.core.ensemble = Some(EnsembleConfig {
            peer: rc.peer_config(),
            persisted,
            loaded_snapshot: opened.snapshot_zxid,
            membership,
        });
        let tls = if cfg.ssl_quorum {
            let t = ringkeeper::tls::quorum_settings(&cfg.system_properties, cfg.ssl_quorum_reload)
                .map_err(|e| format!("sslQuorum: {e}"));
            match t {
                Ok(t) => Some(Arc::new(t)),
                Err(e) => {
                    eprintln!("ringkeeper: {e}");
                    return ExitCode::from(2);
                }
            }
        } else {
            None
        };
        sc.ensemble = Some(EnsembleSetup {
            my_id: rc.my_id,
            members: rc.members.clone(),
            ensemble: rc.ensemble.clone(),
            config_files,
            membership: membership_text,
            tls,
        });
    }
    let shards = sc.shards;
    let signals = block_signals();
    let load_ms = started.elapsed().as_millis() as u64;
    // The txns replayed after the snapshot: exact within one epoch.
    let replayed = match opened.snapshot_zxid {
        Some(s) if s >> 32 == opened.zxid >> 32 => (opened.zxid - s) as u64,
        None if opened.zxid >> 32 == 0 => opened.zxid as u64,
        _ => 0,
    };
    let audit = sc.settings.audit.clone();
    let running = match server::start(sc, opened.tree, opened.zxid) {
        Ok(r) => r,
        Err(e) => {
            if let Some(a) = &audit {
                a.server_event("serverStart", ringkeeper::server::audit::Outcome::Failure);
            }
            eprintln!("ringkeeper: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    {
        let zk = &running.state.seq.metrics.zk;
        zk.dbinittime.record(load_ms);
        zk.startup_snap_load_time.record(load_ms);
        zk.startup_txns_load_time.record(load_ms);
        zk.startup_txns_loaded.record(replayed);
    }
    if let Some(a) = &audit {
        a.server_event("serverStart", ringkeeper::server::audit::Outcome::Success);
    }
    let mode = match (running.quorum_addr, running.election_addr) {
        (Some(q), Some(e)) => format!(
            "server.{}, quorum port {q}, election port {e}",
            cfg.my_id.unwrap_or(0)
        ),
        _ => "standalone".to_string(),
    };
    if let Some(m) = running.metrics_addr {
        eprintln!("ringkeeper: Prometheus metrics on http://{m}/metrics");
    }
    if let Some(a) = running.admin_addr {
        eprintln!("ringkeeper: AdminServer on http://{a}");
    }
    if let Some(a) = running.secure_addr {
        eprintln!("ringkeeper: serving TLS clients on {a}");
    }
    eprintln!(
        "ringkeeper {}: serving clients on {} ({mode}, {} shards), data in {}, log in {}",
        env!("CARGO_PKG_VERSION"),
        running.local_addr,
        shards,
        cfg.data_dir.display(),
        cfg.data_log_dir.display()
    );
    // systemd (Type=notify): ready once clients are served, that is once this server
    // has a role (at once standalone; after an election and sync in an ensemble).
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let state = running.state.clone();
        let stop = running.stop.clone();
        let listen = running.local_addr;
        let _ = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    if let Some(mode) = state.mode() {
                        let msg = format!(
                            "READY=1\nMAINPID={}\nSTATUS=serving clients on {listen} ({})",
                            std::process::id(),
                            mode.as_str()
                        );
                        if let Err(e) = ringkeeper::sdnotify::notify(&msg) {
                            eprintln!("ringkeeper: cannot notify systemd: {e}");
                        }
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            });
    }
    let sig = wait_for_signal(&signals);
    let _ = ringkeeper::sdnotify::notify("STOPPING=1");
    eprintln!("ringkeeper: signal {sig} received, shutting down");
    // A leader hands off first, so that its stop costs a hand-off, not an election.
    running.hand_off(std::time::Duration::from_secs(3));
    if let Some(a) = &audit {
        a.server_event("serverStop", ringkeeper::server::audit::Outcome::Invoked);
    }
    running.shutdown();
    ExitCode::SUCCESS
}

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, mimalloc.h; the
/// crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// From here on mimalloc keeps the memory freed by the server for reuse instead of
/// giving it back to the OS a second after it was freed (its default): a serving
/// server frees and allocates the same amounts over and over (txn buffers, snapshot
/// buffers, tree versions), and each purged range came back as fresh pages the kernel
/// zeroes, 2 MiB at a time where transparent huge pages are on. Three servers under
/// the Java client's load spent 0.93-0.96x the CPU per write with purging off (two
/// A/Bs of 4 rounds). Recovery's temporaries were purged just before (`mi_collect`),
/// so what stays is the serving high-water mark. `MIMALLOC_PURGE_DELAY` in the
/// environment still decides where an operator sets it.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set only stores the option's value; the purge delay is read
    // each time a purge is scheduled.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
