//! How a pipeline's steps change the identifying power of its fields, and when a `deidentify`
//! step may lower the output level (DESIGN.md §1, GB/T 37964-2019):
//!
//! - L4→L3: every direct identifier is pseudonymised (keyed hash, encryption) or removed, and
//!   every quasi identifier is handled by a rule;
//! - L3→L2: every direct identifier is removed or keyed-hashed with a key the recipient cannot
//!   get, every quasi identifier is generalised (or kept inside the k-anonymity gate's
//!   quasi-identifier set), and a k-anonymity gate is configured (it is enforced at run time).
//!
//! L5 (special conditions) is never lowered by de-identification.

use std::collections::BTreeMap;

use crate::api::classification::{Category, FieldSpec, IdentifierClass, Level};
use crate::api::deidentify::{DeidentifyRule, DeidentifyStep, Method, Unmatched};
use crate::api::steps::{MapStep, Step};

/// What has been done to a field so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldTreatment {
    /// The value is as the source delivered it.
    Original,
    /// Partly hidden (mask): still counts as identifying.
    Masked,
    /// Replaced by a keyed hash; `key_shared` when recipients can get the key.
    Hashed {
        /// Whether recipients of the output can obtain the key.
        key_shared: bool,
    },
    /// Encrypted: reversible by whoever holds the key.
    Encrypted,
    /// Shifted by a per-patient date offset.
    DateShifted,
    /// Coarsened (generalize) or noised (perturb).
    Generalized,
}

/// A field as it flows through the steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackedField {
    /// How the field identifies a person in the source's data dictionary.
    pub identifier: IdentifierClass,
    /// Its category.
    pub category: Category,
    /// What has been done to it.
    pub treatment: FieldTreatment,
}

/// The fields of the data at one point of the pipeline, by path. Removed fields are absent.
pub type FieldSet = BTreeMap<String, TrackedField>;

/// Builds the field set of the input from the sources' data dictionaries. When two sources
/// declare the same path, the more identifying declaration wins.
pub fn input_fields<'a>(dictionaries: impl IntoIterator<Item = &'a FieldSpec>) -> FieldSet {
    let mut set = FieldSet::new();
    for f in dictionaries {
        let entry = set.entry(f.path.clone()).or_insert(TrackedField {
            identifier: f.identifier,
            category: f.category,
            treatment: FieldTreatment::Original,
        });
        if identifying_rank(f.identifier) > identifying_rank(entry.identifier) {
            entry.identifier = f.identifier;
            entry.category = f.category;
        }
    }
    set
}

fn identifying_rank(c: IdentifierClass) -> u8 {
    match c {
        IdentifierClass::None => 0,
        IdentifierClass::Quasi => 1,
        IdentifierClass::Direct => 2,
    }
}

/// The outcome of one `deidentify` step for the level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepLowering {
    /// The level before the step.
    pub from: Level,
    /// The level after the step.
    pub to: Level,
    /// Why the level could not be lowered further, one line per field or gate.
    pub blockers: Vec<String>,
}

/// Applies a map step: renames move a field's classification, copies duplicate it, templates
/// inherit the most identifying field they read, constants identify nobody.
pub fn apply_map(fields: &mut FieldSet, step: &MapStep) {
    let before = fields.clone();
    let mut mapped_targets = Vec::new();
    for m in &step.fields {
        let derived = if let Some(from) = &m.from {
            let found = fields.get(from).cloned();
            if !m.copy {
                fields.remove(from);
            }
            found
        } else if let Some(template) = &m.template {
            template_sources(template)
                .iter()
                .filter_map(|p| before.get(p))
                .max_by_key(|f| identifying_rank(f.identifier))
                .cloned()
        } else {
            None
        };
        mapped_targets.push(m.to.clone());
        match derived {
            Some(f) => {
                fields.insert(m.to.clone(), f);
            }
            None => {
                fields.remove(&m.to);
            }
        }
    }
    if !step.keep_unmapped {
        fields.retain(|path, _| mapped_targets.contains(path));
    }
}

/// The field paths a `${path}` template reads.
fn template_sources(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// The first rule of `step` that selects a field (first match wins).
pub fn first_matching_rule<'a>(
    step: &'a DeidentifyStep,
    path: &str,
    field: &TrackedField,
) -> Option<&'a DeidentifyRule> {
    step.rules.iter().find(|r| {
        r.field.as_deref() == Some(path)
            || r.identifier == Some(field.identifier)
            || r.category == Some(field.category)
    })
}

