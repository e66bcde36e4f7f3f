//! Limits that protect the server, as ZooKeeper 3.9 defines them: the connection token
//! bucket with optional randomized (BLUE) dropping (`BlueThrottle`), and the budget of
//! bytes that large requests may hold (`largeRequestMaxBytes` / `largeRequestThreshold`).
//! Pure: time and randomness are inputs.
//!
//! The token bucket is consulted once per connect request (not per TCP accept), as
//! `ZooKeeperServer.processConnectRequest` does; a refused connect closes the connection.

/// The connection throttle's settings (zoo.cfg `connection*` keys, see docs/security.md).
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleConfig {
    /// `connectionMaxTokens`: the bucket's size; 0 turns the throttle off.
    pub max_tokens: i64,
    /// `connectionTokenFillTime`: ms between refills.
    pub fill_time_ms: i64,
    /// `connectionTokenFillCount`: tokens per refill.
    pub fill_count: i64,
    /// `connectionFreezeTime`: ms between drop-probability adjustments; -1 turns
    /// randomized dropping off.
    pub freeze_time_ms: i64,
    /// `connectionDropIncrease`.
    pub drop_increase: f64,
    /// `connectionDropDecrease`.
    pub drop_decrease: f64,
    /// `connectionDecreaseRatio`.
    pub decrease_ratio: f64,
    /// `connection_throttle_weight_enabled`: a new session costs `global_weight`
    /// tokens, a resumed one `renew_weight`; otherwise each costs one.
    pub weight_enabled: bool,
    pub global_weight: i64,
    pub renew_weight: i64,
}

// The ratios are finite (config rejects anything else), so equality is total.
impl Eq for ThrottleConfig {}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_tokens: 0,
            fill_time_ms: 1,
            fill_count: 1,
            freeze_time_ms: -1,
            drop_increase: 0.02,
            drop_decrease: 0.002,
            decrease_ratio: 0.0,
            weight_enabled: false,
            global_weight: 3,
            renew_weight: 2,
        }
    }
}

/// The connection token bucket (`BlueThrottle.checkLimit` / `checkBlue`).
#[derive(Debug, Clone)]
pub struct ConnThrottle {
    cfg: ThrottleConfig,
    tokens: i64,
    last_fill_ms: i64,
    last_freeze_ms: i64,
    drop: f64,
}

impl ConnThrottle {
    /// A full bucket at `now_ms`.
    pub fn new(cfg: ThrottleConfig, now_ms: i64) -> Self {
        ConnThrottle {
            tokens: cfg.max_tokens,
            cfg,
            last_fill_ms: now_ms,
            last_freeze_ms: now_ms,
            drop: 0.0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.max_tokens != 0
    }

    /// Tokens a connect request costs: `resuming` is a non-zero session id.
    pub fn cost(&self, resuming: bool) -> i64 {
        match (self.cfg.weight_enabled, resuming) {
            (false, _) => 1,
            (true, false) => self.cfg.global_weight,
            (true, true) => self.cfg.renew_weight,
        }
    }

    /// Whether a connect request needing `need` tokens may go on at `now_ms`; it takes
    /// them if so. `random` is uniform in [0, 1) (used only with randomized dropping).
    pub fn check(&mut self, need: i64, now_ms: i64, random: f64) -> bool {
        if self.cfg.max_tokens == 0 {
            return true;
        }
        let diff = now_ms - self.last_fill_ms;
        if diff > self.cfg.fill_time_ms {
            let refill = diff.saturating_mul(self.cfg.fill_count) / self.cfg.fill_time_ms.max(1);
            self.tokens = self.tokens.saturating_add(refill).min(self.cfg.max_tokens);
            self.last_fill_ms = now_ms;
        }
        if self.cfg.freeze_time_ms != -1 && !self.check_blue(now_ms, random) {
            return false;
        }
        if self.tokens < need {
            return false;
        }
        self.tokens -= need;
        true
    }

    fn check_blue(&mut self, now_ms: i64, random: f64) -> bool {
        let length = self.cfg.max_tokens - self.tokens;
        let limit = self.cfg.max_tokens;
        let threshold = (self.cfg.max_tokens as f64 * self.cfg.decrease_ratio).round() as i64;
        if now_ms - self.last_freeze_ms > self.cfg.freeze_time_ms {
            if length == limit && self.drop < 1.0 {
                self.drop = (self.drop + self.cfg.drop_increase).min(1.0);
            } else if length <= threshold && self.drop > 0.0 {
                self.drop = (self.drop - self.cfg.drop_decrease).max(0.0);
            }
            self.last_freeze_ms = now_ms;
        }
        random >= self.drop
    }

    /// The current drop probability (for tests and mntr).
    pub fn drop_chance(&self) -> f64 {
        self.drop
    }
}

/// `largeRequestMaxBytes` / `largeRequestThreshold`: requests longer than the threshold
/// may hold at most `max_bytes` between them, from when they are read until they are
/// answered; one that would exceed it closes its connection (ZooKeeper's
/// `checkRequestSizeWhenReceivingMessage` / `...WhenMessageReceived`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LargeRequests {
    pub max_bytes: i64,
    /// -1: off.
    pub threshold: i64,
}

