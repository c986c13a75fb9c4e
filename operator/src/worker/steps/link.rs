//! The `link` step: a stable pseudonymous person id, the keyed hash of normalised identity
//! fields (e.g. 身份证号), so records of one patient from different sources join without
//! revealing who the patient is. The same key in two pipelines gives the same pseudonym; a
//! different key gives an unrelated one.

use serde_json::Value;

use super::{Outcome, RecordStep, StepError};
use crate::api::steps::LinkStep;
use crate::worker::crypto::{KeyedHash, key_bytes, push_hex};
use crate::worker::flat::{Cell, FlatSchema, FlatStep};
use crate::worker::record::{self, Record};
use crate::worker::secrets::SecretStore;

/// A compiled link step.
#[derive(Debug)]
pub struct Link {
    name: String,
    fields: Vec<String>,
    output: String,
    hash: KeyedHash,
}

impl Link {
    /// Compiles the step, loading its key.
    pub fn compile(
        name: String,
        step: &LinkStep,
        secrets: &SecretStore,
    ) -> Result<Self, StepError> {
        let key = secrets
            .read(&step.key.name, &step.key.key)
            .map_err(|source| StepError::Secret {
                step: name.clone(),
                source,
            })?;
        let what = format!("key {} of Secret {}", step.key.key, step.key.name);
        let hash = KeyedHash::new(step.algorithm, &key_bytes(&key), &what).map_err(|e| {
            StepError::Config {
                step: name.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(Link {
            name,
            fields: step.identity_fields.clone(),
            output: step.output_field.clone(),
            hash,
        })
    }
}

/// Appends an identity value to `out`, normalised so trivial differences (case, spaces) do not
/// split a person; `false` when there is nothing left of it.
fn push_normalised(v: &Value, out: &mut String) -> bool {
    record::text(v).is_some_and(|t| push_normalised_text(&t, out))
}

fn push_normalised_text(t: &str, out: &mut String) -> bool {
    let start = out.len();
    if t.is_ascii() {
        // The common case (身份证号, MRNs): one pass, straight into the hash's input.
        out.extend(
            t.bytes()
                .map(char::from)
                .filter(|c| !c.is_whitespace())
                .map(|c| c.to_ascii_uppercase()),
        );
    } else {
        let kept: String = t.chars().filter(|c| !c.is_whitespace()).collect();
        out.push_str(&kept.to_uppercase());
    }
    out.len() > start
}

impl RecordStep for Link {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&self, rec: &mut Record) -> Outcome {
        let pseudonym = self.pseudonym(|i, material| {
            record::get(rec, &self.fields[i]).is_some_and(|v| push_normalised(v, material))
        });
        match pseudonym {
            Ok(p) => {
                record::set(rec, &self.output, Value::String(p));
                Outcome::Keep
            }
            Err(f) => Outcome::Quarantine {
                rule: format!("link {f}"),
                reason: format!("identity field {f} is missing, so no person id can be derived"),
            },
        }
    }

    fn flat<'a>(&'a self, schema: &mut FlatSchema) -> Option<Box<dyn FlatStep + 'a>> {
        let fields = self
            .fields
            .iter()
            .map(|f| schema.column(f))
            .collect::<Option<Vec<_>>>()?;
        let output = schema.column_to_write(&self.output)?;
        Some(Box::new(FlatLink {
            step: self,
            fields,
            output,
        }))
    }
}

impl Link {
    /// The pseudonym from the identity fields, which `push_field(i, material)` appends
    /// normalised; `Err` names the first field that is missing.
    fn pseudonym(
        &self,
        mut push_field: impl FnMut(usize, &mut String) -> bool,
    ) -> Result<String, &str> {
        // The hash input's buffer becomes the pseudonym's: one allocation per record.
        let mut material = String::with_capacity(64);
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                material.push('\u{1f}');
            }
            if !push_field(i, &mut material) {
                return Err(f);
            }
        }
        let tag = self.hash.tag(material.as_bytes());
        material.clear();
        push_hex(&tag, &mut material);
        Ok(material)
    }
}

/// The link step bound to its identity and output columns.
struct FlatLink<'a> {
    step: &'a Link,
    fields: Vec<usize>,
    output: usize,
}

impl FlatStep for FlatLink<'_> {
    fn apply(&self, cells: &mut [Cell<'_>]) -> bool {
        let pseudonym = self.step.pseudonym(|i, material| {
            match self.fields.get(i).and_then(|c| cells.get(*c)) {
                Some(Cell::Text(t)) => push_normalised_text(t, material),
                Some(Cell::Value(v)) => push_normalised(v, material),
                _ => false,
            }
        });
        match (pseudonym, cells.get_mut(self.output)) {
            (Ok(p), Some(cell)) => {
                *cell = Cell::Value(Value::String(p));
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn link(key: &str) -> Link {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("l")).unwrap();
        std::fs::write(dir.path().join("l/hmac-key"), key).unwrap();
        let step: LinkStep = serde_yaml::from_str(
            "identityFields: [id_card]\nkey: {name: l, key: hmac-key}\nalgorithm: HMAC-SM3",
        )
        .unwrap();
        Link::compile(
            "link".into(),
            &step,
            &SecretStore::under_root(dir.path(), &["l"]),
        )
        .unwrap()
    }

    #[test]
    fn same_person_same_pseudonym_only_under_the_same_key() {
        let a = link(&"11".repeat(32));
        let b = link(&"22".repeat(32));
        let mut r1 = json!({"id_card": "11010519491231002x"})
            .as_object()
            .map(|m| Record::from(m.clone()))
            .unwrap();
        let mut r2 = json!({"id_card": " 11010519491231002X"})
            .as_object()
            .map(|m| Record::from(m.clone()))
            .unwrap();
        let mut r3 = r1.clone();
        assert_eq!(a.apply(&mut r1), Outcome::Keep);
        a.apply(&mut r2);
        b.apply(&mut r3);
        assert_eq!(r1["personId"], r2["personId"]);
        assert_ne!(r1["personId"], r3["personId"]);
        let mut none = json!({})
            .as_object()
            .map(|m| Record::from(m.clone()))
            .unwrap();
        assert!(matches!(a.apply(&mut none), Outcome::Quarantine { .. }));
    }
}
