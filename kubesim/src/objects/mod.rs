//! Object semantics over the store: create, update, patch, delete and list as the API server
//! does them, planned first (so admission webhooks can run) and committed optimistically.
//!
//! Reproduces <https://kubernetes.io/docs/reference/using-api/api-concepts/> (generateName,
//! resourceVersion conflicts, generation, status subresource, dry-run, field validation) and
//! <https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/> plus
//! `/owners-dependents/` for deletion.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

use crate::apply::track_update;
use crate::builtin;
use crate::error::{ApiError, Subject};
use crate::fields::Shape;
use crate::meta;
use crate::registry::ResourceType;
use crate::store::{CommitError, Expect, Mutation, ObjKey, Store, rv_of};

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `fieldManager` (or the one derived from the user agent).
    pub manager: String,
    /// `dryRun=All`: validate and return the result without storing it.
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields are an error rather than a warning.
    pub strict: bool,
    /// `force=true` for server-side apply.
    pub force: bool,
}

/// Patch content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply,
}

/// `DeleteOptions` that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// The admission operation a plan performs (as webhooks see it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// CREATE.
    Create,
    /// UPDATE (including patches and the first phase of a graceful delete).
    Update,
    /// DELETE.
    Delete,
}

impl Operation {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// A planned write, not yet committed.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Store this mutation.
    Write {
        /// The change.
        mutation: Mutation,
        /// The object before.
        old: Option<Arc<Value>>,
        /// What the object will look like, when the mutation does not hold it (a delete that
        /// an update triggers); see [`Plan::preview`].
        preview: Option<Arc<Value>>,
        /// What kind of write.
        operation: Operation,
        /// Don't store (dry run).
        dry_run: bool,
        /// Warnings for the `Warning` header.
        warnings: Vec<String>,
    },
    /// Nothing changes; this is the current object.
    Unchanged(Arc<Value>),
}

impl Plan {
    /// The object as it will look after the write (for a delete: as it looks now).
    pub fn preview(&self) -> Option<&Value> {
        match self {
            Plan::Write {
                preview: Some(p), ..
            } => Some(p),
            Plan::Write {
                mutation: Mutation::Put { object, .. },
                ..
            } => Some(object),
            Plan::Write { old, .. } => old.as_deref(),
            Plan::Unchanged(o) => Some(o),
        }
    }
}

/// A committed (or dry-run, or no-op) write.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The object as stored.
    pub object: Arc<Value>,
    /// Whether it was created (201).
    pub created: bool,
    /// Warnings for the `Warning` header.
    pub warnings: Vec<String>,
}

/// Why a commit did not land.
#[derive(Debug)]
pub enum CommitFailure {
    /// The object changed meanwhile: plan again.
    Retry,
    /// A real error.
    Api(ApiError),
}

/// Object semantics over a [`Store`].
#[derive(Debug)]
pub struct Objects {
    store: Arc<Store>,
    next_ip: AtomicU32,
}

pub(super) fn subject<'a>(rt: &'a ResourceType, name: &'a str) -> Subject<'a> {
    Subject {
        group: &rt.group,
        resource: &rt.plural,
        name,
    }
}

/// Manager for an ordinary write when the client named none: the user agent's first word.
pub fn default_manager(user_agent: Option<&str>) -> String {
    user_agent
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

pub(super) fn shape_of(rt: &ResourceType) -> Shape<'_> {
    match &rt.schema {
        Some(s) => Shape::Schema(s.schema()),
        None if rt.is_custom() => Shape::Unknown,
        None => Shape::Builtin,
    }
}

pub(super) fn strip_for_compare(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(meta) = c.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    c
}

/// Whether two objects differ outside metadata and status (a generation bump).
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut c = v.clone();
        if let Some(m) = c.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        c
    };
    strip(old) != strip(new)
}

