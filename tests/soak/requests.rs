//! What the request log says about a run: request rates, Job creations, and which replica
//! wrote when.

use std::collections::BTreeMap;

use kubesim::RequestRecord;

/// The replica identity in a medplat User-Agent (`medplat/VERSION (IDENTITY)`).
pub fn identity(r: &RequestRecord) -> Option<&str> {
    let rest = r.user_agent.strip_prefix("medplat/")?;
    let open = rest.find('(')?;
    rest[open + 1..].strip_suffix(')')
}

/// Whether medplat's operator sent this request.
pub fn by_operator(r: &RequestRecord) -> bool {
    identity(r).is_some()
}

/// The busiest second of medplat's requests: (requests in it, which second). Watches are
/// long-lived and counted when they start.
pub fn peak_per_second(log: &[RequestRecord]) -> (usize, String) {
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for r in log.iter().filter(|r| by_operator(r)) {
        // RFC 3339 with milliseconds: the first 19 characters name the second.
        *per.entry(r.time.get(..19).unwrap_or(&r.time)).or_insert(0) += 1;
    }
    per.into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, n)| (n, t.to_string()))
        .unwrap_or_default()
}

/// medplat's requests per second, averaged over the records from `from` on.
pub fn rate_since(log: &[RequestRecord], from: usize, seconds: f64) -> f64 {
    log.get(from..)
        .unwrap_or_default()
        .iter()
        .filter(|r| by_operator(r))
        .count() as f64
        / seconds.max(0.001)
}

/// medplat's requests from `from` on, counted by verb and resource, busiest first (at most
/// `top`), e.g. `get secrets 212`: what an operator that should be quiet is still doing.
pub fn busiest_since(log: &[RequestRecord], from: usize, top: usize) -> Vec<String> {
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in log
        .get(from..)
        .unwrap_or_default()
        .iter()
        .filter(|r| by_operator(r))
    {
        let resource = if r.subresource.is_empty() {
            r.resource.clone()
        } else {
            format!("{}/{}", r.resource, r.subresource)
        };
        *per.entry((r.verb.clone(), resource)).or_insert(0) += 1;
    }
    let mut counted: Vec<_> = per.into_iter().collect();
    counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counted
        .into_iter()
        .take(top)
        .map(|((verb, resource), n)| format!("{verb} {resource} {n}"))
        .collect()
}

/// Job names medplat created (201) more than once.
pub fn jobs_created_twice(log: &[RequestRecord]) -> Vec<String> {
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    for r in log
        .iter()
        .filter(|r| by_operator(r) && r.resource == "jobs" && r.code == 201)
    {
        *created
            .entry(format!("{}/{}", r.namespace, r.name))
            .or_insert(0) += 1;
    }
    created
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(j, n)| format!("{j} created {n} times"))
        .collect()
}

/// Every change of the replica writing (anything but its Lease), in log order: (index in the
/// log, previous writer, new writer).
pub fn writer_changes(log: &[RequestRecord]) -> Vec<(usize, String, String)> {
    let mut changes = Vec::new();
    let mut last: Option<&str> = None;
    for (i, r) in log.iter().enumerate() {
        if !r.is_write() || r.resource == "leases" {
            continue;
        }
        let Some(id) = identity(r) else { continue };
        if let Some(prev) = last
            && prev != id
        {
            changes.push((i, prev.to_string(), id.to_string()));
        }
        last = Some(id);
    }
    changes
}

/// Writes (anything but the Lease) sent by a replica that did not hold the Lease at that point
/// of the log: the holder is whoever last wrote the Lease successfully. Each entry names the
/// log index, the writer, the holder, and the request.
pub fn writes_outside_term(log: &[RequestRecord]) -> Vec<String> {
    let mut holder: Option<&str> = None;
    let mut out = Vec::new();
    for (i, r) in log.iter().enumerate() {
        if !r.is_write() {
            continue;
        }
        let Some(id) = identity(r) else { continue };
        if r.resource == "leases" {
            if r.code < 300 {
                holder = Some(id);
            }
        } else if holder != Some(id) {
            out.push(format!(
                "#{i} {id} wrote while {} held the Lease: {} {} {} ({}, field manager {})",
                holder.unwrap_or("nobody"),
                r.time,
                r.verb,
                r.path,
                r.code,
                r.field_manager
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(time: &str, verb: &str, resource: &str, agent: &str, code: u16) -> RequestRecord {
        RequestRecord {
            time: time.into(),
            verb: verb.into(),
            method: String::new(),
            path: String::new(),
            query: String::new(),
            group: String::new(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: "n".into(),
            name: "j".into(),
            field_manager: String::new(),
            user_agent: agent.into(),
            code,
        }
    }

    #[test]
    fn the_log_tells_rates_creations_and_writers() {
        let a = "medplat/0.1.0 (replica-a)";
        let b = "medplat/0.1.0 (replica-b)";
        let log = vec![
            rec("2026-01-01T00:00:00.100Z", "patch", "jobs", a, 201),
            rec("2026-01-01T00:00:00.200Z", "patch", "leases", b, 409),
            rec("2026-01-01T00:00:01.100Z", "get", "pods", a, 200),
            rec("2026-01-01T00:00:01.300Z", "patch", "configmaps", b, 200),
            rec("2026-01-01T00:00:01.400Z", "patch", "jobs", b, 201),
            rec("2026-01-01T00:00:01.500Z", "get", "pods", "kubectl", 200),
        ];
        assert_eq!(
            peak_per_second(&log),
            (3, "2026-01-01T00:00:01".to_string())
        );
        assert_eq!(jobs_created_twice(&log), vec!["n/j created 2 times"]);
        assert_eq!(
            writer_changes(&log),
            vec![(3, "replica-a".to_string(), "replica-b".to_string())]
        );
        assert_eq!(identity(&log[5]), None);
        assert_eq!(
            writes_outside_term(&log).len(),
            3,
            "nobody held the Lease: a's Job, b's ConfigMap and Job writes are outside a term"
        );
        let mut held = log.clone();
        held[1].code = 200;
        let outside = writes_outside_term(&held);
        assert_eq!(outside.len(), 1, "{outside:?}");
        assert!(outside[0].starts_with("#0 replica-a"), "{outside:?}");
    }
}
