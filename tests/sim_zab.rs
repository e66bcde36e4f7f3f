//! Seeded simulation of 3- and 5-server ensembles (and observers) under faults; see
//! `zab_sim` for the model and the invariants. A failure prints the seed; re-run it
//! with `ZAB_SEED=<seed> cargo test --test sim_zab one_seed -- --nocapture` (add
//! `ZAB_BROKEN=<field of Broken>` to replay a `catches_*` seed). A longer search:
//! `ZAB_SEEDS=100000..300000` (or a count, from 0), `ZAB_RECONFIG_SEEDS` likewise.

mod common_seeds;
mod zab_sim;

use common_seeds::seed_span;
use ringkeeper::zab::peer::Broken;
use zab_sim::{check_seed, Options};

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
        // One seed in five runs epochs of 40 zxids, so leaders renew their epoch in
        // place when the counter runs out (as at 0xffffffff), under the same faults.
        max_counter: if seed % 5 == 4 { 40 } else { u32::MAX },
        ..Options::new(seed, voters)
    }
}

#[test]
fn two_thousand_seeds() {
    let seeds = seed_span("ZAB_SEEDS").unwrap_or(0..2000);
    let count = seeds.end - seeds.start;
    let mut total = zab_sim::Stats::default();
    let mut snap_seeds = 0;
    for seed in seeds {
        let s = check_seed(opts(seed)).unwrap_or_else(|e| panic!("{e}"));
        total.events += s.events;
        total.committed += s.committed;
        total.acked += s.acked;
        total.crashes += s.crashes;
        total.elections += s.elections;
        total.epochs += s.epochs;
        total.truncs += s.truncs;
        total.diffs += s.diffs;
        total.snaps += s.snaps;
        total.compactions += s.compactions;
        total.renewals += s.renewals;
        total.transfers += s.transfers;
        total.handoffs += s.handoffs;
        total.takeover_epochs += s.takeover_epochs;
        total.transfers_called_off += s.transfers_called_off;
        snap_seeds += usize::from(s.snaps > 0);
    }
    println!("{count} seeds: {total:?}; SNAP in {snap_seeds} seeds");
    // The runs must have exercised what they claim to.
    assert!(
        total.acked > 1000 * count as usize / 100,
        "too few acknowledged writes: {total:?}"
    );
    assert!(total.crashes > count as usize, "too few crashes: {total:?}");
    assert!(total.truncs > 0, "TRUNC never exercised: {total:?}");
    assert!(
        total.renewals > count as usize / 10,
        "epoch renewals too rare: {total:?}"
    );
    // Leadership transfers under the same faults: asked for, handed off, and the
    // server that took over established its epoch (the invariants held throughout).
    assert!(
        total.handoffs > count as usize / 4 && total.takeover_epochs > count as usize / 8,
        "leadership hand-offs too rare: {total:?}"
    );
    // And transfers whose target crashed or was cut off are called off by a leader that
    // goes on leading.
    assert!(
        total.transfers_called_off > 0,
        "no transfer was ever called off: {total:?}"
    );
    // Servers compact at random, so a learner that was away for a while usually finds
    // the leader's log starting after it (about 80% of the seeds sync someone by SNAP).
    assert!(
        snap_seeds * 4 >= count as usize,
        "SNAP in only {snap_seeds} of {count} seeds: {total:?}"
    );
}

/// A broken variant by its field name, for replaying a `catches_*` seed with
/// `ZAB_BROKEN=<name> ZAB_SEED=<n> cargo test --test sim_zab one_seed -- --nocapture`.
fn broken(name: &str) -> Broken {
    let mut b = Broken::default();
    match name {
        "ack_before_durable" => b.ack_before_durable = true,
        "ackepoch_before_persist" => b.ackepoch_before_persist = true,
        "snap_ack_before_durable" => b.snap_ack_before_durable = true,
        "local_commit_before_durable" => b.local_commit_before_durable = true,
        other => panic!("unknown broken variant {other}"),
    }
    b
}

/// The options of the membership test's seed `seed` (see `membership_changes_under_faults`).
fn reconfig_opts(seed: u64) -> Options {
    let (voters, observers) = shape(seed);
    Options {
        observers,
        reconfigs: true,
        spares: 2,
        ..Options::new(seed.wrapping_add(1 << 40), voters)
    }
}

