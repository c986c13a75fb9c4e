//! DataSource (namespaced): a system the hospital already runs, how to read it, and what its
//! data is (classification and data dictionary).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::classification::{Classification, FieldSpec};
use super::conditions::Condition;
use super::refs::{CredentialsRef, TierPathRef};

/// A hospital system (HIS, EMR, LIS, …) that medplat reads from, with its data dictionary.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "medplat.io",
    version = "v1alpha1",
    kind = "DataSource",
    doc = "A hospital system medplat reads from (HIS, EMR, LIS, PACS, ...), how to connect to it, and its classified data dictionary.",
    plural = "datasources",
    shortname = "mds",
    category = "medplat",
    namespaced,
    status = "DataSourceStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"System","type":"string","jsonPath":".spec.system"}"#,
    printcolumn = r#"{"name":"Connector","type":"string","jsonPath":".status.connector"}"#,
    printcolumn = r#"{"name":"Level","type":"string","jsonPath":".status.level"}"#,
    printcolumn = r#"{"name":"Domain","type":"string","jsonPath":".spec.classification.domain"}"#,
    printcolumn = r#"{"name":"Reachable","type":"string","jsonPath":".status.conditions[?(@.type==\"Reachable\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.fields.all(f, self.fields.exists_one(g, g.path == f.path))").message("field paths in spec.fields must be unique").field_path(".fields"))]
#[x_kube(validation = Rule::new("!has(self.connector.postgres) && !has(self.connector.mysql) && !has(self.connector.fhir) || has(self.credentials)").message("database and FHIR connectors need spec.credentials (a Secret reference)").field_path(".credentials"))]
pub struct DataSourceSpec {
    /// The kind of hospital system: HIS, EMR, LIS, PACS, RIS, EMPI, CDR, … or Other.
    pub system: SourceSystem,
    /// How to read the source: exactly one connector.
    pub connector: Connector,
    /// The Secret holding the credentials. Values are never copied anywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsRef>,
    /// What the data is: level, categories, domain and special flags.
    pub classification: Classification,
    /// The data dictionary: every field, how it identifies a person, its category and level.
    /// The dataset's level is the highest level of its fields.
    #[schemars(length(max = 512))]
    pub fields: Vec<FieldSpec>,
}

/// The kind of hospital information system a source is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceSystem {
    /// Hospital information system (patients, visits, orders, billing).
    #[serde(rename = "HIS")]
    His,
    /// Electronic medical record.
    #[serde(rename = "EMR")]
    Emr,
    /// Laboratory information system.
    #[serde(rename = "LIS")]
    Lis,
    /// Picture archiving and communication system.
    #[serde(rename = "PACS")]
    Pacs,
    /// Radiology information system.
    #[serde(rename = "RIS")]
    Ris,
    /// Enterprise master patient index.
    #[serde(rename = "EMPI")]
    Empi,
    /// Clinical data repository.
    #[serde(rename = "CDR")]
    Cdr,
    /// Hospital resource planning (finance, supplies, staff).
    #[serde(rename = "HRP")]
    Hrp,
    /// Any other system.
    Other,
}

/// How to read a source: exactly one of the connector kinds.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.mysql), has(self.fhir), has(self.hl7v2), has(self.files)].filter(x, x).size() == 1").message("exactly one of postgres, mysql, fhir, hl7v2 or files must be set"))]
pub struct Connector {
    /// A PostgreSQL table or query, pulled incrementally by a watermark column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<SqlConnector>,
    /// A MySQL table or query, pulled incrementally by a watermark column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<SqlConnector>,
    /// A FHIR R4 REST server, searched per resource type with paging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir: Option<FhirConnector>,
    /// An HL7 v2 MLLP listener (a push source): medplat runs the listener and lands messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hl7v2: Option<Hl7v2Connector>,
    /// Files in a tier: csv, ndjson, fhir-ndjson or hl7v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesConnector>,
}

impl Connector {
    /// The connector's kind, as shown in status and printer columns.
    pub fn kind(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else if self.mysql.is_some() {
            "mysql"
        } else if self.fhir.is_some() {
            "fhir"
        } else if self.hl7v2.is_some() {
            "hl7v2"
        } else if self.files.is_some() {
            "files"
        } else {
            "none"
        }
    }
}

