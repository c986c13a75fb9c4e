//! Job (NonIndexed and Indexed) and CronJob controllers.
//!
//! Reproduces the observable parts of <https://kubernetes.io/docs/concepts/workloads/controllers/job/>
//! (`completions`, `parallelism`, `backoffLimit`, `completionMode: Indexed` with
//! `batch.kubernetes.io/job-completion-index` and `JOB_COMPLETION_INDEX`, `suspend`,
//! `ttlSecondsAfterFinished`, status counts and the `SuccessCriteriaMet`/`Complete`,
//! `FailureTarget`/`Failed` conditions) and
//! <https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/> (schedules, concurrency
//! policy, history limits, `lastScheduleTime`/`lastSuccessfulTime`).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::util::{
    controller_ref, create, delete, deleting, keep_times, name, namespace, owned, phase,
    pod_from_template, pod_ready, rt, set_status,
};
use crate::objects::Objects;

fn int(o: &Value, path: &str, default: i64) -> i64 {
    o.pointer(path).and_then(Value::as_i64).unwrap_or(default)
}

fn finished_condition(job: &Value) -> Option<&'static str> {
    let conds = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)?;
    if conds
        .iter()
        .any(|c| c["type"] == "Complete" && c["status"] == "True")
    {
        return Some("Complete");
    }
    if conds
        .iter()
        .any(|c| c["type"] == "Failed" && c["status"] == "True")
    {
        return Some("Failed");
    }
    None
}

