//! House rules, checked as a test (a rule that is only written down drifts):
//! - the pure modules import nothing from `io`, `server`, `std::net` or `std::fs`, and
//!   never read the clock;
//! - no `dbg!`, `todo!` or `FIXME` in the source;
//! - no absolute paths of a developer's machine in tracked sources;
//! - nothing sends a reader to design notes outside the repository.

use std::path::{Path, PathBuf};

/// Modules that must stay pure: they are driven by events in tests and the simulator.
const PURE: &[&str] = &[
    "src/proto",
    "src/txn.rs",
    "src/tree",
    "src/acl.rs",
    "src/prep.rs",
    "src/session.rs",
    "src/throttle.rs",
    "src/watch.rs",
    "src/fourlw.rs",
    "src/zab",
    "src/sequencer",
];

const PURE_FORBIDDEN: &[&str] = &[
    "crate::io",
    "crate::server",
    "std::net",
    "std::fs",
    "Instant::now",
    "SystemTime::now",
    "std::thread",
];

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_file() {
        if p.extension().is_some_and(|e| e == "rs") {
            out.push(p.to_path_buf());
        }
        return;
    }
    for e in std::fs::read_dir(p).expect("readable source dir").flatten() {
        rust_files(&e.path(), out);
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn pure_modules_stay_pure() {
    let mut bad = Vec::new();
    for m in PURE {
        let mut files = Vec::new();
        rust_files(&root().join(m), &mut files);
        assert!(!files.is_empty(), "pure module {m} not found");
        for f in files {
            // A module's tests in a file of their own (`tests.rs`) may use the clock too.
            if f.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            // Test modules may use the clock and files.
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for word in PURE_FORBIDDEN {
                if code.contains(word) {
                    bad.push(format!("{} uses {word}", f.display()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "pure modules reach outside:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_debug_leftovers() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    let this = root().join("tests/tidy.rs");
    let mut bad = Vec::new();
    for f in files.into_iter().filter(|f| *f != this) {
        let text = std::fs::read_to_string(&f).unwrap();
        for word in ["dbg!(", "todo!(", "FIXME"] {
            if text.contains(word) {
                bad.push(format!("{} contains {word}", f.display()));
            }
        }
        // Spelled in pieces so this file does not name them itself.
        for prefix in [
            concat!("/wo", "rk/"),
            concat!("/tmp/", "bash_jobs"),
            "/root/",
        ] {
            if text.contains(prefix) {
                bad.push(format!("{} names a machine path {prefix}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Files of `dir` (recursively) whose names end in one of `exts`.
fn files_with(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name()
                .is_some_and(|n| n == "target" || n == "results")
            {
                continue;
            }
            files_with(&p, exts, out);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
        {
            out.push(p);
        }
    }
}

/// A clone stands alone: no source, script or document sends its reader to design
/// notes kept outside the repository (the design is in docs/).
#[test]
fn the_repository_stands_alone() {
    let mut files = Vec::new();
    for dir in [
        "src", "tests", "docs", "scripts", "perf", "benches", "examples", "fuzz",
    ] {
        files_with(
            &root().join(dir),
            &["rs", "md", "py", "sh", "toml"],
            &mut files,
        );
    }
    for top in ["README.md", "ARCHITECTURE.md", "Cargo.toml"] {
        files.push(root().join(top));
    }
    let this = root().join("tests/tidy.rs");
    let mut bad = Vec::new();
    for f in files.into_iter().filter(|f| *f != this) {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        // Spelled in pieces so this file does not name them itself.
        for name in [
            concat!("../sha", "red"),
            concat!("DESIGN", ".md"),
            concat!("STYLE", ".md"),
            concat!("PROTOCOL", ".md"),
        ] {
            if text.contains(name) {
                bad.push(format!("{} names {name}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
