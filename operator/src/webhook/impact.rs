//! Which currently compliant Pipelines a change to a DataSource, AccessPolicy or StorageTier
//! would block. The change is admitted (the new classification or policy may well be the
//! right one), and the warning names every pipeline that will stop running because of it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::ResourceExt;

use super::catalog::Catalog;
use super::findings::Finding;
use crate::api::{AccessPolicy, DataSource, Pipeline, StorageTier};
use crate::controller::pipeline::decide;

/// The reason of an impact warning.
pub const WOULD_BLOCK: &str = "WouldBlockPipeline";

/// The object being changed: its stored version (`None` on create) and the new one.
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// A DataSource.
    Source {
        /// The stored object.
        old: Option<&'a DataSource>,
        /// The object being written.
        new: &'a DataSource,
    },
    /// An AccessPolicy.
    Policy {
        /// The stored object.
        old: Option<&'a AccessPolicy>,
        /// The object being written.
        new: &'a AccessPolicy,
    },
    /// A StorageTier.
    Tier {
        /// The stored object.
        old: Option<&'a StorageTier>,
        /// The object being written.
        new: &'a StorageTier,
    },
}

/// `objects` with the one named `name` replaced by `with` (removed when `None`).
fn replaced<K: ResourceExt + Clone>(objects: &[K], name: &str, with: Option<&K>) -> Vec<K> {
    let mut out: Vec<K> = objects
        .iter()
        .filter(|o| o.name_any() != name)
        .cloned()
        .collect();
    out.extend(with.cloned());
    out
}

/// The world of one namespace, before or after the change.
struct World {
    sources: Vec<DataSource>,
    tiers: Vec<StorageTier>,
    policies: Vec<AccessPolicy>,
}

impl World {
    fn of(catalog: &dyn Catalog, ns: &str) -> World {
        World {
            sources: catalog.sources(Some(ns)),
            tiers: catalog.tiers(),
            policies: catalog.policies(ns),
        }
    }

    /// This world with `change` applied (`after`) or with its stored version (`!after`).
    fn with(&self, change: Change<'_>, after: bool) -> World {
        match change {
            Change::Source { old, new } => World {
                sources: replaced(&self.sources, &new.name_any(), pick(after, old, new)),
                tiers: self.tiers.clone(),
                policies: self.policies.clone(),
            },
            Change::Policy { old, new } => World {
                sources: self.sources.clone(),
                tiers: self.tiers.clone(),
                policies: replaced(&self.policies, &new.name_any(), pick(after, old, new)),
            },
            Change::Tier { old, new } => World {
                sources: self.sources.clone(),
                tiers: replaced(&self.tiers, &new.name_any(), pick(after, old, new)),
                policies: self.policies.clone(),
            },
        }
    }
}

/// The new object after the change, the stored one before it.
fn pick<'a, K>(after: bool, old: Option<&'a K>, new: &'a K) -> Option<&'a K> {
    if after { Some(new) } else { old }
}

/// Whether the change could affect `pipeline` at all.
fn concerns(change: Change<'_>, pipeline: &Pipeline) -> bool {
    let same_ns = |ns: Option<String>| ns == pipeline.namespace();
    match change {
        Change::Source { new, .. } => {
            same_ns(new.namespace()) && pipeline.spec.sources.contains(&new.name_any())
        }
        Change::Policy { new, .. } => same_ns(new.namespace()),
        Change::Tier { new, .. } => pipeline.spec.sink.tier == new.name_any(),
    }
}

/// Warnings naming every pipeline that is compliant now and would not be after `change`.
pub fn newly_blocked(catalog: &dyn Catalog, change: Change<'_>, now: Timestamp) -> Vec<Finding> {
    let scope = match change {
        Change::Source { new, .. } => Some(new.namespace().unwrap_or_default()),
        Change::Policy { new, .. } => Some(new.namespace().unwrap_or_default()),
        Change::Tier { .. } => None,
    };
    let mut by_ns: BTreeMap<String, Vec<Pipeline>> = BTreeMap::new();
    for p in catalog.pipelines(scope.as_deref()) {
        if concerns(change, &p) {
            by_ns
                .entry(p.namespace().unwrap_or_default())
                .or_default()
                .push(p);
        }
    }
    let mut out = Vec::new();
    for (ns, pipelines) in by_ns {
        let world = World::of(catalog, &ns);
        let before = world.with(change, false);
        let after = world.with(change, true);
        for p in pipelines {
            let was = decide(&p, &before.sources, &before.tiers, &before.policies, now);
            if !was.allowed() {
                continue;
            }
            let will = decide(&p, &after.sources, &after.tiers, &after.policies, now);
            if will.allowed() {
                continue;
            }
            let reasons: Vec<String> = will.blocking().map(ToString::to_string).collect();
            out.push(Finding::new(
                WOULD_BLOCK,
                "spec",
                format!(
                    "Pipeline {ns}/{} is compliant now and would be blocked: {}",
                    p.name_any(),
                    reasons.join("; ")
                ),
            ));
        }
    }
    out
}
