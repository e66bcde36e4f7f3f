//! The `ringkeeper` command line: `ringkeeper [FLAGS] [zoo.cfg]`, as ZooKeeper's
//! `QuorumPeerMain zoo.cfg`, with flags that override the file.
//!
//! Without a file the server runs standalone on 127.0.0.1:2181 with its data in `./data`
//! (relative to the working directory; see [`crate::config::Config::standalone_default`]).
//! Subcommands (a `data` inspection tool will come with storage) go in [`Subcommand`].

use std::path::PathBuf;

use clap::{Parser, Subcommand as ClapSubcommand};

use crate::config::{
    Config, ConfigBuilder, ConfigError, Warning, DEFAULT_CLIENT_PORT, STANDALONE_DATA_DIR,
};

/// A ZooKeeper-compatible coordination server on per-core io_uring event loops.
#[derive(Debug, Parser, Default, PartialEq, Eq)]
#[command(name = "ringkeeper", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A ZooKeeper zoo.cfg. Without it: standalone on 127.0.0.1:2181, data in ./data.
    #[arg(value_name = "ZOO_CFG")]
    pub config: Option<PathBuf>,

    /// Overrides clientPort.
    #[arg(long, value_name = "PORT")]
    pub client_port: Option<u16>,

    /// Overrides clientPortAddress (the address clients connect to).
    #[arg(long, value_name = "ADDR")]
    pub client_port_address: Option<String>,

    /// Overrides dataDir (snapshots and myid).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Overrides dataLogDir (the transaction log).
    #[arg(long, value_name = "DIR")]
    pub data_log_dir: Option<PathBuf>,

    /// Number of io_uring event loops, 1 to 64 (default: one per core but one, at least one).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,

    /// Overrides tickTime, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub tick_time: Option<u32>,

    /// Overrides 4lw.commands.whitelist (comma separated, or * for all).
    #[arg(long = "4lw-whitelist", value_name = "LIST")]
    pub four_letter_whitelist: Option<String>,

    /// Overrides maxClientCnxns (connections per client IP, 0 = unlimited).
    #[arg(long, value_name = "N")]
    pub max_client_cnxns: Option<u32>,

    /// Sets any zoo.cfg key, as KEY=VALUE; repeatable; applied after the file and
    /// before the other flags.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,

    #[command(subcommand)]
    pub command: Option<Subcommand>,
}

/// Tools besides running the server.
#[derive(Debug, ClapSubcommand, PartialEq, Eq)]
pub enum Subcommand {
    /// Checks a zoo.cfg and prints the settings and warnings, without starting anything.
    CheckConfig {
        /// The zoo.cfg to check.
        config: PathBuf,
    },
    /// Inspects a data directory: snapshots and transaction log.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// Keeps a backup directory current from a running server's data directory
    /// (snapshots and log segments, checked, with a manifest); `backup verify DIR`
    /// checks a backup.
    Backup(BackupArgs),
    /// A live view of a cluster's load, like `top`: ops/s and p99 per server, the
    /// sessions, clients and path prefixes that drive it (needs the `mntr` and `load`
    /// four-letter words whitelisted).
    Top {
        /// The servers, as a ZooKeeper connect string (`host:port,host:port`).
        connect: String,
        /// Milliseconds between refreshes (and between the two samples of `--once`).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
        interval_ms: u64,
        /// One sample, printed once, then exit.
        #[arg(long)]
        once: bool,
        /// With `--once`: print JSON for scripts.
        #[arg(long, requires = "once")]
        json: bool,
        /// Refreshes to draw before exiting (default: until interrupted).
        #[arg(long)]
        iterations: Option<u64>,
    },
    /// Builds a new data directory DST of one point of a backup's history.
    Restore {
        /// The backup directory.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The zxid to restore to (hex with 0x, or decimal).
        #[arg(long, value_name = "ZXID", value_parser = parse_zxid, group = "point")]
        to_zxid: Option<i64>,
        /// The time to restore to: milliseconds since 1970 or RFC 3339; the history of
        /// every txn committed at or before it.
        #[arg(long, value_name = "TIME", group = "point")]
        to_time: Option<String>,
        /// The newest point the backup holds.
        #[arg(long, group = "point")]
        latest: bool,
        /// The data directory to create (must not exist, or be empty).
        dst: PathBuf,
    },
}

