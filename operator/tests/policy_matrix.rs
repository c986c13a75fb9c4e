//! The classification rules as a decision matrix: source level × sink tier × de-identification
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! coverage × grants. Each row states the expected decision, output level and reasons.

use std::collections::BTreeMap;

use jiff::Timestamp;
use medplat::api::Level::{self, *};
use medplat::api::access_policy::AccessPolicySpec;
use medplat::api::data_source::DataSourceSpec;
use medplat::api::pipeline::PipelineSpec;
use medplat::api::storage_tier::StorageTierSpec;
use medplat::policy::ViolationReason::{self, *};
use medplat::policy::{Enforcement, NamedPolicy, PipelineContext, evaluate_pipeline};

const NS: &str = "clinical";
const SA: &str = "medplat-pipeline-p";

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

/// The source under test: its level, flags and domain.
#[derive(Clone, Copy, Debug)]
enum Src {
    /// L4 clinical with direct, quasi and plain fields.
    L4,
    /// L3 clinical, same dictionary.
    L3,
    /// L2 clinical, no identifiers at all.
    L2,
    /// L1 clinical reference data.
    L1,
    /// Declared L3 but flagged MentalHealth: effectively L5.
    Flagged,
    /// L3 declared, but one field is L5 (就高不就低).
    FieldL5,
    /// L4 in the research domain.
    ResearchL4,
}

fn source(src: Src) -> DataSourceSpec {
    let (level, domain, flags, fields) = match src {
        Src::L4 => ("L4", "clinical", "[]", IDENTIFIED),
        Src::L3 => ("L3", "clinical", "[]", IDENTIFIED),
        Src::L2 => ("L2", "clinical", "[]", PLAIN),
        Src::L1 => ("L1", "clinical", "[]", PLAIN),
        Src::Flagged => ("L3", "clinical", "[MentalHealth]", IDENTIFIED),
        Src::FieldL5 => ("L3", "clinical", "[]", WITH_L5_FIELD),
        Src::ResearchL4 => ("L4", "research", "[]", IDENTIFIED),
    };
    serde_yaml::from_str(&format!(
        "system: EMR\nconnector: {{files: {{location: {{tier: raw, path: x}}, format: ndjson}}}}\nclassification: {{level: {level}, domain: {domain}, flags: {flags}, categories: [HealthStatus]}}\nfields: {fields}"
    ))
    .unwrap()
}

const IDENTIFIED: &str = "[{path: name, identifier: direct, category: PersonalAttributes}, {path: id_card, identifier: direct, category: PersonalAttributes}, {path: birth_date, identifier: quasi, category: PersonalAttributes}, {path: gender, identifier: quasi, category: PersonalAttributes}, {path: dx, identifier: none, category: HealthStatus}]";
const PLAIN: &str = "[{path: dx, identifier: none, category: HealthStatus}]";
const WITH_L5_FIELD: &str = "[{path: name, identifier: direct, category: PersonalAttributes}, {path: hiv, identifier: none, category: HealthStatus, level: L5}]";

/// The de-identification the pipeline applies.
#[derive(Clone, Copy, Debug)]
enum Deid {
    /// No deidentify step.
    None,
    /// Direct hashed, quasi handled: meets L4→L3.
    Pseudonymise,
    /// A direct identifier only masked: lowers nothing.
    MaskOnly,
    /// Direct encrypted, quasi handled: L3 but never L2.
    Encrypt,
    /// Direct removed, quasi generalised, k-anonymity gate: meets L2.
    Anonymise,
    /// As Anonymise, without the privacy gate: stops at L3.
    AnonymiseNoGate,
    /// Direct hashed with a key recipients hold: stops at L3.
    SharedKey,
    /// Unmatched fields kept: quasi identifiers unhandled, lowers nothing.
    UnmatchedKeep,
}

