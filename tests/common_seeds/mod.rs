//! The seeds of a simulator's longer search, from the environment.

/// The seeds `var` names: a count `N` (seeds 0..N) or a span `FROM..TO` (to skip
/// seeds already run); `None` when it is unset. Anything else panics, saying what was
/// expected.
pub fn seed_span(var: &str) -> Option<std::ops::Range<u64>> {
    let v = std::env::var(var).ok()?;
    let parsed = match v.split_once("..") {
        Some((a, b)) => a.parse().ok().zip(b.parse().ok()),
        None => v.parse().ok().map(|n| (0, n)),
    };
    match parsed {
        Some((from, to)) if from < to => Some(from..to),
        _ => panic!("{var}={v}: expected a count N or a span FROM..TO with FROM < TO"),
    }
}
