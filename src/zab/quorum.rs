//! Majority arithmetic over the voters of an ensemble. Observers never count.
//! Must not know about messages or phases: callers say who agrees.

use super::{Ensemble, ServerId, Zxid};

/// True when the distinct voters among `ids` form a majority of the voters.
pub fn is_quorum<I: IntoIterator<Item = ServerId>>(ensemble: &Ensemble, ids: I) -> bool {
    let mut seen: Vec<ServerId> = ids
        .into_iter()
        .filter(|id| ensemble.is_voter(*id))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len() >= ensemble.quorum_size()
}

/// The highest zxid that a majority of voters have made durable, given each voter's
/// highest durable zxid (voters absent from `acks` count as zero).
pub fn quorum_zxid<I: IntoIterator<Item = (ServerId, Zxid)>>(ensemble: &Ensemble, acks: I) -> Zxid {
    let mut per_voter: Vec<(ServerId, Zxid)> = acks
        .into_iter()
        .filter(|(id, _)| ensemble.is_voter(*id))
        .collect();
    per_voter.sort_unstable();
    per_voter.dedup_by_key(|(id, _)| *id);
    let mut zxids: Vec<Zxid> = per_voter.into_iter().map(|(_, z)| z).collect();
    let q = ensemble.quorum_size();
    if zxids.len() < q {
        return 0;
    }
    // Sorted descending, the q-th value is held by at least q voters.
    zxids.sort_unstable_by(|a, b| b.cmp(a));
    zxids[q - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_ignores_observers_and_duplicates() {
        let e = Ensemble::new(vec![1, 2, 3], vec![4]);
        assert!(!is_quorum(&e, [1, 1, 4]));
        assert!(is_quorum(&e, [1, 3]));
        assert_eq!(quorum_zxid(&e, [(1, 9), (2, 5), (4, 100)]), 5);
        assert_eq!(quorum_zxid(&e, [(1, 9)]), 0);
    }
}