/// Renders `0-2,4` from a set of indexes.
fn index_ranges(set: &BTreeSet<i64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().peekable();
    while let Some(&start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

fn pod_index(p: &Value) -> Option<i64> {
    p.pointer("/metadata/annotations/batch.kubernetes.io~1job-completion-index")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

/// One pass over Jobs. Returns whether anything was written.
pub fn jobs(objects: &Objects) -> bool {
    let (Some(job_rt), Some(pod_rt)) = (
        rt(objects, "batch", "v1", "jobs"),
        rt(objects, "", "v1", "pods"),
    ) else {
        return false;
    };
    let (jobs, _) = objects.store().list(&job_rt.storage, None, None);
    let now = crate::meta::now();
    let mut acted = false;
    for job in jobs.iter().filter(|j| !deleting(j)) {
        let ns = namespace(job);
        let pods: Vec<_> = owned(objects, &pod_rt, job)
            .into_iter()
            .filter(|p| !deleting(p))
            .collect();
        let succeeded_pods: Vec<_> = pods.iter().filter(|p| phase(p) == "Succeeded").collect();
        let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i64;
        let active: Vec<_> = pods
            .iter()
            .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
            .collect();
        let completions = int(job, "/spec/completions", 1);
        let parallelism = int(job, "/spec/parallelism", 1);
        let backoff = int(job, "/spec/backoffLimit", 6);
        let indexed =
            job.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed");
        let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        let done_indexes: BTreeSet<i64> =
            succeeded_pods.iter().filter_map(|p| pod_index(p)).collect();
        let succeeded = if indexed {
            done_indexes.len() as i64
        } else {
            succeeded_pods.len() as i64
        };
        let finished = finished_condition(job);
        let complete = succeeded >= completions;
        let failed_out = failed > backoff;
        if finished.is_none() && !complete && !failed_out && !suspended {
            let room = (parallelism - active.len() as i64).max(0);
            let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
            if indexed {
                let busy: BTreeSet<i64> = active.iter().filter_map(|p| pod_index(p)).collect();
                let todo: Vec<i64> = (0..completions)
                    .filter(|i| !done_indexes.contains(i) && !busy.contains(i))
                    .take(room as usize)
                    .collect();
                for i in todo {
                    let mut pod =
                        pod_from_template(&template, job, None, &format!("{}-{i}-", name(job)));
                    pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] =
                        json!(i.to_string());
                    pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] =
                        json!(i.to_string());
                    pod["spec"]["hostname"] = json!(format!("{}-{i}", name(job)));
                    if let Some(cs) = pod["spec"]["containers"].as_array_mut() {
                        for c in cs {
                            let env = c["env"].as_array().cloned().unwrap_or_default();
                            let mut env: Vec<Value> = env
                                .into_iter()
                                .filter(|e| e["name"] != "JOB_COMPLETION_INDEX")
                                .collect();
                            env.push(json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}));
                            c["env"] = Value::Array(env);
                        }
                    }
                    acted |= create(objects, &pod_rt, ns, pod).is_some();
                }
            } else {
                let remaining = (completions - succeeded - active.len() as i64).max(0);
                for _ in 0..room.min(remaining) {
                    let pod = pod_from_template(&template, job, None, &format!("{}-", name(job)));
                    acted |= create(objects, &pod_rt, ns, pod).is_some();
                }
            }
        }
        if (failed_out || suspended) && finished.is_none() {
            for p in &active {
                delete(objects, &pod_rt, ns, name(p));
                acted = true;
            }
        }
        let mut status = job.get("status").cloned().unwrap_or(json!({}));
        if status.get("startTime").is_none() && !suspended {
            status["startTime"] = json!(now);
        }
        status["active"] = json!(if finished.is_some() || failed_out {
            0
        } else {
            active.len()
        });
        status["ready"] = json!(active.iter().filter(|p| pod_ready(p)).count());
        status["succeeded"] = json!(succeeded);
        status["failed"] = json!(failed);
        status["terminating"] = json!(0);
        status["uncountedTerminatedPods"] = json!({});
        if indexed {
            status["completedIndexes"] = json!(index_ranges(&done_indexes));
        }
        let mut conditions: Vec<Value> = Vec::new();
        if finished.is_none() {
            if complete {
                conditions.push(json!({"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now}));
                conditions.push(json!({"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now}));
                status["completionTime"] = json!(now);
            } else if failed_out {
                conditions.push(json!({"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now}));
                conditions.push(json!({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now}));
            } else if suspended {
                conditions.push(json!({"type": "Suspended", "status": "True", "reason": "JobSuspended", "message": "Job suspended", "lastProbeTime": now, "lastTransitionTime": now}));
            }
            keep_times(job.pointer("/status/conditions"), &mut conditions);
            if conditions.is_empty() {
                if let Some(m) = status.as_object_mut() {
                    m.remove("conditions");
                }
            } else {
                status["conditions"] = Value::Array(conditions);
            }
        }
        acted |= set_status(objects, &job_rt, job, status);
        // ttlSecondsAfterFinished: delete finished Jobs (and, by GC, their pods) after the TTL.
        if let (Some(ttl), Some(done_at)) = (
            job.pointer("/spec/ttlSecondsAfterFinished")
                .and_then(Value::as_i64),
            job.pointer("/status/completionTime")
                .or_else(|| job.pointer("/status/conditions/0/lastTransitionTime"))
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        ) && finished.is_some()
            && jiff::Timestamp::now().as_second() - done_at.as_second() >= ttl
        {
            delete(objects, &job_rt, ns, name(job));
            acted = true;
        }
    }
    acted
}

/// One pass over CronJobs. Returns whether anything was written.
pub fn cronjobs(objects: &Objects) -> bool {
    let (Some(cj_rt), Some(job_rt)) = (
        rt(objects, "batch", "v1", "cronjobs"),
        rt(objects, "batch", "v1", "jobs"),
    ) else {
        return false;
    };
    let (cjs, _) = objects.store().list(&cj_rt.storage, None, None);
    let mut acted = false;
    let now = jiff::Timestamp::now();
    for cj in cjs.iter().filter(|c| !deleting(c)) {
        let ns = namespace(cj);
        let Some(schedule) = cj
            .pointer("/spec/schedule")
            .and_then(Value::as_str)
            .and_then(|s| crate::cron::Schedule::parse(s).ok())
        else {
            continue;
        };
        let jobs = owned(objects, &job_rt, cj);
        let running: Vec<_> = jobs
            .iter()
            .filter(|j| finished_condition(j).is_none())
            .collect();
        let last = cj
            .pointer("/status/lastScheduleTime")
            .or_else(|| cj.pointer("/metadata/creationTimestamp"))
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .unwrap_or(now);
        let suspended = cj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        let mut status = cj.get("status").cloned().unwrap_or(json!({}));
        if let Some(due) = schedule.next_after(last).filter(|d| *d <= now)
            && !suspended
        {
            // Only the latest missed schedule runs, as with startingDeadlineSeconds unset. Scan
            // at most the last year of missed times (a stale lastScheduleTime must not stall us).
            let year_ago =
                jiff::Timestamp::from_second(now.as_second() - 366 * 86_400).unwrap_or(now);
            let mut latest = if due < year_ago {
                schedule
                    .next_after(year_ago)
                    .filter(|d| *d <= now)
                    .unwrap_or(due)
            } else {
                due
            };
            while let Some(n) = schedule.next_after(latest).filter(|n| *n <= now) {
                latest = n;
            }
            let policy = cj
                .pointer("/spec/concurrencyPolicy")
                .and_then(Value::as_str)
                .unwrap_or("Allow");
            let skip = policy == "Forbid" && !running.is_empty();
            if policy == "Replace" {
                for j in &running {
                    delete(objects, &job_rt, ns, name(j));
                }
            }
            if !skip {
                let template = cj
                    .pointer("/spec/jobTemplate")
                    .cloned()
                    .unwrap_or(json!({}));
                let job_name = format!("{}-{}", name(cj), latest.as_second() / 60);
                let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
                meta["name"] = json!(job_name);
                meta["ownerReferences"] = json!([controller_ref(cj)]);
                meta["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] =
                    json!(latest.to_string());
                let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template.get("spec").cloned().unwrap_or(json!({}))});
                acted |= create(objects, &job_rt, ns, job).is_some();
            }
            status["lastScheduleTime"] = json!(latest.to_string());
        }
        // History limits: delete the oldest finished Jobs beyond them.
        for (kind, limit) in [
            ("Complete", int(cj, "/spec/successfulJobsHistoryLimit", 3)),
            ("Failed", int(cj, "/spec/failedJobsHistoryLimit", 1)),
        ] {
            let mut done: Vec<_> = jobs
                .iter()
                .filter(|j| finished_condition(j) == Some(kind))
                .collect();
            done.sort_by_key(|j| {
                j.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            });
            let excess = done.len().saturating_sub(limit.max(0) as usize);
            for j in done.into_iter().take(excess) {
                delete(objects, &job_rt, ns, name(j));
                acted = true;
            }
        }
        let jobs = owned(objects, &job_rt, cj);
        let active: Vec<Value> = jobs
            .iter()
            .filter(|j| finished_condition(j).is_none() && !deleting(j))
            .map(|j| json!({"apiVersion": "batch/v1", "kind": "Job", "name": name(j), "namespace": ns, "uid": j["metadata"]["uid"], "resourceVersion": j["metadata"]["resourceVersion"]}))
            .collect();
        let mut active_sorted = active;
        active_sorted.sort_by_key(|a| a["name"].as_str().unwrap_or_default().to_string());
        let active_refs: Vec<Value> = active_sorted
            .into_iter()
            .map(|mut a| {
                if let Some(m) = a.as_object_mut() {
                    m.remove("resourceVersion");
                }
                a
            })
            .collect();
        if active_refs.is_empty() {
            if let Some(m) = status.as_object_mut() {
                m.remove("active");
            }
        } else {
            status["active"] = Value::Array(active_refs);
        }
        if let Some(t) = jobs
            .iter()
            .filter(|j| finished_condition(j) == Some("Complete"))
            .filter_map(|j| j.pointer("/status/completionTime").and_then(Value::as_str))
            .max()
        {
            status["lastSuccessfulTime"] = json!(t);
        }
        acted |= set_status(objects, &cj_rt, cj, status);
    }
    acted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_index_ranges() {
        let set: BTreeSet<i64> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(index_ranges(&set), "0-2,4,6-7");
        assert_eq!(index_ranges(&BTreeSet::new()), "");
    }
}
