//! Fault injection: fail the next N matching requests, delay responses, close watches.

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

/// Fault state shared by the server; cheap to query on every request.
#[derive(Debug)]
pub struct Faults {
    rules: Mutex<Vec<FailRule>>,
    delay: Mutex<Duration>,
    watch_epoch: tokio::sync::watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rules: Mutex::new(Vec::new()),
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

    /// Consumes one matching rule, returning the status code to fail with.
    pub fn take(&self, verb: &str, resource: &str) -> Option<u16> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let idx = rules.iter().position(|r| {
            r.count > 0
                && (r.verb == "*" || r.verb == verb)
                && (r.resource == "*" || r.resource == resource)
        })?;
        let code = rules[idx].code;
        rules[idx].count -= 1;
        if rules[idx].count == 0 {
            rules.remove(idx);
        }
        Some(code)
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

    /// Removes every rule and delay.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
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
}