fn steps(d: Deid) -> &'static str {
    match d {
        Deid::None => "[]",
        Deid::Pseudonymise => {
            "[{deidentify: {keys: {secretName: k}, rules: [{identifier: direct, method: cryptoHash}, {identifier: quasi, method: keep}, {identifier: none, method: keep}]}}]"
        }
        Deid::MaskOnly => {
            "[{deidentify: {rules: [{field: name, method: mask, mask: {keepLast: 1}}, {identifier: direct, method: redact}, {identifier: quasi, method: keep}, {identifier: none, method: keep}]}}]"
        }
        Deid::Encrypt => {
            "[{deidentify: {keys: {secretName: k}, rules: [{identifier: direct, method: encrypt}, {identifier: quasi, method: keep}, {identifier: none, method: keep}]}}]"
        }
        Deid::Anonymise => {
            "[{deidentify: {rules: [{identifier: direct, method: redact}, {field: birth_date, method: generalize, generalize: {to: year}}, {field: gender, method: keep}, {identifier: none, method: keep}], privacy: {k: 5}}}]"
        }
        Deid::AnonymiseNoGate => {
            "[{deidentify: {rules: [{identifier: direct, method: redact}, {field: birth_date, method: generalize, generalize: {to: year}}, {field: gender, method: keep}, {identifier: none, method: keep}]}}]"
        }
        Deid::SharedKey => {
            "[{deidentify: {keys: {secretName: k, sharedWithRecipient: true}, rules: [{identifier: direct, method: cryptoHash}, {field: birth_date, method: generalize, generalize: {to: year}}, {field: gender, method: keep}, {identifier: none, method: keep}], privacy: {k: 5}}}]"
        }
        Deid::UnmatchedKeep => {
            "[{deidentify: {unmatched: keep, rules: [{identifier: direct, method: redact}]}}]"
        }
    }
}

/// The sink tier: max level, encrypted, domain.
#[derive(Clone, Copy, Debug)]
struct Tier(Level, bool, &'static str);

fn tier(t: Tier) -> StorageTierSpec {
    serde_yaml::from_str(&format!(
        "domain: {}\nmaxLevel: {}\nencryption: {}\nbackend: {{volume: {{storageClassName: sc, size: 1Gi}}}}\nretentionDays: 30",
        t.2,
        t.0,
        if t.1 { "required" } else { "none" }
    ))
    .unwrap()
}

/// The grants the pipeline's ServiceAccount holds.
#[derive(Clone, Copy, Debug)]
enum Grants {
    /// read on the source, write on the tier, cross-domain clinical→research, Enforce.
    Full,
    /// Full, without the cross-domain flow.
    NoCrossDomain,
    /// Only read on the source.
    ReadOnly,
    /// Only write on the tier.
    WriteOnly,
    /// No policy names the ServiceAccount.
    Nothing,
    /// Full, but the write grant expired yesterday.
    ExpiredWrite,
    /// Full, but for another purpose.
    WrongPurpose,
    /// Only read, under a Warn-mode policy.
    ReadOnlyWarn,
    /// Only read, under an Audit-mode policy.
    ReadOnlyAudit,
    /// Full, but writing requires de-identified data.
    WriteDeidOnly,
    /// Full, but writing is capped at L2.
    WriteMaxL2,
    /// Full, with the write grant valid until next year.
    FutureExpiry,
}

fn policies(g: Grants) -> Vec<(String, AccessPolicySpec)> {
    let read = "{resources: {kind: DataSource, names: [src]}, verbs: [read]}";
    let write = |c: &str| {
        format!(
            "{{resources: {{kind: StorageTier, names: [sink]}}, verbs: [write], constraints: {{{c}}}}}"
        )
    };
    let doc = |purpose: &str, mode: &str, rules: Vec<String>, cross: bool| {
        format!(
            "subjects: [{{kind: ServiceAccount, name: {SA}}}]\npurpose: {purpose}\nmode: {mode}\nrules: [{}]\n{}",
            rules.join(", "),
            if cross {
                "crossDomain: [{from: clinical, to: research}]"
            } else {
                ""
            }
        )
    };
    let specs = match g {
        Grants::Full => vec![doc(
            "Research",
            "Enforce",
            vec![read.into(), write("")],
            true,
        )],
        Grants::NoCrossDomain => vec![doc(
            "Research",
            "Enforce",
            vec![read.into(), write("")],
            false,
        )],
        Grants::ReadOnly => vec![doc("Research", "Enforce", vec![read.into()], true)],
        Grants::WriteOnly => vec![doc("Research", "Enforce", vec![write("")], true)],
        Grants::Nothing => vec![],
        Grants::ExpiredWrite => vec![doc(
            "Research",
            "Enforce",
            vec![read.into(), write("validUntil: '2026-11-27T00:00:00Z'")],
            true,
        )],
        Grants::WrongPurpose => vec![doc(
            "Treatment",
            "Enforce",
            vec![read.into(), write("")],
            true,
        )],
        Grants::ReadOnlyWarn => vec![doc("Research", "Warn", vec![read.into()], true)],
        Grants::ReadOnlyAudit => vec![doc("Research", "Audit", vec![read.into()], true)],
        Grants::WriteDeidOnly => vec![doc(
            "Research",
            "Enforce",
            vec![read.into(), write("deidentifiedOnly: true")],
            true,
        )],
        Grants::WriteMaxL2 => vec![doc(
            "Research",
            "Enforce",
            vec![read.into(), write("maxLevel: L2")],
            true,
        )],
        Grants::FutureExpiry => vec![doc(
            "Research",
            "Enforce",
            vec![read.into(), write("validUntil: '2027-11-27T00:00:00Z'")],
            true,
        )],
    };
    specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| (format!("policy-{i}"), serde_yaml::from_str(&s).unwrap()))
        .collect()
}

