//! Backups under load with point-in-time restore (issue 14): runs `tests/backup_pitr.py`
//! against the built `ringkeeper` binary: a server under a kazoo load with
//! `ringkeeper backup` beside it; restores to recorded zxids must serve the digest the
//! live server had at that zxid, the newest point must lose no acknowledged write, and a
//! damaged backup must fail `backup verify` and the restores that need it.

mod common_script;

use common_script::run_script;
use std::time::Duration;

#[test]
fn backup_under_load_restores_any_point() {
    run_script("backup_pitr.py", &[], Duration::from_secs(600), None);
}
