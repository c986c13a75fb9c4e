//! The flat path against the record path: the same rows through the same steps, over a matrix
//! of steps, rows and charsets, must give the same lines, and decline exactly the rows the
//! record path does not keep.

use serde_json::json;

use super::*;
use crate::api::data_source::Charset;
use crate::api::steps::Step;
use crate::worker::charset;
use crate::worker::parallel::{Verdict, apply_steps};
use crate::worker::secrets::SecretStore;
use crate::worker::source::SourceItem;
use crate::worker::source::csv::CsvRecords;
use crate::worker::source::rows::Decoded;
use crate::worker::steps::{self, CompileContext, CompiledStep, Dictionary};

const HEADER: &str = "specimen_id,patient_id,patient_name,id_card,phone,gender,birth_date,age,region,result_value,unit,collected_at,note";

/// Rows for every path a step can take: kept, quarantined by each rule, text that needs JSON
/// escaping, blanks, a BOM, and rows that do not decode at all.
fn rows() -> Vec<String> {
    let ok = "S1,P1,王小明,11010519491231002X,13812345678,M,1949-12-31,37,110105,5.6,mmol/L,2026-11-03T08:30:00,ok";
    vec![
        ok.to_string(),
        // Quotes, a delimiter, a tab, a newline and a backslash inside fields.
        "S2,P2,\"李 \"\"四\"\"\",11010519491231002X,13812345678,F,19491231,93,110105,7,mmol/L,2026-11-04,\"a,b\tc\nd\\e\""
            .to_string(),
        // Blanks: an empty optional field, a blank phone.
        "S3,P3,,11010519491231002X,,F,1990-06-15,,110105,3.2,,2026-11-05T08:30:00+08:00,"
            .to_string(),
        // A bad check digit, a bad number, a bad phone, not a date.
        "S4,P4,赵六,110105194912310021,13812345678,M,1949-12-31,37,110105,5.6,mmol/L,2026-11-03,x".to_string(),
        "S5,P5,孙七,11010519491231002X,13812345678,M,1949-12-31,37,110105,high,mmol/L,2026-11-03,x".to_string(),
        "S6,P6,周八,11010519491231002X,12345,M,1949-12-31,37,110105,5.6,mmol/L,2026-11-03,x".to_string(),
        "S7,P7,吴九,11010519491231002X,13812345678,M,1949-12-31,37,110105,5.6,mmol/L,yesterday,x".to_string(),
        "S8,P8,郑十,11010519491231002X,13812345678,M,not a date,37,110105,5.6,mmol/L,2026-11-03,x".to_string(),
        // No patient id (dateShift cannot shift), no identity for link.
        "S9,,王,11010519491231002X,13812345678,M,1949-12-31,37,110105,5.6,mmol/L,2026-11-03,x".to_string(),
        "S10,P10,王, ,13812345678,M,1949-12-31,37,110105,5.6,mmol/L,2026-11-03,x".to_string(),
        // A value out of range, a gender not allowed.
        "S11,P11,王,11010519491231002X,13812345678,X,1949-12-31,37,110105,99,mmol/L,2026-11-03,x".to_string(),
        // Too few fields.
        "S12,P12,王".to_string(),
        // A BOM at the start of a field, kept out as the record path keeps it out.
        "\u{feff}S13,P1,王,11010519491231002X,13812345678,M,1949-12-31,37,110105,5.6,mmol/L,2026-11-03,x".to_string(),
        ok.replace("S1,", "S14,"),
    ]
}

const VALIDATE: &str = r#"
- validate:
    rules:
      - {name: id, field: id_card, check: residentId}
      - {name: phone, field: phone, check: mobilePhone}
      - {name: v, field: result_value, type: number, min: 0, max: 50}
      - {name: g, field: gender, allowedValues: [M, F]}
      - {name: s, field: specimen_id, required: true, pattern: "S[0-9]+"}
      - {name: absent, field: not_a_column}
"#;

/// Checks of what de-identification leaves.
const VALIDATE_AFTER: &str = r#"
- validate:
    rules:
      - {name: y, field: birth_date, pattern: "[0-9]{4}"}
      - {name: g, field: gender, allowedValues: [M, F]}
"#;

const LINK: &str = r#"
- link: {identityFields: [id_card], outputField: person, key: {name: k, key: hmac-key}}
"#;

