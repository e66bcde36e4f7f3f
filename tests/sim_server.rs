//! Seeded simulation of whole servers (the sequencer core with its ZAB peer, the
//! election, and real shards) under crashes and partitions, with clients speaking the
//! wire protocol; see `core_sim` for the model and the invariants. A failure prints
//! the seed; re-run it with `SIM_SEED=<seed> cargo test --test sim_server one_seed --
//! --nocapture` (add `SIM_BROKEN=<field of sequencer::Broken>` to replay a `catches_*`
//! seed). Beyond the suite's 2,000: `SIM_RANGE=2000..50000 cargo test --release --test
//! sim_server seed_range` (runs nothing without it).

mod common_seeds;
mod core_sim;

use core_sim::{check_seed, Options};
use ringkeeper::sequencer::Broken;

fn shape(seed: u64) -> (usize, usize) {
    match seed % 4 {
        0 | 1 => (3, 0),
        2 => (5, 0),
        _ => (3, 1),
    }
}

fn opts(seed: u64) -> Options {
    let (voters, observers) = shape(seed);
    Options {
        observers,
        // One seed in five runs epochs of 16 zxids: leaders renew their epoch in place
        // under load and faults, as at 0xffffffff.
        max_counter: if seed % 5 == 4 { 16 } else { u32::MAX },
        // One seed in seven runs local sessions, upgrading on every other such seed:
        // sessions live on one server until an ephemeral makes them global (or is
        // refused), under the same faults. (Not more: a local session cannot resume
        // on another server, and the other seeds test resumes.)
        local_sessions: seed % 7 == 3,
        local_upgrading: seed % 14 == 3,
        ..Options::new(seed, voters)
    }
}

/// Runs seeds `from..to` and checks that they exercised what they claim to.
fn seeds(from: u64, to: u64) {
    let to = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(to, |n| (from + n / 2).min(to));
    let mut total = core_sim::Stats::default();
    for seed in from..to {
        let s = check_seed(opts(seed)).unwrap_or_else(|e| panic!("{e}"));
        total.events += s.events;
        total.acked_writes += s.acked_writes;
        total.reads += s.reads;
        total.syncs += s.syncs;
        total.sessions += s.sessions;
        total.expired += s.expired;
        total.crashes += s.crashes;
        total.elections += s.elections;
        total.renewals += s.renewals;
        total.truncs += s.truncs;
        total.snaps += s.snaps;
        total.resumes += s.resumes;
        total.forwarded += s.forwarded;
        total.moves += s.moves;
        total.upgrades += s.upgrades;
        total.ephemerals_refused += s.ephemerals_refused;
    }
    println!("seeds {from}..{to}: {total:?}");
    let n = to - from;
    assert!(total.acked_writes > 50 * n, "too few writes: {total:?}");
    assert!(total.crashes > n, "too few crashes: {total:?}");
    assert!(total.syncs > 5 * n, "too few syncs: {total:?}");
    assert!(total.resumes > n, "too few resumed sessions: {total:?}");
    assert!(total.forwarded > 50 * n, "too little forwarding: {total:?}");
    assert!(total.moves > n, "too few leadership moves: {total:?}");
    assert!(total.expired > 0, "no session ever expired: {total:?}");
    assert!(total.renewals > 0, "no epoch renewal: {total:?}");
    assert!(
        total.upgrades > 0 && total.ephemerals_refused > 0,
        "local sessions never upgraded or refused an ephemeral: {total:?}"
    );
    assert!(
        total.truncs > 0 && total.snaps > 0,
        "no TRUNC or SNAP: {total:?}"
    );
}

/// 2,000 seeds in all, in two tests so that they run side by side.
#[test]
fn seeds_0_to_999() {
    seeds(0, 1000);
}

#[test]
fn seeds_1000_to_1999() {
    seeds(1000, 2000);
}

/// The seeds of `SIM_RANGE` (`FROM..TO`, or a count from 0), for a longer search than
/// the suite's; nothing without it.
#[test]
fn seed_range() {
    if let Some(span) = common_seeds::seed_span("SIM_RANGE") {
        seeds(span.start, span.end);
    }
}

fn broken(name: &str) -> Broken {
    let mut b = Broken::default();
    match name {
        "answer_forward_early" => b.answer_forward_early = true,
        "learner_expires_sessions" => b.learner_expires_sessions = true,
        "sync_answered_early" => b.sync_answered_early = true,
        "rollback_skips_replay" => b.rollback_skips_replay = true,
        other => panic!("unknown broken variant {other}"),
    }
    b
}

#[test]
fn one_seed() {
    let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) else {
        return;
    };
    let broken = std::env::var("SIM_BROKEN").map_or(Broken::default(), |b| broken(&b));
    let mut sim = core_sim::Sim::new(Options {
        trace: true,
        broken,
        ..opts(seed)
    });
    let r = core_sim::run_caught(&mut sim);
    for l in &sim.trace {
        println!("{l}");
    }
    println!("{:?}", sim.stats);
    r.unwrap();
}

#[test]
fn same_seed_same_run() {
    let a = check_seed(opts(7)).unwrap();
    let b = check_seed(opts(7)).unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

fn first_failure(name: &str, seeds: u64) -> (u64, String) {
    (0..seeds)
        .find_map(|seed| {
            let o = Options {
                broken: broken(name),
                ..opts(seed)
            };
            check_seed(o).err().map(|e| (seed, e))
        })
        .unwrap_or_else(|| panic!("the simulator missed {name} in {seeds} seeds"))
}

#[test]
fn catches_a_forwarded_write_answered_before_commit() {
    let (seed, e) = first_failure("answer_forward_early", 50);
    println!("caught at seed {seed}: {}", e.lines().next().unwrap_or(""));
}

#[test]
fn catches_a_session_expired_by_a_follower() {
    let (seed, e) = first_failure("learner_expires_sessions", 50);
    println!("caught at seed {seed}: {}", e.lines().next().unwrap_or(""));
}

#[test]
fn catches_a_read_on_an_older_root_than_the_answers_carry() {
    let seed = (0..50)
        .find(|&seed| {
            let o = Options {
                reads_on_old_view: true,
                ..opts(seed)
            };
            check_seed(o).is_err()
        })
        .expect("the simulator missed reads on an old view in 50 seeds");
    println!("caught at seed {seed}");
}

#[test]
fn catches_a_sync_answered_before_the_follower_caught_up() {
    let (seed, e) = first_failure("sync_answered_early", 200);
    println!("caught at seed {seed}: {}", e.lines().next().unwrap_or(""));
}

#[test]
fn catches_a_leader_rollback_that_skips_committed_txns() {
    let (seed, e) = first_failure("rollback_skips_replay", 200);
    println!("caught at seed {seed}: {}", e.lines().next().unwrap_or(""));
}