struct Case {
    src: Src,
    deid: Deid,
    tier: Tier,
    grants: Grants,
    allowed: bool,
    level: Level,
    /// Every reason reported, blocking or not, sorted.
    reasons: &'static [ViolationReason],
}

const ENC_L4_CLIN: Tier = Tier(L4, true, "clinical");
const ENC_L3_CLIN: Tier = Tier(L3, true, "clinical");
const ENC_L5_CLIN: Tier = Tier(L5, true, "clinical");
const PLAIN_L4_CLIN: Tier = Tier(L4, false, "clinical");
const PLAIN_L2_CLIN: Tier = Tier(L2, false, "clinical");
const PLAIN_L2_RES: Tier = Tier(L2, false, "research");
const ENC_L3_RES: Tier = Tier(L3, true, "research");
const PLAIN_L1_CLIN: Tier = Tier(L1, false, "clinical");

fn c(
    src: Src,
    deid: Deid,
    tier: Tier,
    grants: Grants,
    allowed: bool,
    level: Level,
    reasons: &'static [ViolationReason],
) -> Case {
    Case {
        src,
        deid,
        tier,
        grants,
        allowed,
        level,
        reasons,
    }
}

fn cases() -> Vec<Case> {
    use Deid as D;
    use Grants as G;
    use Src as S;
    vec![
        // Levels into a matching encrypted clinical tier, fully granted.
        c(S::L4, D::None, ENC_L4_CLIN, G::Full, true, L4, &[]),
        c(S::L3, D::None, ENC_L3_CLIN, G::Full, true, L3, &[]),
        c(S::L2, D::None, PLAIN_L2_CLIN, G::Full, true, L2, &[]),
        c(S::L1, D::None, PLAIN_L1_CLIN, G::Full, true, L1, &[]),
        c(S::Flagged, D::None, ENC_L5_CLIN, G::Full, true, L5, &[]),
        c(S::FieldL5, D::None, ENC_L5_CLIN, G::Full, true, L5, &[]),
        // Level above the tier's maxLevel.
        c(
            S::L4,
            D::None,
            ENC_L3_CLIN,
            G::Full,
            false,
            L4,
            &[TierLevelTooLow],
        ),
        c(
            S::Flagged,
            D::None,
            ENC_L4_CLIN,
            G::Full,
            false,
            L5,
            &[TierLevelTooLow],
        ),
        c(
            S::FieldL5,
            D::None,
            ENC_L4_CLIN,
            G::Full,
            false,
            L5,
            &[TierLevelTooLow],
        ),
        c(
            S::L3,
            D::None,
            PLAIN_L2_CLIN,
            G::Full,
            false,
            L3,
            &[TierLevelTooLow, TierNotEncrypted],
        ),
        c(
            S::L2,
            D::None,
            PLAIN_L1_CLIN,
            G::Full,
            false,
            L2,
            &[TierLevelTooLow],
        ),
        // Encryption for L3 and above.
        c(
            S::L4,
            D::None,
            PLAIN_L4_CLIN,
            G::Full,
            false,
            L4,
            &[TierNotEncrypted],
        ),
        c(
            S::L3,
            D::None,
            PLAIN_L4_CLIN,
            G::Full,
            false,
            L3,
            &[TierNotEncrypted],
        ),
        c(S::L2, D::None, PLAIN_L4_CLIN, G::Full, true, L2, &[]),
        c(
            S::L4,
            D::Pseudonymise,
            PLAIN_L4_CLIN,
            G::Full,
            false,
            L3,
            &[TierNotEncrypted],
        ),
        c(S::L4, D::Anonymise, PLAIN_L4_CLIN, G::Full, true, L2, &[]),
        // De-identification coverage, L4 input.
        c(S::L4, D::Pseudonymise, ENC_L3_CLIN, G::Full, true, L3, &[]),
        c(
            S::L4,
            D::MaskOnly,
            ENC_L3_CLIN,
            G::Full,
            false,
            L4,
            &[TierLevelTooLow],
        ),
        c(S::L4, D::Encrypt, ENC_L3_CLIN, G::Full, true, L3, &[]),
        c(
            S::L4,
            D::Encrypt,
            PLAIN_L2_CLIN,
            G::Full,
            false,
            L3,
            &[TierLevelTooLow, TierNotEncrypted],
        ),
        c(S::L4, D::Anonymise, PLAIN_L2_CLIN, G::Full, true, L2, &[]),
        c(
            S::L4,
            D::AnonymiseNoGate,
            PLAIN_L2_CLIN,
            G::Full,
            false,
            L3,
            &[TierLevelTooLow, TierNotEncrypted],
        ),
        c(
            S::L4,
            D::AnonymiseNoGate,
            ENC_L3_CLIN,
            G::Full,
            true,
            L3,
            &[],
        ),
        c(
            S::L4,
            D::SharedKey,
            PLAIN_L2_CLIN,
            G::Full,
            false,
            L3,
            &[TierLevelTooLow, TierNotEncrypted],
        ),
        c(S::L4, D::SharedKey, ENC_L3_CLIN, G::Full, true, L3, &[]),
        c(
            S::L4,
            D::UnmatchedKeep,
            ENC_L3_CLIN,
            G::Full,
            false,
            L4,
            &[TierLevelTooLow],
        ),
        c(S::L4, D::UnmatchedKeep, ENC_L4_CLIN, G::Full, true, L4, &[]),
        c(
            S::L4,
            D::Anonymise,
            PLAIN_L1_CLIN,
            G::Full,
            false,
            L2,
            &[TierLevelTooLow],
        ),
        // De-identification coverage, L3 input.
        c(S::L3, D::Anonymise, PLAIN_L2_CLIN, G::Full, true, L2, &[]),
        c(
            S::L3,
            D::Pseudonymise,
            PLAIN_L2_CLIN,
            G::Full,
            false,
            L3,
            &[TierLevelTooLow, TierNotEncrypted],
        ),
        c(
            S::L3,
            D::SharedKey,
            PLAIN_L2_CLIN,
            G::Full,
            false,
            L3,
            &[TierLevelTooLow, TierNotEncrypted],
        ),
        c(S::L3, D::MaskOnly, ENC_L3_CLIN, G::Full, true, L3, &[]),
        c(
            S::L3,
            D::AnonymiseNoGate,
            PLAIN_L2_CLIN,
            G::Full,
            false,
            L3,
            &[TierLevelTooLow, TierNotEncrypted],
        ),
        // L5 is never lowered.
        c(
            S::Flagged,
            D::Anonymise,
            PLAIN_L2_CLIN,
            G::Full,
            false,
            L5,
            &[TierLevelTooLow, TierNotEncrypted],
        ),
        c(
            S::Flagged,
            D::Pseudonymise,
            ENC_L3_CLIN,
            G::Full,
            false,
            L5,
            &[TierLevelTooLow],
        ),
        c(
            S::FieldL5,
            D::Anonymise,
            ENC_L5_CLIN,
            G::Full,
            true,
            L5,
            &[],
        ),
        // Nothing to lower below L2.
        c(S::L2, D::Anonymise, PLAIN_L2_CLIN, G::Full, true, L2, &[]),
        c(
            S::L1,
            D::Pseudonymise,
            PLAIN_L1_CLIN,
            G::Full,
            true,
            L1,
            &[],
        ),
        // Cross-domain flows.
        c(S::L4, D::Anonymise, PLAIN_L2_RES, G::Full, true, L2, &[]),
        c(
            S::L4,
            D::Anonymise,
            PLAIN_L2_RES,
            G::NoCrossDomain,
            false,
            L2,
            &[CrossDomainNotGranted],
        ),
        c(S::L4, D::Pseudonymise, ENC_L3_RES, G::Full, true, L3, &[]),
        c(
            S::L4,
            D::Pseudonymise,
            ENC_L3_RES,
            G::NoCrossDomain,
            false,
            L3,
            &[CrossDomainNotGranted],
        ),
        c(
            S::L4,
            D::None,
            ENC_L3_RES,
            G::NoCrossDomain,
            false,
            L4,
            &[CrossDomainNotGranted, TierLevelTooLow],
        ),
        c(
            S::ResearchL4,
            D::Anonymise,
            PLAIN_L2_RES,
            G::NoCrossDomain,
            true,
            L2,
            &[],
        ),
        c(
            S::ResearchL4,
            D::Anonymise,
            PLAIN_L2_CLIN,
            G::NoCrossDomain,
            false,
            L2,
            &[CrossDomainNotGranted],
        ),
        c(
            S::L4,
            D::Anonymise,
            PLAIN_L2_RES,
            G::WrongPurpose,
            false,
            L2,
            &[CrossDomainNotGranted, ReadNotGranted, WriteNotGranted],
        ),
        // Grants for the pipeline's ServiceAccount.
        c(
            S::L4,
            D::None,
            ENC_L4_CLIN,
            G::ReadOnly,
            false,
            L4,
            &[WriteNotGranted],
        ),
        c(
            S::L4,
            D::None,
            ENC_L4_CLIN,
            G::WriteOnly,
            false,
            L4,
            &[ReadNotGranted],
        ),
        c(
            S::L4,
            D::None,
            ENC_L4_CLIN,
            G::Nothing,
            false,
            L4,
            &[ReadNotGranted, WriteNotGranted],
        ),
        c(
            S::L2,
            D::None,
            PLAIN_L2_CLIN,
            G::Nothing,
            false,
            L2,
            &[ReadNotGranted, WriteNotGranted],
        ),
        c(
            S::L4,
            D::None,
            ENC_L4_CLIN,
            G::WrongPurpose,
            false,
            L4,
            &[ReadNotGranted, WriteNotGranted],
        ),
        c(
            S::L4,
            D::Anonymise,
            PLAIN_L2_RES,
            G::Nothing,
            false,
            L2,
            &[CrossDomainNotGranted, ReadNotGranted, WriteNotGranted],
        ),
        // Expiry.
        c(
            S::L4,
            D::None,
            ENC_L4_CLIN,
            G::ExpiredWrite,
            false,
            L4,
            &[GrantExpired],
        ),
        c(
            S::L4,
            D::Anonymise,
            PLAIN_L2_RES,
            G::ExpiredWrite,
            false,
            L2,
            &[GrantExpired],
        ),
        c(S::L4, D::None, ENC_L4_CLIN, G::FutureExpiry, true, L4, &[]),
        // Constraints on the write grant.
        c(
            S::L4,
            D::Anonymise,
            PLAIN_L2_CLIN,
            G::WriteDeidOnly,
            true,
            L2,
            &[],
        ),
        c(
            S::L4,
            D::Pseudonymise,
            ENC_L3_CLIN,
            G::WriteDeidOnly,
            true,
            L3,
            &[],
        ),
        c(
            S::L4,
            D::None,
            ENC_L4_CLIN,
            G::WriteDeidOnly,
            false,
            L4,
            &[GrantRequiresDeidentified],
        ),
        c(
            S::L2,
            D::None,
            PLAIN_L2_CLIN,
            G::WriteDeidOnly,
            false,
            L2,
            &[GrantRequiresDeidentified],
        ),
        c(
            S::L4,
            D::Anonymise,
            PLAIN_L2_CLIN,
            G::WriteMaxL2,
            true,
            L2,
            &[],
        ),
        c(
            S::L4,
            D::Pseudonymise,
            ENC_L3_CLIN,
            G::WriteMaxL2,
            false,
            L3,
            &[GrantLevelTooLow],
        ),
        c(
            S::L4,
            D::None,
            ENC_L4_CLIN,
            G::WriteMaxL2,
            false,
            L4,
            &[GrantLevelTooLow],
        ),
        // Warn and Audit modes report grant problems but let the pipeline run; classification
        // rules still block.
        c(
            S::L4,
            D::None,
            ENC_L4_CLIN,
            G::ReadOnlyWarn,
            true,
            L4,
            &[WriteNotGranted],
        ),
        c(
            S::L4,
            D::None,
            ENC_L4_CLIN,
            G::ReadOnlyAudit,
            true,
            L4,
            &[WriteNotGranted],
        ),
        c(
            S::L4,
            D::None,
            ENC_L3_CLIN,
            G::ReadOnlyWarn,
            false,
            L4,
            &[TierLevelTooLow, WriteNotGranted],
        ),
        c(
            S::L4,
            D::None,
            PLAIN_L4_CLIN,
            G::ReadOnlyAudit,
            false,
            L4,
            &[TierNotEncrypted, WriteNotGranted],
        ),
        c(
            S::L4,
            D::Anonymise,
            PLAIN_L2_RES,
            G::ReadOnlyWarn,
            true,
            L2,
            &[WriteNotGranted],
        ),
        c(
            S::Flagged,
            D::None,
            ENC_L5_CLIN,
            G::ReadOnlyAudit,
            true,
            L5,
            &[WriteNotGranted],
        ),
    ]
}