const LINK_TWO_FIELDS_OVER_A_COLUMN: &str = r#"
- link: {identityFields: [id_card, patient_name], outputField: patient_id, key: {name: k, key: hmac-key}, algorithm: HMAC-SM3}
"#;

const DEIDENTIFY: &str = r#"
- deidentify:
    keys: {secretName: k}
    rules:
      - {field: patient_id, method: cryptoHash, cryptoHash: {algorithm: HMAC-SM3}}
      - {field: specimen_id, method: cryptoHash}
      - {field: birth_date, method: generalize, generalize: {to: year}}
      - {field: age, method: generalize, generalize: {to: ageBand}}
      - {field: region, method: generalize, generalize: {to: regionPrefix, prefixLength: 4}}
      - {field: collected_at, method: dateShift, dateShift: {maxDays: 30, patientIdField: patient_id}}
      - {field: phone, method: mask, mask: {keepLast: 4}}
      - {field: patient_name, method: substitute, substitute: {value: "某"}}
      - {field: person, method: keep}
      - {identifier: direct, method: redact}
      - {identifier: quasi, method: keep}
"#;

const DEIDENTIFY_UNMATCHED_KEEP: &str = r#"
- deidentify:
    keys: {secretName: k}
    unmatched: keep
    rules:
      - {field: id_card, method: cryptoHash, cryptoHash: {referenceIdOnly: true}}
      - {field: note, method: redact}
      - {field: result_value, method: perturb, perturb: {maxAbs: 0.5}}
      - {field: age, method: perturb, perturb: {maxAbs: 3}}
      - {field: collected_at, method: dateShift, dateShift: {maxDays: 10, patientIdField: person}}
"#;

fn dictionary() -> Dictionary {
    let field =
        |p: &str, i: &str| json!({"path": p, "identifier": i, "category": "PersonalAttributes"});
    let doc = json!({
        "version": 1, "namespace": "n", "name": "p", "serviceAccount": "sa",
        "spec": {"purpose": "Research", "sources": ["s"], "sink": {"tier": "t", "dataset": "d"}},
        "sources": {"s": {
            "system": "LIS", "connector": {"files": {"location": {"tier": "t", "path": "x"}, "format": "csv"}},
            "classification": {"level": "L4", "domain": "clinical"},
            "fields": [
                field("patient_name", "direct"), field("id_card", "direct"), field("phone", "direct"),
                field("gender", "quasi"), field("birth_date", "quasi"), field("result_value", "none"),
            ]
        }},
        "tiers": {}, "policies": [], "secrets": {}
    });
    Dictionary::of(&serde_json::from_value(doc).unwrap())
}

fn compile(yaml: &str) -> Vec<Box<dyn RecordStep>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("k")).unwrap();
    std::fs::write(dir.path().join("k/hmac-key"), "aa".repeat(32)).unwrap();
    std::fs::write(dir.path().join("k/date-shift-key"), "cc".repeat(32)).unwrap();
    let secrets = SecretStore::under_root(dir.path(), &["k"]);
    let dictionary = dictionary();
    let ctx = CompileContext {
        dictionary: &dictionary,
        secrets: &secrets,
        as_of: jiff::civil::date(2026, 11, 28),
    };
    let steps: Vec<Step> = serde_yaml::from_str(yaml).unwrap();
    steps::compile(&steps, &ctx)
        .unwrap()
        .into_iter()
        .map(|s| match s {
            CompiledStep::PerRecord(s) => s,
            _ => panic!("only per-record steps here"),
        })
        .collect()
}

