//! A generated hospital of any size, for the scale benchmark and the soak suite: copies of the
//! example hospital's DataSources, Pipelines and AccessPolicies (`examples/hospital/`), renamed
//! and spread over several namespaces, every Pipeline compliant.
//!
//! Shapes come from the examples, so the generated objects exercise the same renderers and
//! policy rules as the real ones: PostgreSQL, file and HL7 v2 sources; cleanse, validate,
//! link and de-identify steps; sinks in the raw, curated and research tiers (a cross-domain
//! flow). Half the Pipelines are scheduled and half run on demand. Each Pipeline's
//! ServiceAccount gets `read` on its source and `write` on its sink from one of the namespace's
//! generated AccessPolicies (with a `crossDomain` grant for research extracts).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::repo_root;

/// How many objects to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Pipelines.
    pub pipelines: usize,
    /// DataSources.
    pub sources: usize,
    /// AccessPolicies (at least 4 per namespace: two from the examples plus two grant groups).
    pub policies: usize,
    /// Namespaces the objects are spread over.
    pub namespaces: usize,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} Pipelines, {} DataSources, {} AccessPolicies in {} namespaces",
            self.pipelines, self.sources, self.policies, self.namespaces
        )
    }
}

/// Options beyond size.
#[derive(Clone, Debug)]
pub struct Options {
    /// Host and port every PostgreSQL source points at (a loopback listener the caller runs,
    /// so reachability probes succeed without leaving the machine).
    pub postgres: (String, u16),
    /// Every how many on-demand Pipelines one carries a run request (`0`: none).
    pub run_request_every: usize,
    /// The schedule of every scheduled Pipeline (`None`: the examples' own, e.g. every 15
    /// minutes). A test comparing runs sets one that never fires while it runs.
    pub schedule: Option<String>,
}

/// The generated objects, in the order they must be created.
#[derive(Clone, Debug, Default)]
pub struct Workload {
    /// StorageClasses, StorageTiers, Namespaces and Secrets.
    pub setup: Vec<Value>,
    /// DataSources.
    pub sources: Vec<Value>,
    /// AccessPolicies.
    pub policies: Vec<Value>,
    /// Pipelines.
    pub pipelines: Vec<Value>,
    /// The namespaces.
    pub namespaces: Vec<String>,
}

impl Workload {
    /// Every object, in creation order.
    pub fn all(&self) -> impl Iterator<Item = &Value> {
        self.setup
            .iter()
            .chain(&self.sources)
            .chain(&self.policies)
            .chain(&self.pipelines)
    }

    /// The medplat parents (sources, policies, pipelines).
    pub fn parents(&self) -> impl Iterator<Item = &Value> {
        self.sources
            .iter()
            .chain(&self.policies)
            .chain(&self.pipelines)
    }
}

/// The example objects the workload copies, by kind and name.
struct Templates {
    by_name: BTreeMap<(String, String), Value>,
}

impl Templates {
    fn load() -> Templates {
        let dir = repo_root().join("examples/hospital");
        let mut by_name = BTreeMap::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for obj in medplat::manifests::load(&files).unwrap_or_else(|e| panic!("{e}")) {
            by_name.insert(
                (obj.kind().to_string(), obj.name().to_string()),
                obj.value.clone(),
            );
        }
        Templates { by_name }
    }

