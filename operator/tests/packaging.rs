//! How platform teams install medplat, checked: the generated kustomize base and Helm chart
//! files against the binary, `kubectl kustomize` and the chart (rendered by Helm's own engine)
//! applied to kubesim, the reviewed RBAC list, Pod Security "restricted" for every pod template
//! medplat renders, and the Argo CD health scripts run by a real Lua.
//!
//! Tests that need a tool this machine may lack (helm-python-sdk, lua5.1) skip loudly unless
//! `MEDPLAT_REQUIRE_REAL_TOOLS=1` (set by `scripts/test-all`), which makes them fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "packaging/common.rs"]
mod common;

#[path = "packaging/generated.rs"]
mod generated;

#[path = "packaging/rbac.rs"]
mod rbac;

#[path = "packaging/pod_security.rs"]
mod pod_security;

#[path = "packaging/helm.rs"]
mod helm;

#[path = "packaging/apply.rs"]
mod apply;

#[path = "packaging/argocd.rs"]
mod argocd;
