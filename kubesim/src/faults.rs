//! Fault injection: fail the next N matching requests, fail a share of matching requests at
//! random, delay responses, close watches.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A rule failing the next `count` requests that match `verb` and `resource` (`*` = any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailRule {
    /// How many more requests to fail.
    pub count: u32,
    /// Kubernetes verb (`create`, `patch`, `list`, …) or `*`.
    pub verb: String,
    /// Plural resource (`pods`, `pipelines`) or `*`.
    pub resource: String,
    /// HTTP status to answer with (429, 500, 409, …).
    pub code: u16,
}

/// A rule failing each matching request with a probability, with a code drawn from `codes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomRule {
    /// Share of matching requests to fail, in percent (0–100).
    pub percent: f64,
    /// Kubernetes verb or `*`.
    pub verb: String,
    /// Plural resource or `*`.
    pub resource: String,
    /// HTTP statuses to answer with, drawn uniformly.
    pub codes: Vec<u16>,
}

/// SplitMix64: a small, seedable generator, so a fault sequence can be replayed.
#[derive(Debug)]
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw in [0, 100).
    fn percent(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 100.0
    }
}

/// Fault state shared by the server; cheap to query on every request.
#[derive(Debug)]
pub struct Faults {
    rules: Mutex<Vec<FailRule>>,
    random: Mutex<(Vec<RandomRule>, Draws)>,
    delay: Mutex<Duration>,
    watch_epoch: tokio::sync::watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rules: Mutex::new(Vec::new()),
            random: Mutex::new((Vec::new(), Draws(0))),
            delay: Mutex::new(Duration::ZERO),
            watch_epoch: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Faults {
    /// Fails the next `n` requests matching `verb` and `resource` (`"*"` matches any) with `code`.
    pub fn fail_next(&self, n: u32, verb: &str, resource: &str, code: u16) {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(FailRule {
                count: n,
                verb: verb.to_string(),
                resource: resource.to_string(),
                code,
            });
    }

    /// Fails each request matching `verb` and `resource` (`"*"` matches any) with probability
    /// `percent`/100, answering a code drawn uniformly from `codes`. Draws come from a generator
    /// seeded with `seed` (the last call's seed wins), so a run can be repeated.
    pub fn fail_randomly(
        &self,
        percent: f64,
        verb: &str,
        resource: &str,
        codes: &[u16],
        seed: u64,
    ) {
        let mut random = self.random.lock().unwrap_or_else(|p| p.into_inner());
        random.0.push(RandomRule {
            percent: percent.clamp(0.0, 100.0),
            verb: verb.to_string(),
            resource: resource.to_string(),
            codes: codes.to_vec(),
        });
        random.1 = Draws(seed);
    }

    /// Consumes one matching counted rule, or draws against the random rules; returns the
    /// status code to fail with.
    pub fn take(&self, verb: &str, resource: &str) -> Option<u16> {
        let matches = |v: &str, r: &str| (v == "*" || v == verb) && (r == "*" || r == resource);
        {
            let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(idx) = rules
                .iter()
                .position(|r| r.count > 0 && matches(&r.verb, &r.resource))
            {
                let code = rules[idx].code;
                rules[idx].count -= 1;
                if rules[idx].count == 0 {
                    rules.remove(idx);
                }
                return Some(code);
            }
        }
        let mut random = self.random.lock().unwrap_or_else(|p| p.into_inner());
        let (rules, draws) = &mut *random;
        for rule in rules.iter() {
            if rule.codes.is_empty() || !matches(&rule.verb, &rule.resource) {
                continue;
            }
            if draws.percent() < rule.percent {
                let pick = (draws.next() % rule.codes.len() as u64) as usize;
                return Some(rule.codes[pick]);
            }
        }
        None
    }

    /// Random rules in force.
    pub fn random_rules(&self) -> Vec<RandomRule> {
        self.random
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Pending rules.
    pub fn rules(&self) -> Vec<FailRule> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Delays every response by `d` (zero turns delays off).
    pub fn delay(&self, d: Duration) {
        *self.delay.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }

    /// The current response delay.
    pub fn current_delay(&self) -> Duration {
        *self.delay.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends every open watch (clients see the stream close and re-watch).
    pub fn close_watches(&self) {
        self.watch_epoch.send_modify(|e| *e += 1);
    }

    /// Subscribes to watch-closing.
    pub fn watch_epoch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.watch_epoch.subscribe()
    }

    /// Removes every rule (counted and random) and delay.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.random
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clear();
        self.delay(Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_and_count_down() {
        let f = Faults::default();
        f.fail_next(2, "create", "pods", 500);
        f.fail_next(1, "*", "*", 429);
        assert_eq!(f.take("create", "pods"), Some(500));
        assert_eq!(f.take("list", "pods"), Some(429));
        assert_eq!(f.take("list", "pods"), None);
        assert_eq!(f.take("create", "pods"), Some(500));
        assert_eq!(f.take("create", "pods"), None);
    }

    #[test]
    fn random_rules_fail_about_their_share_with_their_codes_and_replay_by_seed() {
        let draw = |seed: u64| {
            let f = Faults::default();
            f.fail_randomly(5.0, "*", "*", &[500, 429, 409], seed);
            f.fail_next(1, "get", "pods", 503);
            let first = f.take("get", "pods");
            let rest: Vec<Option<u16>> = (0..20_000).map(|_| f.take("list", "pods")).collect();
            (first, rest)
        };
        let (first, outcomes) = draw(7);
        assert_eq!(first, Some(503), "a counted rule goes first");
        let failed: Vec<u16> = outcomes.iter().flatten().copied().collect();
        let share = failed.len() as f64 / outcomes.len() as f64;
        assert!(
            (0.04..0.06).contains(&share),
            "failed {share:.3} of requests, not ~5%"
        );
        for code in [500, 429, 409] {
            let n = failed.iter().filter(|c| **c == code).count();
            assert!(
                n > failed.len() / 5,
                "code {code} drawn {n} times of {}",
                failed.len()
            );
        }
        assert!(failed.iter().all(|c| [500, 429, 409].contains(c)));
        assert_eq!(draw(7).1, outcomes, "the same seed replays the same faults");
        assert_ne!(draw(8).1, outcomes);

        let f = Faults::default();
        f.fail_randomly(100.0, "patch", "pipelines", &[500], 1);
        assert_eq!(
            f.take("get", "pipelines"),
            None,
            "only matching requests fail"
        );
        assert_eq!(f.take("patch", "pipelines"), Some(500));
        f.clear();
        assert_eq!(f.take("patch", "pipelines"), None);
        assert!(f.random_rules().is_empty());
    }
}