    fn get(&self, kind: &str, name: &str) -> Value {
        self.by_name
            .get(&(kind.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_else(|| panic!("examples/hospital has no {kind} {name}"))
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.by_name
            .iter()
            .filter(move |((k, _), _)| k == kind)
            .map(|(_, v)| v)
    }
}

/// A kind of Pipeline copied from the examples: its template, its source's template, and
/// whether it is a research extract (cross-domain, purpose Research).
struct PipelineShape {
    pipeline: &'static str,
    source: &'static str,
    research: bool,
}

const SHAPES: [PipelineShape; 4] = [
    PipelineShape {
        pipeline: "lab-results-curated",
        source: "lis-results",
        research: false,
    },
    PipelineShape {
        pipeline: "research-extract",
        source: "emr-discharge",
        research: true,
    },
    PipelineShape {
        pipeline: "adt-curated",
        source: "adt-feed",
        research: false,
    },
    PipelineShape {
        pipeline: "his-patients-sync",
        source: "his-patients",
        research: false,
    },
];

/// Source templates in the order sources are generated: source `k` copies `SOURCE_ORDER[k % 4]`.
const SOURCE_ORDER: [&str; 4] = ["his-patients", "lis-results", "adt-feed", "emr-discharge"];

fn rename(obj: &mut Value, name: &str, namespace: Option<&str>) {
    let meta = &mut obj["metadata"];
    meta["name"] = json!(name);
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
}

/// The Secrets of `examples/hospital/secrets` in `namespace`.
fn secrets(namespace: &str) -> Vec<Value> {
    medplat::manifests::secrets_from_dir(&repo_root().join("examples/hospital/secrets"), namespace)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Generates a hospital of `size`.
pub fn generate(size: Size, options: &Options) -> Workload {
    assert!(size.namespaces >= 1, "at least one namespace");
    assert!(
        size.policies >= 4 * size.namespaces,
        "at least 4 AccessPolicies per namespace"
    );
    assert!(
        size.sources >= 4 * size.namespaces,
        "at least 4 DataSources per namespace (one of each shape)"
    );
    let t = Templates::load();
    let mut w = Workload::default();
    w.setup.extend(t.of_kind("StorageClass").cloned());
    w.setup.extend(t.of_kind("StorageTier").cloned());
    w.namespaces = (0..size.namespaces)
        .map(|i| format!("ward-{i:02}"))
        .collect();
    for ns in &w.namespaces {
        w.setup
            .push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        w.setup.extend(secrets(ns));
    }

    // Sources: source k lives in namespace k % N and copies SOURCE_ORDER[(k / N) % 4], so
    // every namespace holds every shape.
    let mut sources_by_shape: BTreeMap<(usize, &str), Vec<String>> = BTreeMap::new();
    for k in 0..size.sources {
        let ns_i = k % size.namespaces;
        let shape = SOURCE_ORDER[(k / size.namespaces) % 4];
        let name = format!("{shape}-{k:05}");
        let mut s = t.get("DataSource", shape);
        rename(&mut s, &name, Some(&w.namespaces[ns_i]));
        if let Some(pg) = s["spec"]["connector"].get_mut("postgres") {
            pg["host"] = json!(options.postgres.0);
            pg["port"] = json!(options.postgres.1);
            pg["cidr"] = json!(format!("{}/32", options.postgres.0));
        }
        if let Some(h) = s["spec"]["connector"].get_mut("hl7v2") {
            // Distinct landing paths: each listener writes its own inbox.
            h["landing"]["path"] = json!(format!("adt/{name}"));
        }
        if let Some(f) = s["spec"]["connector"].get_mut("files") {
            let path = f["location"]["path"]
                .as_str()
                .unwrap_or("files")
                .to_string();
            f["location"]["path"] = json!(format!("{path}/{name}"));
        }
        sources_by_shape
            .entry((ns_i, shape))
            .or_default()
            .push(name);
        w.sources.push(s);
    }

    // Pipelines: pipeline j lives in namespace j % N, copies SHAPES[(j / N) % 4], reads one of
    // the namespace's sources of the matching shape; half of each shape runs on demand.
    struct Planned {
        sa: String,
        source: String,
        sink: String,
        research: bool,
    }
    let mut planned: Vec<Vec<Planned>> = (0..size.namespaces).map(|_| Vec::new()).collect();
    let mut on_demand = 0usize;
    for j in 0..size.pipelines {
        let ns_i = j % size.namespaces;
        let ns = &w.namespaces[ns_i];
        let local = j / size.namespaces;
        let shape = &SHAPES[local % 4];
        let candidates = &sources_by_shape[&(ns_i, shape.source)];
        let source = candidates[(local / 4) % candidates.len()].clone();
        let name = format!("{}-{j:05}", shape.pipeline);
        let mut p = t.get("Pipeline", shape.pipeline);
        rename(&mut p, &name, Some(ns));
        p["spec"]["sources"] = json!([source]);
        let dataset = p["spec"]["sink"]["dataset"]
            .as_str()
            .unwrap_or("d")
            .to_string();
        p["spec"]["sink"]["dataset"] = json!(format!("{dataset}/{name}"));
        if let Some(a) = p["metadata"]
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            a.remove(medplat::api::pipeline::RUN_REQUESTED_AT);
        }
        if (local / 4).is_multiple_of(2) {
            if let Some(s) = &options.schedule {
                p["spec"]["schedule"] = json!(s);
            } else if p["spec"].get("schedule").is_none() {
                p["spec"]["schedule"] = json!("30 3 * * *");
            }
        } else {
            if let Some(spec) = p["spec"].as_object_mut() {
                spec.remove("schedule");
            }
            if options.run_request_every > 0 && on_demand.is_multiple_of(options.run_request_every)
            {
                p["metadata"]["annotations"][medplat::api::pipeline::RUN_REQUESTED_AT] =
                    json!("2026-11-20T09:00:00Z");
            }
            on_demand += 1;
        }
        let sink = p["spec"]["sink"]["tier"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        planned[ns_i].push(Planned {
            sa: format!("medplat-pipeline-{name}"),
            source,
            sink,
            research: shape.research,
        });
        w.pipelines.push(p);
    }

    // Policies: per namespace the two people-facing policies of the examples, then grant
    // groups splitting the namespace's pipelines (research extracts in their own groups,
    // since a grant is for one purpose).
    let per_ns = size.policies / size.namespaces;
    let extra = size.policies % size.namespaces;
    for (ns_i, ns) in w.namespaces.iter().enumerate() {
        let count = per_ns + usize::from(ns_i < extra);
        for template in ["clinicians", "research-cardiology"] {
            let mut p = t.get("AccessPolicy", template);
            rename(&mut p, template, Some(ns));
            w.policies.push(p);
        }
        let groups = count - 2;
        let research_groups = (groups / 4).max(1);
        let clinical_groups = groups - research_groups;
        let (research, clinical): (Vec<&Planned>, Vec<&Planned>) =
            planned[ns_i].iter().partition(|p| p.research);
        for (kind, members, n_groups) in [
            ("research-extract-flow", research, research_groups),
            ("clinical-pipelines", clinical, clinical_groups),
        ] {
            for g in 0..n_groups {
                let group: Vec<&&Planned> = members.iter().skip(g).step_by(n_groups).collect();
                let mut p = t.get("AccessPolicy", kind);
                rename(&mut p, &format!("{kind}-{g:03}"), Some(ns));
                let subjects: Vec<Value> = group
                    .iter()
                    .map(|m| json!({"kind": "ServiceAccount", "name": m.sa}))
                    .collect();
                let mut source_names: Vec<&str> = group.iter().map(|m| m.source.as_str()).collect();
                source_names.sort_unstable();
                source_names.dedup();
                let mut sinks: Vec<&str> = group.iter().map(|m| m.sink.as_str()).collect();
                sinks.sort_unstable();
                sinks.dedup();
                p["spec"]["subjects"] = json!(subjects);
                if let Some(rules) = p["spec"]["rules"].as_array_mut() {
                    for rule in rules {
                        let names = match rule["resources"]["kind"].as_str() {
                            Some("DataSource") => &source_names,
                            _ => &sinks,
                        };
                        rule["resources"]["names"] = json!(names);
                    }
                }
                w.policies.push(p);
            }
        }
    }
    w
}

/// Creates every object of `w` in `sim` through its store (no HTTP), in order.
pub fn seed(sim: &kubesim::Sim, w: &Workload) {
    for obj in w.all() {
        sim.seed(obj)
            .unwrap_or_else(|e| panic!("seed {}: {e:?}", obj["metadata"]["name"]));
    }
}

/// Checks, offline with the policy engine, that every generated Pipeline may run.
pub fn assert_compliant(w: &Workload) {
    use medplat::api::{AccessPolicy, DataSource, Pipeline, StorageTier};
    let typed = |v: &Value| -> (String, Value) {
        (
            v["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            v.clone(),
        )
    };
    let tiers: Vec<StorageTier> = w
        .setup
        .iter()
        .filter(|v| v["kind"] == "StorageTier")
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    let mut sources: BTreeMap<String, Vec<DataSource>> = BTreeMap::new();
    for (ns, v) in w.sources.iter().map(typed) {
        sources
            .entry(ns)
            .or_default()
            .push(serde_json::from_value(v).unwrap());
    }
    let mut policies: BTreeMap<String, Vec<AccessPolicy>> = BTreeMap::new();
    for (ns, v) in w.policies.iter().map(typed) {
        policies
            .entry(ns)
            .or_default()
            .push(serde_json::from_value(v).unwrap());
    }
    let now = jiff::Timestamp::now();
    let mut refused = Vec::new();
    for (ns, v) in w.pipelines.iter().map(typed) {
        let p: Pipeline = serde_json::from_value(v).unwrap();
        let decision = medplat::controller::pipeline::decide(
            &p,
            sources.get(&ns).map(Vec::as_slice).unwrap_or_default(),
            &tiers,
            policies.get(&ns).map(Vec::as_slice).unwrap_or_default(),
            now,
        );
        if !decision.allowed() {
            let reasons: Vec<String> = decision.blocking().map(|r| r.to_string()).collect();
            refused.push(format!(
                "{ns}/{}: {}",
                p.metadata.name.unwrap_or_default(),
                reasons.join("; ")
            ));
        }
    }
    assert!(
        refused.is_empty(),
        "{} generated pipelines are not compliant, e.g.:\n{}",
        refused.len(),
        refused
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Writes `w` as one YAML stream per kind under `dir` (for `medplat check` or inspection).
pub fn write_yaml(w: &Workload, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (file, objs) in [
        ("00-setup.yaml", &w.setup),
        ("20-sources.yaml", &w.sources),
        ("30-pipelines.yaml", &w.pipelines),
        ("40-policies.yaml", &w.policies),
    ] {
        let mut text = String::new();
        for o in objs {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(o).map_err(std::io::Error::other)?);
        }
        std::fs::write(dir.join(file), text)?;
    }
    Ok(())
}