#[derive(Debug, clap::Args, PartialEq, Eq)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub action: Option<BackupAction>,
    /// The server's zoo.cfg (for dataDir and dataLogDir).
    #[arg(value_name = "ZOO_CFG")]
    pub config: Option<PathBuf>,
    /// The server's dataDir (instead of a zoo.cfg).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The server's dataLogDir, when apart from dataDir.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// The backup directory (a local disk or a mounted volume).
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Milliseconds between passes.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub interval_ms: u64,
    /// One pass, then exit.
    #[arg(long)]
    pub once: bool,
    /// The server's client address, asked (`srvr`) for its committed zxid before each
    /// pass: a log's tail may hold proposals not yet committed, and the backup reaches
    /// only what is committed. Default: clientPortAddress (or 127.0.0.1) and clientPort
    /// of ZOO_CFG.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "offline")]
    pub server: Option<String>,
    /// The server is stopped: back up everything its log holds. For a standalone server
    /// that is what it committed; an ensemble member's last txns may be proposals that
    /// were never committed.
    #[arg(long)]
    pub offline: bool,
    /// Keep the newest N snapshots and the log from the oldest of them on, removing
    /// older objects (0: keep everything). Restores reach back to the oldest kept one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_snapshots: usize,
}

#[derive(Debug, ClapSubcommand, PartialEq, Eq)]
pub enum BackupAction {
    /// Checks every object against the manifest, every CRC and zxid continuity, and
    /// recovery against a full replay.
    Verify {
        /// The backup directory.
        dir: PathBuf,
    },
}

fn parse_zxid(s: &str) -> Result<i64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).map(|v| v as i64),
        None => s.parse::<i64>(),
    };
    r.map_err(|e| format!("{s:?}: {e}"))
}

/// `ringkeeper data ...`.
#[derive(Debug, ClapSubcommand, PartialEq, Eq)]
pub enum DataAction {
    /// Validates every snapshot and log CRC, zxid continuity, and recovery against a full
    /// replay; exits non-zero with the reason if anything is invalid.
    Check {
        /// dataDir (snapshots).
        dir: PathBuf,
        /// dataLogDir, when the log is kept apart from dataDir.
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
    },
    /// Prints each snapshot's znodes and summary and the log's txns, one per line.
    Dump {
        /// dataDir (snapshots).
        dir: PathBuf,
        /// dataLogDir, when the log is kept apart from dataDir.
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
    },
    /// Imports Apache ZooKeeper's dataDir SRC (its version-2 files) into a new
    /// RingKeeper data directory DST; SRC is only read.
    ImportZookeeper {
        /// ZooKeeper's dataDir (or its version-2 directory).
        src: PathBuf,
        /// The RingKeeper data directory to create (must not exist, or be empty).
        dst: PathBuf,
        /// ZooKeeper's dataLogDir, when its logs are kept apart from dataDir.
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
        /// Replay logs that have no snapshot from an empty tree (a ZooKeeper 3.4
        /// directory before its first snapshot), as zookeeper.snapshot.trust.empty.
        #[arg(long)]
        trust_empty_snapshot: bool,
    },
    /// Writes RingKeeper's data directory SRC (of a stopped server) as a ZooKeeper
    /// dataDir DST: a version-2 snapshot and the epoch files.
    ExportZookeeper {
        /// RingKeeper's dataDir.
        src: PathBuf,
        /// The ZooKeeper dataDir to create (must not exist, or be empty).
        dst: PathBuf,
        /// RingKeeper's dataLogDir, when the log is kept apart from dataDir.
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Parses the process's arguments; prints help or an error and exits on bad usage.
pub fn parse_args() -> Cli {
    Cli::parse()
}

impl Cli {
    /// Parses the given arguments (the first is the program name).
    ///
    /// # Errors
    /// clap's error for bad usage (its `exit()` prints it).
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args)
    }