impl Default for LargeRequests {
    fn default() -> Self {
        LargeRequests {
            max_bytes: 100 * 1024 * 1024,
            threshold: -1,
        }
    }
}

impl LargeRequests {
    /// Whether a frame of `len` bytes counts as large.
    #[inline]
    pub fn is_large(&self, len: usize) -> bool {
        self.threshold != -1 && len as i64 > self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(max: i64, fill_time: i64, fill_count: i64) -> ConnThrottle {
        ConnThrottle::new(
            ThrottleConfig {
                max_tokens: max,
                fill_time_ms: fill_time,
                fill_count,
                ..Default::default()
            },
            0,
        )
    }

    #[test]
    fn zero_tokens_means_off() {
        let mut t = bucket(0, 1, 1);
        assert!(!t.enabled());
        assert!((0..1000).all(|_| t.check(1, 0, 0.0)));
    }

    #[test]
    fn bucket_empties_and_refills_by_fill_count_per_fill_time() {
        let mut t = bucket(3, 100, 2);
        assert!(t.check(1, 0, 0.0) && t.check(1, 0, 0.0) && t.check(1, 0, 0.0));
        assert!(
            !t.check(1, 50, 0.0),
            "empty, and no refill before fill time"
        );
        // 150 ms after the last fill: 150 * 2 / 100 = 3 tokens.
        assert!(t.check(3, 150, 0.0));
        assert!(!t.check(1, 150, 0.0));
        // Never above the bucket's size.
        assert!(t.check(3, 10_000, 0.0));
        assert!(!t.check(1, 10_000, 0.0));
    }

    #[test]
    fn weights_apply_only_when_enabled() {
        let t = bucket(10, 1, 1);
        assert_eq!((t.cost(false), t.cost(true)), (1, 1));
        let w = ConnThrottle::new(
            ThrottleConfig {
                max_tokens: 10,
                weight_enabled: true,
                ..Default::default()
            },
            0,
        );
        assert_eq!((w.cost(false), w.cost(true)), (3, 2));
    }

    #[test]
    fn blue_raises_the_drop_chance_while_the_bucket_is_empty() {
        let mut t = ConnThrottle::new(
            ThrottleConfig {
                max_tokens: 1,
                fill_time_ms: 1_000_000,
                freeze_time_ms: 10,
                drop_increase: 0.5,
                drop_decrease: 0.25,
                ..Default::default()
            },
            0,
        );
        assert!(t.check(1, 0, 0.99));
        assert!(!t.check(1, 11, 0.99), "empty: refused, drop chance now 0.5");
        assert_eq!(t.drop_chance(), 0.5);
        assert!(
            !t.check(1, 12, 0.1),
            "dropped at random before the bucket is looked at"
        );
        assert!(!t.check(1, 30, 0.99));
        assert_eq!(t.drop_chance(), 1.0);
    }

    #[test]
    fn large_request_threshold() {
        let off = LargeRequests::default();
        assert!(!off.is_large(usize::MAX / 2));
        let on = LargeRequests {
            max_bytes: 1000,
            threshold: 100,
        };
        assert!(!on.is_large(100) && on.is_large(101));
    }
}
