//! The shared classification vocabulary of GB/T 39725-2020: levels, categories, domains and flags.
//!
//! Every kind that holds data carries a [`Classification`]. Levels are an ordered enum so that
//! "at least L3" is a comparison, never a string match.

use std::fmt;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A data security level of GB/T 39725-2020 §5.2, from L1 (public) to L5 (most restricted).
///
/// The derive order is the level order, so `Level::L3 < Level::L4`.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum Level {
    /// Public facts, usable by anyone (a hospital's name and address).
    L1,
    /// Data that identifies nobody, usable by a wide internal audience after approval.
    L2,
    /// Pseudonymised data that could still be re-identified: one authorised project group.
    L3,
    /// Directly identifying clinical data: the treating staff.
    L4,
    /// Special conditions (HIV/STD, mental health, genetic, reproductive): attending staff only.
    L5,
}

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 5] = [Level::L1, Level::L2, Level::L3, Level::L4, Level::L5];

    /// The level's name as it appears in manifests and labels (`L1`..`L5`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::L1 => "L1",
            Level::L2 => "L2",
            Level::L3 => "L3",
            Level::L4 => "L4",
            Level::L5 => "L5",
        }
    }

    /// Parses `L1`..`L5`, as found in the `medplat.io/level` label.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// Whether data at this level must run on hardened nodes, into encrypted tiers,
    /// behind default-deny egress and with per-access audit events (DESIGN.md §1: L3 and above).
    pub fn is_sensitive(self) -> bool {
        self >= Level::L3
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A data category of GB/T 39725-2020 (C1..C6), by its readable name.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum Category {
    /// C1 个人属性: name, 身份证号, phone, address, biometrics, device ids.
    PersonalAttributes,
    /// C2 健康状况: chief complaint, history, lab and exam results, genetic data.
    HealthStatus,
    /// C3 医疗应用: outpatient and inpatient records, orders, reports, discharge notes.
    MedicalApplication,
    /// C4 医疗支付: insurance payments, amounts, insurance status.
    MedicalPayment,
    /// C5 卫生资源: hospital master data and operations data.
    HealthResources,
    /// C6 公共卫生: infectious disease reports, surveillance, births and deaths.
    PublicHealth,
}

impl Category {
    /// The standard's short code, `C1`..`C6`.
    pub fn code(self) -> &'static str {
        match self {
            Category::PersonalAttributes => "C1",
            Category::HealthStatus => "C2",
            Category::MedicalApplication => "C3",
            Category::MedicalPayment => "C4",
            Category::HealthResources => "C5",
            Category::PublicHealth => "C6",
        }
    }
}

/// A special condition that forces level L5 whatever the declared level (GB/T 39725 §5.2).
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum SensitiveFlag {
    /// Genetic and genomic data.
    Genetic,
    /// Notifiable infectious disease, including HIV and STD.
    InfectiousDisease,
    /// Mental health diagnoses and treatment.
    MentalHealth,
    /// Reproductive health, including assisted reproduction.
    Reproductive,
    /// Data about minors.
    Minor,
}

/// What a dataset is: its level, categories, domain (分域) and special flags.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Classification {
    /// Security level L1 (public) to L5 (most restricted). A dataset takes the highest level of
    /// its fields (就高不就低); any flag forces L5.
    pub level: Level,
    /// Categories C1..C6 of GB/T 39725-2020 that the data contains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(c, self.exists_one(d, d == c))").message("categories must not repeat"))]
    pub categories: Vec<Category>,
    /// The data domain (分域) it belongs to, e.g. `clinical`, `research`, `operations`,
    /// `public-health`. Data flows across domains only with an AccessPolicy grant.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub domain: String,
    /// Special conditions (Genetic, InfectiousDisease, MentalHealth, Reproductive, Minor); any
    /// one of them makes the effective level L5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<SensitiveFlag>,
}

impl Classification {
    /// The level after the special flags are applied: any flag means L5.
    pub fn effective_level(&self) -> Level {
        if self.flags.is_empty() {
            self.level
        } else {
            Level::L5
        }
    }
}

/// How a field identifies a person (GB/T 37964-2019 de-identification guide).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum IdentifierClass {
    /// Identifies a person on its own: name, 身份证号, phone, 住院号, …
    Direct,
    /// Identifies a person in combination: birth date, sex, postcode, admission date, …
    Quasi,
    /// Identifies nobody.
    None,
}

/// One field of a data dictionary: its path, how it identifies, its category and level.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FieldSpec {
    /// The field's path in a record, dot-separated (`patient.idCard`, `result.value`).
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$")
    )]
    pub path: String,
    /// `direct`, `quasi` or `none`: decides which de-identification rules must cover it.
    pub identifier: IdentifierClass,
    /// The GB/T 39725 category of this field.
    pub category: Category,
    /// The field's own level, when it differs from the source's declared level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// A short human description for the data dictionary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
}

/// Why data is used; an AccessPolicy grants access for one purpose.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Direct patient care.
    Treatment,
    /// Approved research projects.
    Research,
    /// Hospital operations and management.
    Operations,
    /// Public health reporting and surveillance.
    PublicHealth,
    /// Quality improvement and clinical audit.
    QualityImprovement,
}

impl Purpose {
    /// The purpose's name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Treatment => "Treatment",
            Purpose::Research => "Research",
            Purpose::Operations => "Operations",
            Purpose::PublicHealth => "PublicHealth",
            Purpose::QualityImprovement => "QualityImprovement",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_from_public_to_most_restricted() {
        assert!(Level::L1 < Level::L2 && Level::L2 < Level::L3);
        assert!(Level::L3 < Level::L4 && Level::L4 < Level::L5);
        assert_eq!(Level::ALL.iter().max(), Some(&Level::L5));
        assert!(!Level::L2.is_sensitive());
        assert!(Level::L3.is_sensitive());
    }

    #[test]
    fn level_round_trips_through_its_label_form() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
        assert_eq!(Level::parse("l3"), None);
    }

    #[test]
    fn any_flag_forces_level_five() {
        let mut c = Classification {
            level: Level::L3,
            categories: vec![Category::HealthStatus],
            domain: "clinical".into(),
            flags: vec![],
        };
        assert_eq!(c.effective_level(), Level::L3);
        c.flags.push(SensitiveFlag::MentalHealth);
        assert_eq!(c.effective_level(), Level::L5);
    }

    #[test]
    fn category_codes_follow_the_standard() {
        assert_eq!(Category::PersonalAttributes.code(), "C1");
        assert_eq!(Category::PublicHealth.code(), "C6");
    }
}