    /// The configuration to run: the file (or the standalone defaults) with the flags
    /// applied, validated.
    ///
    /// # Errors
    /// As [`Config::load`] and [`ConfigBuilder::build`].
    pub fn to_config(&self) -> Result<(Config, Vec<Warning>), ConfigError> {
        let builder = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    kind: crate::config::ConfigErrorKind::Io,
                    key: None,
                    line: None,
                    message: format!("cannot read config file {}: {e}", path.display()),
                })?;
                let props = crate::config::parse_properties(&text);
                ConfigBuilder::from_properties(&props)
                    .config_path(path.clone())
                    .read_myid(true)
            }
            None => {
                // The same settings as Config::standalone_default, as overridable keys.
                ConfigBuilder::new()
                    .data_dir(STANDALONE_DATA_DIR)
                    .client_port(DEFAULT_CLIENT_PORT)
                    .client_port_address("127.0.0.1")
                    .tick_time_ms(2000)
            }
        };
        // ZooKeeper's zkServer.sh hands the JVM `$SERVER_JVMFLAGS $JVMFLAGS`; their
        // -D properties (the JAAS file, SASL switches) reach us the same way.
        let flags = ["SERVER_JVMFLAGS", "JVMFLAGS"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .collect::<Vec<_>>()
            .join(" ");
        self.apply(builder.jvm_flags(&flags)).build()
    }

    fn apply(&self, mut b: ConfigBuilder) -> ConfigBuilder {
        for (k, v) in &self.set {
            b = b.set(k, v);
        }
        if let Some(p) = self.client_port {
            b = b.client_port(p);
        }
        if let Some(a) = &self.client_port_address {
            b = b.client_port_address(a);
        }
        if let Some(d) = &self.data_dir {
            b = b.data_dir(d);
        }
        if let Some(d) = &self.data_log_dir {
            b = b.data_log_dir(d);
        }
        if let Some(n) = self.shards {
            b = b.shards(n);
        }
        if let Some(t) = self.tick_time {
            b = b.tick_time_ms(t);
        }
        if let Some(w) = &self.four_letter_whitelist {
            b = b.four_letter_whitelist(w);
        }
        if let Some(n) = self.max_client_cnxns {
            b = b.set("maxClientCnxns", n);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_is_standalone_on_loopback() {
        let cli = Cli::try_parse_args(["ringkeeper"]).unwrap();
        assert_eq!(cli, Cli::default());
        let (c, w) = cli.to_config().unwrap();
        assert!(w.is_empty());
        assert_eq!(c, {
            let mut d = Config::standalone_default(STANDALONE_DATA_DIR);
            d.config_path = None;
            d
        });
        assert_eq!(c.client_address().to_string(), "127.0.0.1:2181");
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_args([
            "ringkeeper",
            "--client-port",
            "2281",
            "--data-dir",
            "/srv/zk",
            "--shards",
            "2",
            "--tick-time",
            "500",
            "--4lw-whitelist",
            "*",
            "--max-client-cnxns",
            "0",
            "--set",
            "extendedTypesEnabled=true",
        ])
        .unwrap();
        let (c, _) = cli.to_config().unwrap();
        assert_eq!(c.client_address().to_string(), "127.0.0.1:2281");
        assert_eq!(c.data_dir, PathBuf::from("/srv/zk"));
        assert_eq!(c.shard_count(), 2);
        assert_eq!((c.tick_time_ms, c.min_session_timeout_ms), (500, 1000));
        assert!(c.four_letter_whitelist.allows("mntr"));
        assert_eq!(c.max_client_cnxns, 0);
        assert!(c.extended_types_enabled);
    }

    #[test]
    fn positional_config_and_subcommand() {
        let cli = Cli::try_parse_args(["ringkeeper", "conf/zoo.cfg"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("conf/zoo.cfg")));
        let cli = Cli::try_parse_args(["ringkeeper", "check-config", "x.cfg"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Subcommand::CheckConfig {
                config: "x.cfg".into()
            })
        );
        assert!(Cli::try_parse_args(["ringkeeper", "--set", "novalue"]).is_err());
        assert!(Cli::try_parse_args(["ringkeeper", "--client-port", "99999"]).is_err());
    }
}
