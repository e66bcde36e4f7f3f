//! The Debian package, installed into a clean directory tree and run: the package is
//! built by `packaging/deb/build.sh` from this build's binaries, unpacked with `dpkg -x`,
//! and its control script (ZooKeeper's `zkServer.sh` commands) starts a server, reports
//! it and stops it. Also systemd's readiness: the server sends `READY=1` to
//! `$NOTIFY_SOCKET` only once it answers clients. And one server per data directory
//! and client port: a second one refuses to start.
//!
//! Needs `dpkg-deb` (Debian's `dpkg`, always present there).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn four_letter(port: u16, word: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(word.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    eprintln!(
        "{:?}: {}\nstdout: {}\nstderr: {}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A zoo.cfg for a test server under `dir`.
fn write_cfg(dir: &Path, port: u16) -> PathBuf {
    let cfg = dir.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=srvr, ruok\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn package_installs_and_its_control_script_starts_reports_and_stops_a_server() {
    let root = env!("CARGO_MANIFEST_DIR");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ringkeeper"))
        .parent()
        .unwrap();
    let work = tmp("deb");
    let out = run(Command::new(format!("{root}/packaging/deb/build.sh"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(work.join("out"))
        .args(["--compression", "none"]));
    assert!(out.status.success(), "build.sh failed");
    let deb = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());

    // The control file and the maintainer scripts.
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.contains("Package: ringkeeper"), "{info}");
    for f in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.contains(f), "no {f} in the package: {info}");
    }

    // Installed into a clean tree.
    let inst = work.join("root");
    assert!(run(Command::new("dpkg").arg("-x").arg(&deb).arg(&inst))
        .status
        .success());
    for f in [
        "usr/bin/ringkeeper",
        "usr/bin/zkbench",
        "etc/ringkeeper/zoo.cfg",
        "lib/systemd/system/ringkeeper.service",
        "usr/share/ringkeeper/bin/zkServer.sh",
        "usr/share/ringkeeper/grafana/ringkeeper.json",
        "usr/share/doc/ringkeeper/operations.md",
    ] {
        assert!(inst.join(f).exists(), "{f} not installed");
    }
    let unit = std::fs::read_to_string(inst.join("lib/systemd/system/ringkeeper.service")).unwrap();
    assert!(unit.contains("\nType=notify\n") && unit.contains("\nUser=ringkeeper\n"));
    // The packaged zoo.cfg is one the server accepts.
    let check = run(Command::new(inst.join("usr/bin/ringkeeper"))
        .arg("check-config")
        .arg(inst.join("etc/ringkeeper/zoo.cfg")));
    assert!(check.status.success(), "the packaged zoo.cfg does not load");

    // The control script, run from the unpacked tree (it finds usr/bin/ringkeeper there).
    let port = free_port();
    let srv = work.join("server");
    std::fs::create_dir_all(&srv).unwrap();
    let cfg = write_cfg(&srv, port);
    let script = inst.join("usr/share/ringkeeper/bin/zkServer.sh");
    let ctl = |args: &[&str]| {
        run(Command::new(&script)
            .args(args)
            .arg(&cfg)
            .env_remove("RINGKEEPER_BIN")
            .env("ZOO_LOG_DIR", srv.join("logs")))
    };
    let status = ctl(&["status"]);
    assert_eq!(status.status.code(), Some(1), "status before start");
    assert!(String::from_utf8_lossy(&status.stdout).contains("It is probably not running"));

    let start = ctl(&["start"]);
    let pidfile = srv.join("data/zookeeper_server.pid");
    // Stops the server by its PID file if the test fails before `stop`.
    struct Guard(PathBuf);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(&self.0) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
    let _guard = Guard(pidfile.clone());
    assert!(start.status.success(), "zkServer.sh start failed");
    assert!(String::from_utf8_lossy(&start.stdout).contains("STARTED"));
    assert_eq!(four_letter(port, "ruok"), "imok");
    let again = ctl(&["start"]);
    assert_eq!(again.status.code(), Some(1), "a second start must refuse");
    assert!(String::from_utf8_lossy(&again.stdout).contains("already running"));

    let status = ctl(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success(), "status: {text}");
    assert!(
        text.contains(&format!("Client port found: {port}")),
        "{text}"
    );
    assert!(text.contains("Mode: standalone"), "{text}");

    let cmd = ctl(&["print-cmd"]);
    assert!(String::from_utf8_lossy(&cmd.stdout).contains("usr/bin/ringkeeper"));

    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let stop = ctl(&["stop"]);
    assert!(String::from_utf8_lossy(&stop.stdout).contains("STOPPED"));
    assert!(!pidfile.exists(), "the PID file outlived stop");
    let gone = Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!gone.success(), "the server still runs after stop");
    assert_eq!(four_letter(port, "ruok"), "");
    assert_eq!(ctl(&["status"]).status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn ready_is_sent_to_systemd_only_once_clients_are_served() {
    let dir = tmp("sdnotify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = free_port();
    let cfg = write_cfg(&dir, port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringkeeper"))
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let got = sock.recv(&mut buf);
    // Checked at once after READY: the client port answers then.
    let ruok = four_letter(port, "ruok");
    let msg = got.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let mut stopping = String::new();
    if let Ok(n) = sock.recv(&mut buf) {
        stopping = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    let _ = child.wait();
    let msg = msg.expect("no READY=1 from the server");
    assert!(msg.starts_with("READY=1\n"), "{msg}");
    assert!(msg.contains(&format!("MAINPID={}", child.id())), "{msg}");
    assert_eq!(ruok, "imok", "READY=1 came before the server answered");
    assert_eq!(stopping, "STOPPING=1");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second server on a running server's data directory, or on its client port, refuses
/// to start with an error that says why (two servers on one directory corrupt its log;
/// SO_REUSEPORT would otherwise let two share a port), and the first keeps serving.
#[test]
fn a_second_server_on_the_same_data_directory_or_port_refuses_to_start() {
    let dir = tmp("exclusive");
    let port = free_port();
    let cfg = write_cfg(&dir, port);
    let mut first = Command::new(env!("CARGO_BIN_EXE_ringkeeper"))
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Bounded wait for the first server to serve.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while four_letter(port, "ruok") != "imok" {
        assert!(
            std::time::Instant::now() < deadline,
            "the first server never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Same dataDir, another port.
    let same_dir = dir.join("same-dir");
    std::fs::create_dir_all(&same_dir).unwrap();
    let cfg2 = write_cfg(&same_dir, free_port());
    let text = std::fs::read_to_string(&cfg2).unwrap().replace(
        &format!("dataDir={}", same_dir.join("data").display()),
        &format!("dataDir={}", dir.join("data").display()),
    );
    std::fs::write(&cfg2, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringkeeper"))
        .arg(&cfg2)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is in use by another process"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    // Another dataDir, the same port.
    let same_port = dir.join("same-port");
    std::fs::create_dir_all(&same_port).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringkeeper"))
        .arg(write_cfg(&same_port, port))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("already in use by another process"), "{err}");
    assert_eq!(
        four_letter(port, "ruok"),
        "imok",
        "the first server stopped serving"
    );
    let _ = Command::new("kill").arg(first.id().to_string()).status();
    let _ = first.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