fn run(case: &Case) -> medplat::policy::PipelineDecision {
    let mut sources = BTreeMap::new();
    sources.insert("src".to_string(), source(case.src));
    let mut tiers = BTreeMap::new();
    tiers.insert("sink".to_string(), tier(case.tier));
    let spec: PipelineSpec = serde_yaml::from_str(&format!(
        "purpose: Research\nsources: [src]\nsink: {{tier: sink, dataset: out}}\nsteps: {}",
        steps(case.deid)
    ))
    .unwrap();
    let owned = policies(case.grants);
    let named: Vec<NamedPolicy<'_>> = owned
        .iter()
        .map(|(name, spec)| NamedPolicy {
            namespace: NS,
            name,
            spec,
        })
        .collect();
    let ctx = PipelineContext {
        namespace: NS,
        name: "p",
        spec: &spec,
        service_account: SA,
        sources: &sources,
        tiers: &tiers,
        policies: &named,
    };
    evaluate_pipeline(&ctx, now())
}

#[test]
fn the_matrix_has_at_least_sixty_cases() {
    assert!(cases().len() >= 60, "{} cases", cases().len());
}

#[test]
fn every_case_decides_as_stated() {
    let mut failures = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        let d = run(case);
        let mut reasons: Vec<ViolationReason> = d.violations.iter().map(|v| v.reason).collect();
        reasons.sort();
        let mut expected = case.reasons.to_vec();
        expected.sort();
        if d.allowed() != case.allowed || d.output.level != case.level || reasons != expected {
            failures.push(format!(
                "case {i} ({:?}, {:?}, {:?}, {:?}): expected allowed={} level={} reasons={:?}; got allowed={} level={} violations={:#?} lowerings={:#?}",
                case.src, case.deid, case.tier, case.grants, case.allowed, case.level, expected,
                d.allowed(), d.output.level, d.violations, d.lowerings
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n\n")
    );
}

#[test]
fn messages_name_the_objects_and_fields() {
    let d = run(&c(
        Src::L4,
        Deid::None,
        ENC_L3_CLIN,
        Grants::Nothing,
        false,
        L4,
        &[],
    ));
    let tier = d
        .violations
        .iter()
        .find(|v| v.reason == TierLevelTooLow)
        .unwrap();
    assert_eq!(tier.field, "spec.sink.tier");
    assert!(
        tier.message.contains("StorageTier sink accepts at most L3"),
        "{}",
        tier.message
    );
    let read = d
        .violations
        .iter()
        .find(|v| v.reason == ReadNotGranted)
        .unwrap();
    assert_eq!(read.field, "spec.sources[0]");
    assert!(
        read.message.contains("clinical/medplat-pipeline-p")
            && read.message.contains("DataSource src"),
        "{}",
        read.message
    );
}

#[test]
fn warn_mode_violations_do_not_block() {
    let d = run(&c(
        Src::L4,
        Deid::None,
        ENC_L4_CLIN,
        Grants::ReadOnlyWarn,
        true,
        L4,
        &[],
    ));
    assert!(d.allowed());
    assert_eq!(d.violations[0].enforcement, Enforcement::Warn);
}

#[test]
fn processing_level_is_the_input_level_when_output_is_lower() {
    let d = run(&c(
        Src::L4,
        Deid::Anonymise,
        PLAIN_L2_CLIN,
        Grants::Full,
        true,
        L2,
        &[],
    ));
    assert_eq!(d.output.level, L2);
    assert_eq!(d.processing_level(), L4);
    assert!(d.deidentified);
}

#[test]
fn a_missing_source_and_tier_are_reported_with_their_paths() {
    let sources = BTreeMap::new();
    let tiers = BTreeMap::new();
    let spec: PipelineSpec = serde_yaml::from_str(
        "purpose: Research\nsources: [a, b]\nsink: {tier: gone, dataset: out}",
    )
    .unwrap();
    let ctx = PipelineContext {
        namespace: NS,
        name: "p",
        spec: &spec,
        service_account: SA,
        sources: &sources,
        tiers: &tiers,
        policies: &[],
    };
    let d = evaluate_pipeline(&ctx, now());
    let fields: Vec<_> = d
        .violations
        .iter()
        .map(|v| (v.reason, v.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        vec![
            (SourceNotFound, "spec.sources[0]"),
            (SourceNotFound, "spec.sources[1]"),
            (TierNotFound, "spec.sink.tier")
        ]
    );
}