/// The batches of a CSV file of `rows` under [`HEADER`], encoded in `cs`.
fn batches(rows: &[String], cs: Charset) -> Vec<RowBatch> {
    let text = format!("{HEADER}\n{}\n", rows.join("\n"));
    let mut bytes = charset::encode(&text, cs).into_owned();
    if cs == Charset::Utf8 {
        // A field that is not UTF-8: the row must be quarantined by both paths alike.
        bytes.extend_from_slice(b"S15,P1,\xff\xfe,11010519491231002X,13812345678,M,1949-12-31,37,110105,5.6,mmol/L,2026-11-03,x\n");
    }
    CsvRecords::new(&bytes[..], cs, b',', "f.csv".into(), "s".into())
        .filter_map(|item| match item.unwrap() {
            SourceItem::Rows(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// Row `i` through the record path: its line when kept.
fn record_line(steps: &[&dyn RecordStep], rows: &RowBatch, i: usize) -> Option<Vec<u8>> {
    let Decoded::Record(mut record) = rows.decode(i) else {
        return None;
    };
    matches!(apply_steps(steps, &mut record), Verdict::Keep).then(|| {
        let mut line = Vec::new();
        record.write_json(&mut line);
        line.push(b'\n');
        line
    })
}

#[test]
fn flat_rows_give_the_record_paths_lines_over_a_matrix_of_steps_and_charsets() {
    let pipelines = [
        VALIDATE.to_string(),
        LINK.to_string(),
        LINK_TWO_FIELDS_OVER_A_COLUMN.to_string(),
        DEIDENTIFY.to_string(),
        format!("{LINK}{DEIDENTIFY_UNMATCHED_KEEP}"),
        format!("{VALIDATE}{LINK}{DEIDENTIFY}"),
        format!("{LINK_TWO_FIELDS_OVER_A_COLUMN}{DEIDENTIFY}{VALIDATE_AFTER}"),
    ];
    for yaml in &pipelines {
        let compiled = compile(yaml);
        let steps: Vec<&dyn RecordStep> = compiled.iter().map(|s| s.as_ref()).collect();
        for cs in [Charset::Utf8, Charset::Gb18030] {
            let (mut kept, mut declined) = (0, 0);
            for rows in batches(&rows(), cs) {
                let plan = FlatPlan::compile(&steps, rows.decoder()).expect("a flat plan");
                let mut cells = Vec::new();
                for i in 0..rows.len() {
                    let mut flat = Vec::new();
                    let flat = plan
                        .write_row(&rows, i, &mut cells, &mut flat)
                        .then_some(flat);
                    let record = record_line(&steps, &rows, i);
                    let shown = |l: &Option<Vec<u8>>| {
                        l.as_ref().map(|l| String::from_utf8_lossy(l).into_owned())
                    };
                    assert_eq!(
                        shown(&flat),
                        shown(&record),
                        "row {} ({cs:?}) through {yaml}",
                        rows.location(i)
                    );
                    if flat.is_some() {
                        kept += 1
                    } else {
                        declined += 1
                    }
                }
            }
            // The matrix means something only if both outcomes occur.
            assert!(kept > 0, "{cs:?}: no row kept through {yaml}");
            assert!(declined > 0, "{cs:?}: no row declined through {yaml}");
        }
    }
}

#[test]
fn a_step_without_a_flat_form_or_a_path_in_a_field_leaves_rows_to_the_record_path() {
    let rows = batches(&rows()[..1], Charset::Utf8);
    let decoder = rows[0].decoder();
    for yaml in [
        "- map: {fields: [{from: unit, to: unit2}]}",
        "- validate: {rules: [{name: n, field: a.b, required: true}]}",
        "- link: {identityFields: [id_card], outputField: person.id, key: {name: k, key: hmac-key}}",
        "- link: {identityFields: [not_a_column], outputField: person, key: {name: k, key: hmac-key}}",
        "- deidentify: {keys: {secretName: k}, rules: [{field: collected_at, method: dateShift, dateShift: {maxDays: 3, patientIdField: p.id}}]}",
    ] {
        let compiled = compile(yaml);
        let steps: Vec<&dyn RecordStep> = compiled.iter().map(|s| s.as_ref()).collect();
        assert!(FlatPlan::compile(&steps, decoder).is_none(), "{yaml}");
    }
}

#[test]
fn lines_name_fields_in_record_order_with_added_columns_among_them() {
    let compiled = compile(LINK);
    let steps: Vec<&dyn RecordStep> = compiled.iter().map(|s| s.as_ref()).collect();
    let rows = batches(&rows()[..1], Charset::Utf8);
    let plan = FlatPlan::compile(&steps, rows[0].decoder()).unwrap();
    let mut line = Vec::new();
    assert!(plan.write_row(&rows[0], 0, &mut Vec::new(), &mut line));
    let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
    let names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"person"));
    assert_eq!(v["person"].as_str().unwrap().len(), 64);
}
