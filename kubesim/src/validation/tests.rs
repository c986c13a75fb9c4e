//! Tests of custom-resource admission: pruning, defaulting, schema and CEL validation.

use serde_json::{Value, json};

use super::*;

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {
            "group": "example.io",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "x-kubernetes-validations": [
                                {"rule": "self.size <= self.max", "message": "size must not exceed max", "fieldPath": ".size"},
                                {"rule": "self.mode == oldSelf.mode", "message": "mode is immutable"}
                            ],
                            "properties": {
                                "size": {"type": "integer", "minimum": 1},
                                "max": {"type": "integer", "default": 10},
                                "mode": {"type": "string", "enum": ["A", "B"], "default": "A"},
                                "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "maxItems": 3},
                                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                                "opt": {"type": "string"}
                            }
                        },
                        "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
                    }
                }}
            }]
        }
    })
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w", "bogus": 1}, "spec": spec})
}

// https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#field-pruning
// and #defaulting: unknown fields go, defaults fill in, preserve-unknown-fields keeps its subtree.
#[test]
fn prunes_and_defaults() {
    let out = validate_custom_resource(
        &crd(),
        &obj(json!({"size": 2, "junk": true, "free": {"x": 1}, "opt": null})),
        None,
    )
    .expect("valid");
    assert_eq!(
        out["spec"],
        json!({"size": 2, "max": 10, "mode": "A", "free": {"x": 1}})
    );
    assert!(out["metadata"].get("bogus").is_none());
    let v = SchemaValidator::from_crd(&crd(), None).expect("schema");
    let adm = v
        .admit(&obj(json!({"size": 2, "junk": true})), None)
        .expect("valid");
    assert_eq!(
        adm.unknown_fields,
        vec!["metadata.bogus".to_string(), "spec.junk".to_string()]
    );
}

// https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
// Each row: spec, expected rendered errors (path: phrase…), as the API server prints them.
#[test]
fn schema_and_cel_errors_match_api_server_wording() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["spec.size: Required value"]),
        (
            json!({"size": "x"}),
            vec![
                "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
            ],
        ),
        (
            json!({"size": 0}),
            vec![
                "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
            ],
        ),
        (
            json!({"size": 1, "mode": "C"}),
            vec!["spec.mode: Unsupported value: \"C\": supported values: \"A\", \"B\""],
        ),
        (
            json!({"size": 1, "name": "abcdef"}),
            vec!["spec.name: Too long: may not be more than 5 bytes"],
        ),
        (
            json!({"size": 1, "name": "AB"}),
            vec!["spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'"],
        ),
        (
            json!({"size": 1, "tags": ["a", "a"]}),
            vec!["spec.tags[1]: Duplicate value: \"a\""],
        ),
        (
            json!({"size": 1, "tags": ["a", "b", "c", "d"]}),
            vec!["spec.tags: Too many: 4: must have at most 3 items"],
        ),
        (
            json!({"size": 11}),
            vec!["spec.size: Invalid value: \"integer\": size must not exceed max"],
        ),
    ];
    for (spec, want) in cases {
        let errs =
            validate_custom_resource(&crd(), &obj(spec.clone()), None).expect_err("must fail");
        let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(got, want, "spec {spec}");
    }
}

// https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#transition-rules
#[test]
fn transition_rules_see_old_self_only_on_update() {
    let old = obj(json!({"size": 1, "mode": "A"}));
    let new = obj(json!({"size": 1, "mode": "B"}));
    assert!(
        validate_custom_resource(&crd(), &new, None).is_ok(),
        "create skips transition rules"
    );
    let errs = validate_custom_resource(&crd(), &new, Some(&old)).expect_err("immutable");
    assert_eq!(
        errs[0].to_string(),
        "spec: Invalid value: \"object\": mode is immutable"
    );
    assert_eq!(errs[0].kind.reason(), "FieldValueInvalid");
}

// Every CEL rule of every CRD this project generates must compile.
#[test]
fn every_cel_rule_in_crds_compiles() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("crds/ exists") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let crd: Value = serde::Deserialize::deserialize(doc).expect("yaml");
            if crd.is_null() {
                continue;
            }
            for v in crd["spec"]["versions"].as_array().expect("versions") {
                let name = v["name"].as_str().expect("name");
                let validator = SchemaValidator::from_crd(&crd, Some(name)).expect("schema");
                assert_eq!(
                    validator.rule_compile_errors(),
                    Vec::<String>::new(),
                    "{}",
                    path.display()
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 6, "expected the six medplat CRDs, saw {seen}");
}
