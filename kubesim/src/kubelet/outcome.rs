//! The configurable rule that decides how bound pods move Pending → Running → Succeeded/Failed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// What happens to one pod once it is bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFate {
    /// Time from binding to Running.
    pub start_after: Duration,
    /// Time from Running to the end, and whether it succeeds; `None` runs forever.
    pub finish: Option<(Duration, bool)>,
    /// What the first container leaves in its `terminationMessagePath` when it ends, which the
    /// kubelet reports as `state.terminated.message` (cut to 4096 bytes, as a kubelet does).
    pub termination_message: Option<String>,
}

/// The rule deciding each pod's fate. The default: pods owned by a Job succeed one second
/// after starting; other pods run forever. Annotations override any rule:
/// `kubesim.io/phase: Succeeded|Failed|Running`, `kubesim.io/run-seconds: "N"`.
#[derive(Clone)]
pub struct PodOutcome(Arc<dyn Fn(&Value) -> PodFate + Send + Sync>);

impl std::fmt::Debug for PodOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PodOutcome(..)")
    }
}

impl Default for PodOutcome {
    fn default() -> Self {
        PodOutcome::new(|pod| {
            let owned_by_job = pod
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|o| o["kind"] == "Job"));
            PodFate {
                start_after: Duration::from_millis(200),
                finish: owned_by_job.then_some((Duration::from_secs(1), true)),
                termination_message: None,
            }
        })
    }
}

impl PodOutcome {
    /// A custom rule.
    pub fn new(f: impl Fn(&Value) -> PodFate + Send + Sync + 'static) -> Self {
        PodOutcome(Arc::new(f))
    }

    /// Every pod ends this way after `run` (Succeeded when `succeed`, else Failed).
    pub fn all(run: Duration, succeed: bool) -> Self {
        PodOutcome::new(move |_| PodFate {
            start_after: Duration::from_millis(100),
            finish: Some((run, succeed)),
            termination_message: None,
        })
    }

    /// The fate of a pod, annotations first.
    pub fn fate(&self, pod: &Value) -> PodFate {
        let mut fate = (self.0)(pod);
        let ann = |k: &str| {
            pod.pointer(&format!("/metadata/annotations/{}", k.replace('/', "~1")))
                .and_then(Value::as_str)
        };
        let run = ann("kubesim.io/run-seconds")
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        match ann("kubesim.io/phase") {
            Some("Succeeded") => fate.finish = Some((run.unwrap_or(Duration::from_secs(1)), true)),
            Some("Failed") => fate.finish = Some((run.unwrap_or(Duration::from_secs(1)), false)),
            Some("Running") => fate.finish = None,
            _ => {
                if let (Some(r), Some((_, ok))) = (run, fate.finish) {
                    fate.finish = Some((r, ok));
                }
            }
        }
        fate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_override_the_rule() {
        let o = PodOutcome::default();
        let job_pod = json!({"metadata": {"ownerReferences": [{"kind": "Job"}]}});
        assert_eq!(
            o.fate(&job_pod).finish,
            Some((Duration::from_secs(1), true))
        );
        let plain = json!({"metadata": {}});
        assert_eq!(o.fate(&plain).finish, None);
        let failing = json!({"metadata": {"annotations": {"kubesim.io/phase": "Failed", "kubesim.io/run-seconds": "0.5"}}});
        assert_eq!(
            o.fate(&failing).finish,
            Some((Duration::from_millis(500), false))
        );
    }
}
