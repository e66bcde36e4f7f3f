//! Deterministic pseudo-random numbers and key distributions for the load generator.
//!
//! A seeded generator per session keeps runs reproducible; no external crate is needed
//! for a 64-bit mixer and the zipfian sampler.

/// wyrand: a fast 64-bit generator, good enough for picking keys and ops.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Mix the seed so that consecutive seeds (session 0, 1, 2...) diverge at once.
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// How keys are drawn from the key space `[0, n)`.
#[derive(Debug, Clone)]
pub enum KeyDist {
    Uniform { n: u64 },
    Zipfian(Zipfian),
}

impl KeyDist {
    pub fn uniform(n: u64) -> KeyDist {
        assert!(n > 0, "empty key space");
        KeyDist::Uniform { n }
    }

    pub fn zipfian(n: u64, theta: f64) -> KeyDist {
        KeyDist::Zipfian(Zipfian::new(n, theta))
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyDist::Uniform { n } => rng.below(*n),
            KeyDist::Zipfian(z) => z.sample(rng),
        }
    }

    pub fn name(&self) -> String {
        match self {
            KeyDist::Uniform { .. } => "uniform".into(),
            KeyDist::Zipfian(z) => format!("zipfian({})", z.theta),
        }
    }
}

/// The zipfian sampler of Gray et al., "Quickly generating billion-record synthetic
/// databases" (as YCSB uses it): rank 0 is the hottest key. Set-up is O(n) for the zeta
/// constant, run-time O(1).
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    pub fn new(n: u64, theta: f64) -> Zipfian {
        assert!(n > 0, "empty key space");
        assert!(
            theta > 0.0 && theta < 1.0,
            "zipfian theta must be in (0, 1), got {theta}"
        );
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let alpha = 1.0 / (1.0 - theta);
        let eta = if n > 1 {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        } else {
            0.0
        };
        Zipfian {
            n,
            theta,
            alpha,
            zetan,
            eta,
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 || self.n == 1 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let v = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(1);
        let d = KeyDist::uniform(10);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[d.sample(&mut rng) as usize] += 1;
        }
        // Each bucket expects 1000; 700 is more than 9 standard deviations away.
        assert!(seen.iter().all(|&c| c > 700), "{seen:?}");
    }

    #[test]
    fn zipfian_is_skewed_towards_rank_zero() {
        let mut rng = Rng::new(2);
        let d = KeyDist::zipfian(1000, 0.99);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[d.sample(&mut rng) as usize] += 1;
        }
        // With theta 0.99 over 1000 keys rank 0 takes about 13% of draws and the
        // bottom half of the key space well under 10%.
        assert!(counts[0] > 10_000, "rank 0 drew {}", counts[0]);
        assert!(counts[0] > counts[1] && counts[1] > counts[10]);
        let tail: u32 = counts[500..].iter().sum();
        assert!(tail < 10_000, "tail drew {tail}");
    }
}