/// Applies a deidentify step to the field set and decides the level after it.
pub fn apply_deidentify(
    fields: &mut FieldSet,
    step: &DeidentifyStep,
    level: Level,
) -> StepLowering {
    let key_shared = step.keys.as_ref().is_some_and(|k| k.shared_with_recipient);
    let mut l3_blockers = Vec::new();
    let mut explicit = BTreeMap::new();
    let mut next = FieldSet::new();
    for (path, field) in fields.iter() {
        let rule = first_matching_rule(step, path, field);
        explicit.insert(path.clone(), rule.is_some());
        let method = match rule {
            Some(r) => r.method,
            None => match step.unmatched {
                Unmatched::Redact => Method::Redact,
                Unmatched::Keep => Method::Keep,
            },
        };
        let treatment = match method {
            Method::Keep => Some(field.treatment),
            Method::Redact | Method::Substitute => None,
            Method::Mask => Some(FieldTreatment::Masked),
            Method::CryptoHash => Some(FieldTreatment::Hashed { key_shared }),
            Method::Encrypt => Some(FieldTreatment::Encrypted),
            Method::DateShift => Some(FieldTreatment::DateShifted),
            Method::Generalize | Method::Perturb => Some(FieldTreatment::Generalized),
        };
        if let Some(t) = treatment {
            next.insert(
                path.clone(),
                TrackedField {
                    treatment: t,
                    ..field.clone()
                },
            );
        }
        if field.identifier == IdentifierClass::Quasi
            && rule.is_none()
            && step.unmatched == Unmatched::Keep
        {
            l3_blockers.push(format!(
                "quasi identifier {path} is not handled by any rule (unmatched: keep)"
            ));
        }
    }
    *fields = next;

    for (path, f) in fields.iter() {
        if f.identifier == IdentifierClass::Direct
            && !matches!(
                f.treatment,
                FieldTreatment::Hashed { .. } | FieldTreatment::Encrypted
            )
        {
            l3_blockers.push(format!(
                "direct identifier {path} is {}: it must be pseudonymised (cryptoHash, encrypt) or removed",
                describe(f.treatment)
            ));
        }
    }
    let l2_blockers = l2_blockers(fields, step, &l3_blockers);

    let to = if level >= Level::L5 {
        level
    } else if level >= Level::L3 && l2_blockers.is_empty() {
        Level::L2
    } else if level == Level::L4 && l3_blockers.is_empty() {
        Level::L3
    } else {
        level
    };
    let blockers = match to {
        Level::L5 => {
            vec!["L5 data (special conditions) is never lowered by de-identification".into()]
        }
        Level::L4 => l3_blockers,
        Level::L3 => l2_blockers,
        _ => Vec::new(),
    };
    StepLowering {
        from: level,
        to,
        blockers,
    }
}

/// Why the fields do not yet meet the L3→L2 criteria (empty when they do).
fn l2_blockers(fields: &FieldSet, step: &DeidentifyStep, l3_blockers: &[String]) -> Vec<String> {
    let mut out: Vec<String> = l3_blockers.to_vec();
    let gate = step.privacy.as_ref();
    let k_covered = |path: &str| {
        gate.is_some_and(|g| {
            g.quasi_identifiers.is_empty() || g.quasi_identifiers.iter().any(|q| q == path)
        })
    };
    for (path, f) in fields {
        match (f.identifier, f.treatment) {
            (IdentifierClass::Direct, FieldTreatment::Hashed { key_shared: false }) => {}
            (IdentifierClass::Direct, FieldTreatment::Hashed { key_shared: true }) => out.push(format!(
                "direct identifier {path} is hashed with a key shared with recipients: remove it or use a key they cannot get"
            )),
            (IdentifierClass::Direct, FieldTreatment::Encrypted) => out.push(format!(
                "direct identifier {path} is encrypted (reversible): remove it or keyed-hash it for L2"
            )),
            (IdentifierClass::Quasi, FieldTreatment::Generalized) => {}
            (IdentifierClass::Quasi, FieldTreatment::Original) if k_covered(path) => {}
            (IdentifierClass::Quasi, t) => out.push(format!(
                "quasi identifier {path} is {}: generalise it, remove it, or keep it inside the k-anonymity gate",
                describe(t)
            )),
            _ => {}
        }
    }
    if gate.is_none() {
        out.push(
            "no privacy gate: L2 needs a k-anonymity gate (spec.steps[].deidentify.privacy.k)"
                .into(),
        );
    }
    out.sort();
    out.dedup();
    out
}

fn describe(t: FieldTreatment) -> &'static str {
    match t {
        FieldTreatment::Original => "kept as is",
        FieldTreatment::Masked => "only masked",
        FieldTreatment::Hashed { .. } => "keyed-hashed",
        FieldTreatment::Encrypted => "encrypted",
        FieldTreatment::DateShifted => "date-shifted",
        FieldTreatment::Generalized => "generalised",
    }
}