impl Objects {
    /// Semantics over a store.
    pub fn new(store: Arc<Store>) -> Self {
        Objects {
            store,
            next_ip: AtomicU32::new(1),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The key of an object of a type.
    pub fn key(rt: &ResourceType, namespace: &str, name: &str) -> ObjKey {
        ObjKey {
            storage: rt.storage.clone(),
            namespace: if rt.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    /// Reads one object or 404.
    pub fn get(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.store
            .get(&Self::key(rt, namespace, name))
            .ok_or_else(|| ApiError::not_found(subject(rt, name)))
    }

    fn namespace_ready(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns_rt = self.store.registry().get("", "v1", "namespaces");
        let Some(ns_rt) = ns_rt else { return Ok(()) };
        let Some(ns) = self.store.get(&Self::key(&ns_rt, "", namespace)) else {
            return Err(ApiError::not_found(Subject {
                group: "",
                resource: "namespaces",
                name: namespace,
            }));
        };
        if ns.pointer("/metadata/deletionTimestamp").is_some() {
            let mut e = ApiError::forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                rt.plural, name, namespace
            ));
            e.details = Some(
                json!({"name": name, "kind": rt.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {namespace} is being terminated"), "field": "metadata.namespace"}]}),
            );
            return Err(e);
        }
        Ok(())
    }

    fn check_type(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
            && !av.is_empty()
            && av != rt.api_version()
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        if let Some(kind) = obj.get("kind").and_then(Value::as_str)
            && !kind.is_empty()
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if obj.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        Ok(())
    }

    /// Runs schema/built-in admission: prune, default, validate. Returns warnings.
    fn admit(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> Result<Vec<String>, ApiError> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut warnings = Vec::new();
        let mut errors = meta::validate_meta(&rt.group, &rt.plural, obj);
        if let Some(schema) = &rt.schema {
            match schema.admit(obj, old) {
                Ok(admitted) => {
                    if !admitted.unknown_fields.is_empty() {
                        if opts.strict {
                            let list: Vec<String> = admitted
                                .unknown_fields
                                .iter()
                                .map(|f| format!("unknown field \"{f}\""))
                                .collect();
                            return Err(ApiError::bad_request(format!(
                                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                                rt.kind,
                                rt.api_version(),
                                rt.kind,
                                list.join(", ")
                            )));
                        }
                        warnings.extend(
                            admitted
                                .unknown_fields
                                .iter()
                                .map(|f| format!("unknown field \"{f}\"")),
                        );
                    }
                    *obj = admitted.object;
                }
                Err(errs) => errors.extend(errs),
            }
        } else {
            let ip = &self.next_ip;
            builtin::apply_defaults(rt, obj, old, || {
                let n = ip.fetch_add(1, Ordering::Relaxed);
                format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
            });
            errors.extend(builtin::validate(rt, obj));
        }
        if errors.is_empty() {
            Ok(warnings)
        } else {
            Err(ApiError::invalid(&rt.group, &rt.kind, &name, &errors))
        }
    }

    /// Plans a create.
    pub fn plan_create(
        &self,
        rt: &ResourceType,
        namespace: &str,
        mut obj: Value,
        opts: &WriteOptions,
        managed_done: bool,
    ) -> Result<Plan, ApiError> {
        Self::check_type(rt, &obj)?;
        if obj.get("metadata").is_none() {
            obj["metadata"] = json!({});
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let given_ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if rt.namespaced && !given_ns.is_empty() && given_ns != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            match obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
            {
                Some(prefix) if !prefix.is_empty() => {
                    name = format!("{prefix}{}", meta::name_suffix())
                }
                _ => {
                    return Err(ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        "",
                        &[crate::validation::FieldError::required(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ));
                }
            }
        }
        self.namespace_ready(rt, namespace, &name)?;
        let now = meta::now();
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("name".into(), json!(name));
            if rt.namespaced {
                m.insert("namespace".into(), json!(namespace));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(meta::new_uid()));
            m.insert("creationTimestamp".into(), json!(now));
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
            if builtin::tracks_generation(rt) {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if rt.status_subresource
            && rt.plural != "namespaces"
            && rt.plural != "customresourcedefinitions"
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let warnings = self.admit(rt, &mut obj, None, opts)?;
        if !managed_done {
            track_update(
                None,
                &mut obj,
                shape_of(rt),
                &opts.manager,
                None,
                rt.status_subresource,
                &now,
            );
        }
        let key = Self::key(rt, namespace, &name);
        Ok(Plan::Write {
            preview: None,
            mutation: Mutation::Put {
                key,
                expect: Expect::Absent,
                object: obj,
            },
            old: None,
            operation: Operation::Create,
            dry_run: opts.dry_run,
            warnings,
        })
    }

    /// Plans the update of an existing object to `new` (from PUT, a patch, or apply).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan_replace(
        &self,
        rt: &ResourceType,
        old: Arc<Value>,
        mut new: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
        managed_done: bool,
        require_rv: bool,
    ) -> Result<Plan, ApiError> {
        Self::check_type(rt, &new)?;
        let name = old
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let sent_rv = new
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !sent_rv.is_empty() && sent_rv != rv_of(&old).to_string() {
            return Err(ApiError::stale(subject(rt, &name)));
        }
        if sent_rv.is_empty() && require_rv && rt.is_custom() {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                &name,
                &[crate::validation::FieldError::invalid(
                    "metadata.resourceVersion",
                    json!("0x0"),
                    "must be specified for an update",
                )],
            ));
        }
        if let Some(n) = new.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if new.get("metadata").is_none() {
            new["metadata"] = json!({});
        }
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        // Status split: the main endpoint keeps the old status, /status keeps everything else.
        if rt.status_subresource {
            if subresource == Some("status") {
                let status = new.get("status").cloned();
                let managed = new.pointer("/metadata/managedFields").cloned();
                new = (*old).clone();
                match status {
                    Some(s) => new["status"] = s,
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                if managed_done && let Some(mf) = managed {
                    new["metadata"]["managedFields"] = mf;
                }
            } else {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
        }
        let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            m.insert("resourceVersion".into(), json!(rv_of(&old).to_string()));
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let before: Vec<Value> = old
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let after: Vec<Value> = new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if after.iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    &[crate::validation::FieldError::new(
                        "metadata.finalizers",
                        crate::validation::FieldErrorKind::Forbidden,
                        None,
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        let warnings = self.admit(rt, &mut new, Some(&old), opts)?;
        if builtin::tracks_generation(rt) && spec_changed(&old, &new) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        let now = meta::now();
        if !managed_done {
            track_update(
                Some(&old),
                &mut new,
                shape_of(rt),
                &opts.manager,
                subresource,
                rt.status_subresource,
                &now,
            );
        }
        let key = Self::key(
            rt,
            old.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            &name,
        );
        let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
        let no_finalizers = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        let ns_finalizers_done = rt.plural != "namespaces"
            || new
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if deleting && no_finalizers && ns_finalizers_done {
            return Ok(Plan::Write {
                preview: Some(Arc::new(new)),
                mutation: Mutation::Delete {
                    key,
                    expect_rv: rv_of(&old),
                },
                old: Some(old),
                operation: Operation::Update,
                dry_run: opts.dry_run,
                warnings,
            });
        }
        if strip_for_compare(&new) == strip_for_compare(&old) {
            return Ok(Plan::Unchanged(old));
        }
        Ok(Plan::Write {
            preview: None,
            mutation: Mutation::Put {
                key,
                expect: Expect::Rv(rv_of(&old)),
                object: new,
            },
            old: Some(old),
            operation: Operation::Update,
            dry_run: opts.dry_run,
            warnings,
        })
    }

    /// Plans a PUT.
    pub fn plan_update(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Plan, ApiError> {
        let old = self.get(rt, namespace, name)?;
        self.plan_replace(rt, old, obj, subresource, opts, false, true)
    }

    /// Commits a plan.
    pub fn commit(&self, rt: &ResourceType, plan: Plan) -> Result<Outcome, CommitFailure> {
        match plan {
            Plan::Unchanged(obj) => Ok(Outcome {
                object: obj,
                created: false,
                warnings: Vec::new(),
            }),
            plan @ Plan::Write { .. } => {
                if let Plan::Write { dry_run: true, .. } = &plan {
                    let object = Arc::new(plan.preview().cloned().unwrap_or(Value::Null));
                    let (created, warnings) = match plan {
                        Plan::Write {
                            operation,
                            warnings,
                            ..
                        } => (operation == Operation::Create, warnings),
                        Plan::Unchanged(_) => (false, Vec::new()),
                    };
                    return Ok(Outcome {
                        object,
                        created,
                        warnings,
                    });
                }
                let Plan::Write {
                    mutation,
                    warnings,
                    operation,
                    ..
                } = plan
                else {
                    return Err(CommitFailure::Api(ApiError::internal(
                        "a plan changed while committing",
                    )));
                };
                let name = match &mutation {
                    Mutation::Put { key, .. } | Mutation::Delete { key, .. } => key.name.clone(),
                };
                match self.store.commit(mutation) {
                    Ok(object) => Ok(Outcome {
                        object,
                        created: operation == Operation::Create,
                        warnings,
                    }),
                    Err(CommitError::Stale) => Err(CommitFailure::Retry),
                    Err(CommitError::AlreadyExists) => Err(CommitFailure::Api(
                        ApiError::already_exists(subject(rt, &name)),
                    )),
                    Err(CommitError::NotFound) => {
                        Err(CommitFailure::Api(ApiError::not_found(subject(rt, &name))))
                    }
                }
            }
        }
    }

    /// Creates the namespaces a fresh cluster has (`default`, `kube-system`, `kube-public`,
    /// `kube-node-lease`).
    pub fn bootstrap(&self) -> Result<(), ApiError> {
        let registry = self.store.registry();
        let Some(ns_rt) = registry.get("", "v1", "namespaces") else {
            return Err(ApiError::internal("the namespaces type is not registered"));
        };
        let opts = WriteOptions {
            manager: "kube-apiserver".into(),
            ..WriteOptions::default()
        };
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if self.store.get(&Self::key(&ns_rt, "", name)).is_none() {
                let body =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                self.run(&ns_rt, || {
                    self.plan_create(&ns_rt, "", body.clone(), &opts, false)
                })?;
            }
        }
        Ok(())
    }

    /// Plans and commits, replanning when a concurrent write got there first.
    pub fn run(
        &self,
        rt: &ResourceType,
        mut plan: impl FnMut() -> Result<Plan, ApiError>,
    ) -> Result<Outcome, ApiError> {
        for _ in 0..16 {
            match self.commit(rt, plan()?) {
                Ok(o) => return Ok(o),
                Err(CommitFailure::Retry) => continue,
                Err(CommitFailure::Api(e)) => return Err(e),
            }
        }
        Err(ApiError::internal(
            "too many concurrent writes to one object",
        ))
    }
}

#[cfg(test)]
mod tests;

mod delete;
mod patching;

pub use patching::conflict_error;
