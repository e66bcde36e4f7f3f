//! Fast leader election (ZooKeeper's `FastLeaderElection`) as a state machine.
//!
//! A vote names a candidate by (peer epoch, zxid, myid), compared in that order; a
//! round is numbered by the logical election epoch. Voters exchange notifications
//! all-to-all; a LOOKING voter adopts any better vote it hears and decides once a quorum
//! of voters agrees with its proposal and nothing better arrives for `finalize_ticks`.
//! A server that is late to a finished election joins it when a quorum reports
//! FOLLOWING/LEADING for the same leader and the leader itself reports LEADING.
//! Observers send and learn but are never counted and never proposed.
//!
//! Owns: the vote tallies of the current round and the resend backoff. Must not: open
//! connections (the driver delivers `Send`), read the clock (ticks are events), or decide
//! anything about epochs of the log (that is ZAB's discovery, in `peer`).

use super::{epoch_of, Ensemble, ServerId, Zxid};
use std::collections::BTreeMap;

/// A candidate: field order is the comparison order (peer epoch, zxid, myid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vote {
    pub epoch: u32,
    pub zxid: Zxid,
    pub leader: ServerId,
}

/// What a server says it is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Looking,
    Following,
    Leading,
    Observing,
}

/// One election message. `vote` is `None` only from an observer that has heard nothing
/// yet (ZooKeeper's `Long.MIN_VALUE` proposal); `None` orders below every vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notification {
    pub vote: Option<Vote>,
    pub state: State,
    pub election_epoch: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Begin (or begin again) looking, with what the log and the persisted current epoch
    /// say now (`Peer::vote_basis`).
    Start {
        last_zxid: Zxid,
        current_epoch: u32,
    },
    Notification {
        from: ServerId,
        notification: Notification,
    },
    Tick,
    /// ZAB established `epoch` under the elected leader (`peer::Action::Established` or
    /// `UpToDate`). The vote we report to late servers then carries the new epoch, so
    /// that every server of the ensemble reports the same one (ZooKeeper's
    /// `updateElectionVote`); without it a late server sees followers and leader
    /// disagree and never joins.
    Established {
        epoch: u32,
    },
    /// Leadership moved to `leader` without an election (`peer::Action::Moved`): this
    /// server now reports LEADING (if it is `leader`) or FOLLOWING/OBSERVING `leader`,
    /// so that a server that starts looking later joins the new leader.
    Moved {
        leader: ServerId,
    },
    /// A reconfig put `ensemble` in force: votes and quorums count over it from now.
    /// Ignored when it does not list this server (a removed server stops electing).
    Reconfigured {
        ensemble: Ensemble,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Send {
        to: ServerId,
        notification: Notification,
    },
    /// The round is decided; `state` is what this server becomes.
    Elected {
        leader: ServerId,
        vote: Vote,
        election_epoch: u64,
        state: State,
    },
}

/// Timing of an election, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a quorum must stand unchallenged before deciding (ZooKeeper's
    /// `finalizeWait`, 200 ms): a better vote still in flight gets this long to arrive.
    pub finalize_ticks: u64,
    /// First resend interval when nothing decides (ZooKeeper's notification timeout).
    pub resend_ticks: u64,
    /// Resend backoff ceiling, so a long partition costs a bounded trickle of messages.
    pub max_resend_ticks: u64,
}

impl Default for Timing {
    /// In 100 ms ticks: ZooKeeper's `finalizeWait` (200 ms), a first resend after as long
    /// (ZooKeeper's notification timeout starts at `finalizeWait` too), doubling up to
    /// 3.2 s. The first resend matters after a leader's death: a server that went looking
    /// first sent its vote to servers still following the dead leader, and they learn it
    /// only when it is resent (a looking server does not answer a worse vote of the same
    /// round, as in ZooKeeper).
    fn default() -> Timing {
        Timing {
            finalize_ticks: 2,
            resend_ticks: 2,
            max_resend_ticks: 32,
        }
    }
}