/// Runs every step over the field set and returns the final level with each deidentify step's
/// lowering, in order.
pub fn lower_through_steps(
    fields: &mut FieldSet,
    steps: &[Step],
    input: Level,
) -> (Level, Vec<(usize, StepLowering)>) {
    let mut level = input;
    let mut lowerings = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if let Some(map) = &step.map {
            apply_map(fields, map);
        }
        if let Some(link) = &step.link {
            // The link pseudonym is a keyed hash whose key stays with the data custodian.
            fields.insert(
                link.output_field.clone(),
                TrackedField {
                    identifier: IdentifierClass::Direct,
                    category: Category::PersonalAttributes,
                    treatment: FieldTreatment::Hashed { key_shared: false },
                },
            );
        }
        if let Some(d) = &step.deidentify {
            let lowering = apply_deidentify(fields, d, level);
            level = lowering.to;
            lowerings.push((i, lowering));
        }
    }
    (level, lowerings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(yaml: &str) -> FieldSet {
        let specs: Vec<FieldSpec> = serde_yaml::from_str(yaml).unwrap();
        input_fields(specs.iter())
    }

    fn step(yaml: &str) -> DeidentifyStep {
        serde_yaml::from_str(yaml).unwrap()
    }

    const DICT: &str = r#"
- {path: name, identifier: direct, category: PersonalAttributes}
- {path: id_card, identifier: direct, category: PersonalAttributes}
- {path: birth_date, identifier: quasi, category: PersonalAttributes}
- {path: result, identifier: none, category: HealthStatus}
"#;

    #[test]
    fn hashing_direct_and_handling_quasi_lowers_l4_to_l3() {
        let mut f = fields(DICT);
        let s = step(
            "rules: [{identifier: direct, method: cryptoHash}, {field: birth_date, method: dateShift, dateShift: {maxDays: 10, patientIdField: id_card}}, {identifier: none, method: keep}]",
        );
        let l = apply_deidentify(&mut f, &s, Level::L4);
        assert_eq!(l.to, Level::L3, "{:?}", l.blockers);
        assert!(
            l.blockers.iter().any(|b| b.contains("birth_date")),
            "{:?}",
            l.blockers
        );
    }

    #[test]
    fn masking_a_direct_identifier_does_not_lower() {
        let mut f = fields(DICT);
        let s = step(
            "rules: [{field: name, method: mask, mask: {keepLast: 1}}, {identifier: direct, method: redact}, {identifier: quasi, method: keep}]",
        );
        let l = apply_deidentify(&mut f, &s, Level::L4);
        assert_eq!(l.to, Level::L4);
        assert!(
            l.blockers[0].contains("name is only masked"),
            "{:?}",
            l.blockers
        );
    }

    #[test]
    fn removal_generalisation_and_a_gate_lower_to_l2() {
        let mut f = fields(DICT);
        let s = step(
            "rules: [{identifier: direct, method: redact}, {field: birth_date, method: generalize, generalize: {to: year}}, {identifier: none, method: keep}]\nprivacy: {k: 5}",
        );
        assert_eq!(apply_deidentify(&mut f, &s, Level::L4).to, Level::L2);
        assert!(f.contains_key("result") && !f.contains_key("name"));
    }

    #[test]
    fn unmatched_fields_are_removed_by_default() {
        let mut f = fields(DICT);
        let s = step("rules: [{field: result, method: keep}]");
        let l = apply_deidentify(&mut f, &s, Level::L4);
        assert_eq!(f.keys().collect::<Vec<_>>(), vec!["result"]);
        assert_eq!(
            l.to,
            Level::L3,
            "L2 still needs a privacy gate: {:?}",
            l.blockers
        );
    }

    #[test]
    fn level_five_is_never_lowered() {
        let mut f = fields(DICT);
        let s = step(
            "rules: [{identifier: direct, method: redact}, {identifier: quasi, method: redact}]\nprivacy: {k: 5}",
        );
        let l = apply_deidentify(&mut f, &s, Level::L5);
        assert_eq!(l.to, Level::L5);
    }

    #[test]
    fn a_rename_carries_the_classification() {
        let mut f = fields(DICT);
        let map: MapStep = serde_yaml::from_str(
            "fields: [{to: full_name, from: name}, {to: label, template: 'x ${id_card}'}]",
        )
        .unwrap();
        apply_map(&mut f, &map);
        assert_eq!(f["full_name"].identifier, IdentifierClass::Direct);
        assert_eq!(f["label"].identifier, IdentifierClass::Direct);
        assert!(!f.contains_key("name"));
    }
}