/// A SQL table or query read incrementally.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.table) != has(self.query)").message("exactly one of table or query must be set"))]
pub struct SqlConnector {
    /// The database host name or IP address.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// The TCP port; 5432 for PostgreSQL by convention.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// The database name.
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    /// A table, optionally schema-qualified (`his.patient`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"))]
    pub table: Option<String>,
    /// A read-only SELECT query, used instead of a table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub query: Option<String>,
    /// A monotonically increasing column (timestamp or id); only rows above the last checkpoint
    /// are read on the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub watermark_column: Option<String>,
    /// TLS to the database: `disable`, `require` or `verify-full`.
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// A CIDR for the egress NetworkPolicy when the host is a DNS name (e.g. `10.20.0.0/24`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

/// TLS mode towards a database.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS; only on a trusted network segment.
    Disable,
    /// TLS, without verifying the server's certificate.
    #[default]
    Require,
    /// TLS with certificate and host name verification.
    VerifyFull,
}

/// A FHIR R4 REST server.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FhirConnector {
    /// The FHIR base URL, e.g. `https://fhir.hospital.local/fhir/R4`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub base_url: String,
    /// Resource types to search, e.g. `Patient`, `Observation`.
    #[schemars(length(min = 1, max = 64), inner(regex(pattern = r"^[A-Z][A-Za-z]+$")))]
    pub resource_types: Vec<String>,
    /// Page size of each search (`_count`).
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub page_size: u32,
    /// A CIDR for the egress NetworkPolicy when the host is a DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

fn default_page_size() -> u32 {
    100
}

/// An HL7 v2 MLLP listener that lands messages in a tier.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hl7v2Connector {
    /// The TCP port the listener serves MLLP on; 2575 by convention.
    #[serde(default = "default_mllp_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: u16,
    /// The character set senders use; GB18030 is common in Chinese hospitals.
    #[serde(default)]
    pub charset: Charset,
    /// Where accepted messages land: a tier and a path inside it.
    pub landing: TierPathRef,
    /// Message types to accept (`ADT^A01`, `ORU^R01`); empty accepts all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^[A-Z0-9]{3}(\^[A-Z0-9]{3})?$")))]
    pub message_types: Vec<String>,
    /// Listener replicas behind the Service.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: u32,
}

fn default_mllp_port() -> u16 {
    2575
}

fn default_replicas() -> u32 {
    1
}

/// Files in a tier, in one format.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FilesConnector {
    /// The tier and the directory inside it that holds the files.
    pub location: TierPathRef,
    /// The file format.
    pub format: FileFormat,
    /// The character set of text files; UTF-8 by default.
    #[serde(default)]
    pub charset: Charset,
    /// A glob of file names to read inside the directory, e.g. `*.csv`.
    #[serde(default = "default_glob")]
    pub pattern: String,
    /// The field delimiter of CSV files; `,` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1))]
    pub delimiter: Option<String>,
}

fn default_glob() -> String {
    "*".into()
}

/// A file format a source can read.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// One FHIR R4 resource per line (bulk data format).
    FhirNdjson,
    /// HL7 v2 messages, one per file or separated by blank lines or MLLP framing.
    Hl7v2,
}

/// A text character set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Charset {
    /// UTF-8.
    #[default]
    #[serde(rename = "UTF-8")]
    Utf8,
    /// GB18030, the Chinese national standard superset of GBK.
    #[serde(rename = "GB18030")]
    Gb18030,
    /// GBK.
    #[serde(rename = "GBK")]
    Gbk,
}

impl Charset {
    /// The label `encoding_rs` and HL7 MSH-18 use for this charset.
    pub fn label(self) -> &'static str {
        match self {
            Charset::Utf8 => "UTF-8",
            Charset::Gb18030 => "GB18030",
            Charset::Gbk => "GBK",
        }
    }
}

/// The observed state of a DataSource.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceStatus {
    /// The generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reachable`, `Reconciling`, `Stalled`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The connector kind in use (`postgres`, `fhir`, `hl7v2`, `files`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// The effective level: the highest level of the fields, L5 when a flag is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// When a pipeline last read this source successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<Time>,
    /// Records read from this source, over all runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_seen: Option<i64>,
}