/// The election state machine of one server.
#[derive(Clone, Debug)]
pub struct Election {
    my_id: ServerId,
    ensemble: Ensemble,
    timing: Timing,
    state: State,
    started: bool,
    logical_clock: u64,
    /// Our own candidate vote for this round (voters) or nothing (observers).
    own: Option<Vote>,
    proposal: Option<Vote>,
    /// LOOKING votes of this round, per voter.
    recv: BTreeMap<ServerId, Option<Vote>>,
    /// FOLLOWING/LEADING reports, per server: (vote, election epoch, state).
    out_of_election: BTreeMap<ServerId, (Option<Vote>, u64, State)>,
    now: u64,
    finalize_at: Option<u64>,
    next_resend: u64,
    resend_interval: u64,
}

impl Election {
    /// # Panics
    /// If `my_id` is not a member of `ensemble`.
    pub fn new(my_id: ServerId, ensemble: Ensemble, timing: Timing) -> Election {
        assert!(
            ensemble.is_member(my_id),
            "server {my_id} is not in the ensemble"
        );
        Election {
            my_id,
            ensemble,
            timing,
            state: State::Looking,
            started: false,
            logical_clock: 0,
            own: None,
            proposal: None,
            recv: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            now: 0,
            finalize_at: None,
            next_resend: 0,
            resend_interval: timing.resend_ticks,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn logical_clock(&self) -> u64 {
        self.logical_clock
    }

    /// The vote this server currently stands for (its proposal, or the decided vote).
    pub fn current_vote(&self) -> Option<Vote> {
        self.proposal
    }

    pub fn step(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start {
                last_zxid,
                current_epoch,
            } => self.start(last_zxid, current_epoch, &mut out),
            Event::Notification { from, notification } => {
                self.receive(from, notification, &mut out)
            }
            Event::Tick => self.tick(&mut out),
            Event::Reconfigured { ensemble } => {
                if ensemble.is_member(self.my_id) {
                    self.ensemble = ensemble;
                }
            }
            Event::Established { epoch } => {
                if self.state != State::Looking {
                    if let Some(v) = self.proposal.as_mut() {
                        v.epoch = epoch;
                    }
                }
            }
            Event::Moved { leader } => {
                if self.started && self.ensemble.is_voter(leader) {
                    let base = self.proposal.or(self.own).unwrap_or(Vote {
                        epoch: 0,
                        zxid: 0,
                        leader,
                    });
                    self.proposal = Some(Vote { leader, ..base });
                    self.state = if leader == self.my_id {
                        State::Leading
                    } else if self.ensemble.is_voter(self.my_id) {
                        State::Following
                    } else {
                        State::Observing
                    };
                    self.recv.clear();
                    self.out_of_election.clear();
                    self.finalize_at = None;
                }
            }
        }
        out
    }

    fn my_notification(&self) -> Notification {
        Notification {
            vote: self.proposal,
            state: self.state,
            election_epoch: self.logical_clock,
        }
    }

    fn start(&mut self, last_zxid: Zxid, current_epoch: u32, out: &mut Vec<Action>) {
        debug_assert!(
            epoch_of(last_zxid) <= current_epoch,
            "vote below its own log's epoch"
        );
        self.started = true;
        self.state = State::Looking;
        self.logical_clock += 1;
        self.own = if self.ensemble.is_voter(self.my_id) {
            Some(Vote {
                epoch: current_epoch,
                zxid: last_zxid,
                leader: self.my_id,
            })
        } else {
            None
        };
        self.proposal = self.own;
        self.recv.clear();
        self.out_of_election.clear();
        self.finalize_at = None;
        self.resend_interval = self.timing.resend_ticks;
        self.next_resend = self.now + self.resend_interval;
        self.broadcast(out);
    }

    /// Voters talk to every other voter; observers only to voters (ZooKeeper sends
    /// notifications to the voting view).
    fn broadcast(&self, out: &mut Vec<Action>) {
        let n = self.my_notification();
        for &to in &self.ensemble.voters {
            if to != self.my_id {
                out.push(Action::Send {
                    to,
                    notification: n,
                });
            }
        }
    }

    fn receive(&mut self, from: ServerId, n: Notification, out: &mut Vec<Action>) {
        if !self.started || from == self.my_id {
            return;
        }
        if !self.ensemble.is_member(from) {
            // A server outside our config: one a reconfig we have not put in force yet
            // added (ZooKeeper's notifications carry the config; ours do not). Its vote
            // never counts, but its word that it leads lets us join a leader that a
            // quorum of our config follows; syncing with it then brings the config.
            if self.state == State::Looking && n.state == State::Leading {
                self.out_of_election
                    .insert(from, (n.vote, n.election_epoch, n.state));
                if let Some(v) = n.vote {
                    self.join_if_followed(v, n.election_epoch, out);
                }
            }
            return;
        }
        if self.state != State::Looking {
            // A decided server tells a looking one what it decided, so late servers join.
            if n.state == State::Looking {
                out.push(Action::Send {
                    to: from,
                    notification: self.my_notification(),
                });
            }
            return;
        }
        let from_voter = self.ensemble.is_voter(from);
        if !from_voter {
            // An observer's vote never counts; answering lets it find the leader.
            if n.state == State::Looking {
                out.push(Action::Send {
                    to: from,
                    notification: self.my_notification(),
                });
            }
            return;
        }
        match n.state {
            State::Looking => {
                // A vote is adopted whatever server it names, unlike ZooKeeper, which
                // drops one naming a server outside its current and next voters
                // (`validVoter(n.leader)`): its notifications carry the sender's config,
                // so a server that missed a reconfig learns it there, while ours do not,
                // and refusing a leader a missed reconfig made a voter could leave the
                // new config's quorum without this server's vote for good. A vote for a
                // server that cannot lead (a stale one of a server made an observer)
                // costs an initLimit: it is named, does not lead (`Peer::on_lead` sends
                // it back to looking), and its followers give up on it.
                if n.election_epoch < self.logical_clock {
                    // A stale round: bring the sender forward instead of counting it.
                    out.push(Action::Send {
                        to: from,
                        notification: self.my_notification(),
                    });
                    return;
                }
                if n.election_epoch > self.logical_clock {
                    self.logical_clock = n.election_epoch;
                    self.recv.clear();
                    self.proposal = self.own.max(n.vote);
                    self.finalize_at = None;
                    self.broadcast(out);
                } else if n.vote > self.proposal {
                    self.proposal = n.vote;
                    self.finalize_at = None;
                    self.broadcast(out);
                }
                self.recv.insert(from, n.vote);
                self.check_looking_quorum();
            }
            State::Following | State::Leading | State::Observing => {
                if n.state == State::Observing {
                    return;
                }
                self.out_of_election
                    .insert(from, (n.vote, n.election_epoch, n.state));
                if n.election_epoch == self.logical_clock {
                    self.recv.insert(from, n.vote);
                    if let Some(v) = n.vote {
                        if self.agree_count_recv(v) && self.leader_confirmed(v, n.election_epoch) {
                            self.decide(v, out);
                            return;
                        }
                    }
                }
                if let Some(v) = n.vote {
                    self.join_if_followed(v, n.election_epoch, out);
                }
            }
        }
    }

    /// Joins the decided election for `v` when a quorum of our voters follow it and the
    /// leader says it leads.
    fn join_if_followed(&mut self, v: Vote, election_epoch: u64, out: &mut Vec<Action>) {
        let agreeing = self
            .out_of_election
            .iter()
            // Servers that joined a decided election late report other round numbers;
            // leader and epoch are what must agree (ZOOKEEPER-1732).
            .filter(|(_, (w, _, _))| w.is_some_and(|w| w.leader == v.leader && w.epoch == v.epoch))
            .map(|(id, _)| *id);
        if super::quorum::is_quorum(&self.ensemble, agreeing)
            && self.leader_confirmed(v, election_epoch)
        {
            self.logical_clock = election_epoch;
            self.decide(v, out);
        }
    }

    /// True when a quorum of this round's LOOKING votes (ours included) equals `v`.
    fn agree_count_recv(&self, v: Vote) -> bool {
        let mine =
            (self.proposal == Some(v) && self.ensemble.is_voter(self.my_id)).then_some(self.my_id);
        let others = self
            .recv
            .iter()
            .filter(|(_, w)| **w == Some(v))
            .map(|(id, _)| *id);
        super::quorum::is_quorum(&self.ensemble, others.chain(mine))
    }

    /// ZooKeeper's `checkLeader`: joining a decided election needs the leader itself to
    /// say LEADING, or, when we are the named leader, that the round is ours.
    fn leader_confirmed(&self, v: Vote, election_epoch: u64) -> bool {
        if v.leader == self.my_id {
            return self.logical_clock == election_epoch;
        }
        if !self.ensemble.is_member(v.leader) {
            // A leader a reconfig we have not seen yet added: we do not talk to it, so
            // a quorum of our voters following it is all we can know (a dead one is
            // left when its FOLLOWERINFO goes unanswered).
            return true;
        }
        matches!(
            self.out_of_election.get(&v.leader),
            Some((_, _, State::Leading))
        )
    }

    fn check_looking_quorum(&mut self) {
        match self.proposal {
            Some(v) if self.agree_count_recv(v) => {
                if self.finalize_at.is_none() {
                    self.finalize_at = Some(self.now + self.timing.finalize_ticks);
                }
            }
            _ => self.finalize_at = None,
        }
    }

    fn tick(&mut self, out: &mut Vec<Action>) {
        self.now += 1;
        if !self.started || self.state != State::Looking {
            return;
        }
        if let (Some(at), Some(v)) = (self.finalize_at, self.proposal) {
            if self.now >= at && self.agree_count_recv(v) {
                self.decide(v, out);
                return;
            }
        }
        if self.now >= self.next_resend {
            self.resend_interval = (self.resend_interval * 2).min(self.timing.max_resend_ticks);
            self.next_resend = self.now + self.resend_interval;
            self.broadcast(out);
        }
    }

    fn decide(&mut self, v: Vote, out: &mut Vec<Action>) {
        self.proposal = Some(v);
        self.finalize_at = None;
        self.state = if v.leader == self.my_id {
            State::Leading
        } else if self.ensemble.is_voter(self.my_id) {
            State::Following
        } else {
            State::Observing
        };
        self.recv.clear();
        self.out_of_election.clear();
        out.push(Action::Elected {
            leader: v.leader,
            vote: v,
            election_epoch: self.logical_clock,
            state: self.state,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver_all(
        servers: &mut [Election],
        mut pending: Vec<(ServerId, Action)>,
    ) -> Vec<(ServerId, Action)> {
        let mut decided = Vec::new();
        // Bounded: each round of delivery is finite and an election settles in a few.
        for _ in 0..1000 {
            if pending.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for (from, a) in pending.drain(..) {
                match a {
                    Action::Send { to, notification } => {
                        let s = &mut servers[(to - 1) as usize];
                        for b in s.step(Event::Notification { from, notification }) {
                            next.push((to, b));
                        }
                    }
                    e @ Action::Elected { .. } => decided.push((from, e)),
                }
            }
            pending = next;
        }
        decided
    }

    #[test]
    fn three_voters_elect_the_highest_zxid() {
        let e = Ensemble::new(vec![1, 2, 3], vec![]);
        let mut s: Vec<Election> = (1..=3)
            .map(|id| Election::new(id, e.clone(), Timing::default()))
            .collect();
        let mut pending = Vec::new();
        for (i, zxid) in [(1u64, 5u64), (2, 9), (3, 7)] {
            for a in s[(i - 1) as usize].step(Event::Start {
                last_zxid: zxid,
                current_epoch: 0,
            }) {
                pending.push((i, a));
            }
        }
        assert!(
            deliver_all(&mut s, pending).is_empty(),
            "nobody decides before finalize"
        );
        let mut decided = Vec::new();
        for _ in 0..3 {
            for server in s.iter_mut() {
                for a in server.step(Event::Tick) {
                    if let Action::Elected { leader, .. } = a {
                        decided.push(leader);
                    }
                }
            }
        }
        assert_eq!(decided, vec![2, 2, 2]);
        assert_eq!(s[1].state(), State::Leading);
    }
}
