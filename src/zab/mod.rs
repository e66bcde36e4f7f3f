//! Replication core: fast leader election and ZAB (discovery, synchronization,
//! broadcast) as pure state machines. Events go in (a peer message, a tick, "durable
//! through log write N", "epoch persisted"), actions come out (send, append, truncate,
//! persist an epoch, committed). The driver in `server/` and the simulator in
//! `tests/zab_sim/` carry the actions out.
//!
//! This module must not open sockets or files, spawn threads, or read the clock: time is
//! `Tick` events, durability is `Durable`/`EpochPersisted` events. Iteration order is
//! deterministic everywhere (BTreeMap, Vec) so a simulated run replays exactly.
//!
//! The glue between the two machines is the driver's: `election::Action::Elected` becomes
//! `peer::Event::Lead` or `peer::Event::Follow`, and `peer::Action::Looking` becomes
//! `election::Event::Start` with `Peer::vote_basis()`.

pub mod election;
pub mod msg;
pub mod peer;
pub mod quorum;
pub mod txns;

/// A server's `myid`.
pub type ServerId = u64;

/// A ZooKeeper transaction id: `(epoch << 32) | counter`.
pub type Zxid = u64;

/// Builds a zxid from its epoch and counter.
pub const fn make_zxid(epoch: u32, counter: u32) -> Zxid {
    ((epoch as u64) << 32) | counter as u64
}

/// The epoch half of a zxid.
pub const fn epoch_of(zxid: Zxid) -> u32 {
    (zxid >> 32) as u32
}

/// The counter half of a zxid.
pub const fn counter_of(zxid: Zxid) -> u32 {
    zxid as u32
}

/// One logged transaction. The payload is opaque here: the tree and the txn codec own
/// its meaning, replication only orders and stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    pub zxid: Zxid,
    pub payload: bytes::Bytes,
}

/// Who is in the ensemble: voters elect and acknowledge, observers only learn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ensemble {
    pub voters: Vec<ServerId>,
    pub observers: Vec<ServerId>,
}

impl Ensemble {
    /// Builds an ensemble; ids must be distinct and there must be at least one voter.
    ///
    /// # Panics
    /// On a duplicate id or no voters: a configuration bug, `config` validates first.
    pub fn new(mut voters: Vec<ServerId>, mut observers: Vec<ServerId>) -> Ensemble {
        voters.sort_unstable();
        observers.sort_unstable();
        assert!(!voters.is_empty(), "an ensemble needs at least one voter");
        let mut all: Vec<ServerId> = voters.iter().chain(observers.iter()).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            voters.len() + observers.len(),
            "duplicate server id"
        );
        Ensemble { voters, observers }
    }

    pub fn is_voter(&self, id: ServerId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    pub fn is_member(&self, id: ServerId) -> bool {
        self.is_voter(id) || self.observers.binary_search(&id).is_ok()
    }

    /// The number of voters that make a majority.
    pub fn quorum_size(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}