/// Replays one seed with its trace: `ZAB_SEED=<n>` (of `two_thousand_seeds`, with
/// `ZAB_BROKEN` for a `catches_*` seed) or `ZAB_RECONFIG_SEED=<n>` (of
/// `membership_changes_under_faults`).
#[test]
fn one_seed() {
    let seed = |var| std::env::var(var).ok().and_then(|s| s.parse::<u64>().ok());
    let o = match (seed("ZAB_SEED"), seed("ZAB_RECONFIG_SEED")) {
        (Some(n), _) => opts(n),
        (None, Some(n)) => reconfig_opts(n),
        (None, None) => return,
    };
    let broken = std::env::var("ZAB_BROKEN").map_or(Broken::default(), |b| broken(&b));
    let mut sim = zab_sim::Sim::new(Options {
        trace: true,
        broken,
        ..o
    });
    let r = sim.run();
    for l in &sim.trace {
        println!("{l}");
    }
    r.unwrap();
}

#[test]
fn same_seed_same_run() {
    let a = check_seed(opts(7)).unwrap();
    let b = check_seed(opts(7)).unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

fn first_failure(broken: Broken, seeds: u64) -> Option<(u64, String)> {
    (0..seeds).find_map(|seed| {
        let o = Options {
            broken,
            ..opts(seed)
        };
        check_seed(o).err().map(|e| (seed, e))
    })
}

/// The first of `seeds` seeds at which the simulator fails with the broken variant
/// `name` (see [`broken`]), and its error; panics if none does.
fn caught(name: &str, seeds: u64) -> String {
    let (seed, e) = first_failure(broken(name), seeds)
        .unwrap_or_else(|| panic!("the simulator missed {name} in {seeds} seeds"));
    println!("caught at seed {seed}: {}", e.lines().next().unwrap_or(""));
    e
}

#[test]
fn catches_ack_before_durable() {
    caught("ack_before_durable", 300);
}

#[test]
fn catches_snap_ack_before_durable() {
    caught("snap_ack_before_durable", 2000);
}

#[test]
fn catches_ackepoch_before_persist() {
    caught("ackepoch_before_persist", 2000);
}

/// A follower that commits on its leader's LOGGED before its own copy is durable
/// commits what only one disk holds: the oracle's quorum-of-copies check at the first
/// commit names it.
#[test]
fn catches_local_commit_before_durable() {
    let e = caught("local_commit_before_durable", 300);
    assert!(e.contains("committed while durable only on"), "{e}");
}

/// Membership changes under the same faults (crashes, partitions, lost and reordered
/// notifications, snapshots, transfers): leaders propose reconfigs that remove members
/// (the leader too), add spare servers as voters or observers and flip roles; removed
/// servers are stopped, added ones started with the new config. Every txn must be
/// durable on a quorum of the config in force when it first commits (a reconfig on a
/// quorum of both configs), no acknowledged write may be lost, and the members of the
/// final config converge to one history.
#[test]
fn membership_changes_under_faults() {
    let seeds = seed_span("ZAB_RECONFIG_SEEDS").unwrap_or(0..400);
    let count = seeds.end - seeds.start;
    let mut total = zab_sim::Stats::default();
    for seed in seeds {
        let s = check_seed(reconfig_opts(seed)).unwrap_or_else(|e| {
            panic!("reconfig seed {seed}: {e}; replay it with ZAB_RECONFIG_SEED={seed}")
        });
        total.acked += s.acked;
        total.crashes += s.crashes;
        total.reconfigs_proposed += s.reconfigs_proposed;
        total.reconfigs_committed += s.reconfigs_committed;
        total.removals += s.removals;
        total.additions += s.additions;
        total.snaps += s.snaps;
        total.handoffs += s.handoffs;
    }
    println!("{count} seeds with reconfigs: {total:?}");
    assert!(
        total.reconfigs_committed > count as usize / 2,
        "too few reconfigs committed: {total:?}"
    );
    assert!(
        total.removals > count as usize / 10 && total.additions > count as usize / 10,
        "too few removals or additions: {total:?}"
    );
    assert!(total.crashes > count as usize, "too few crashes: {total:?}");
}
