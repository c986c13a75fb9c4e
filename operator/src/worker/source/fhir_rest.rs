//! The `fhir` connector: a FHIR R4 search per resource type, following the Bundle's `next`
//! links page by page (rustls, ring provider; the system's roots plus `ca.crt` of the
//! credentials Secret). Pages are streamed; a `next` link to another server is refused so a
//! bearer token never leaves the configured origin.

use std::collections::HashSet;

use serde_json::Value;

use super::channel::{ChannelSource, Producer, RECORDS_IN_FLIGHT};
use super::{SourceError, SourceItem, bounded_raw};
use crate::api::ca_bundle::trusting;
use crate::error_text::with_causes;
use crate::worker::secrets::SecretValue;

/// The most pages read per resource type: a server that pages forever cannot hang a run.
pub const MAX_PAGES: usize = 100_000;

/// Everything one FHIR read needs.
#[derive(Clone, Debug)]
pub struct FhirRead {
    /// The DataSource's name.
    pub source_name: String,
    /// The base URL, e.g. `https://fhir.hospital.local/fhir/R4`.
    pub base_url: String,
    /// The resource types to search.
    pub resource_types: Vec<String>,
    /// `_count` per page.
    pub page_size: u32,
    /// A bearer token, if the server wants one.
    pub token: Option<SecretValue>,
    /// `ca.crt` of the credentials Secret: a private CA to trust besides the system's roots.
    pub ca_pem: Option<SecretValue>,
}

/// Starts the read on `runtime`.
pub fn open(runtime: &tokio::runtime::Handle, read: FhirRead) -> ChannelSource {
    let description = read.base_url.clone();
    ChannelSource::spawn(runtime, description, RECORDS_IN_FLIGHT, move |producer| {
        produce(read, producer)
    })
}

fn origin(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

async fn produce(read: FhirRead, producer: Producer) -> Result<(), SourceError> {
    let fail = |message: String| SourceError::Remote {
        source_name: read.source_name.clone(),
        message,
    };
    let base = reqwest::Url::parse(read.base_url.trim_end_matches('/'))
        .map_err(|e| fail(format!("base URL {}: {e}", read.base_url)))?;
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
    if let Some(pem) = &read.ca_pem {
        let pem = pem.expose_text().map_err(|e| fail(e.to_string()))?;
        builder = trusting(builder, pem, "ca.crt of the credentials Secret").map_err(fail)?;
    }
    let client = builder
        .build()
        .map_err(|e| fail(format!("HTTP client: {}", with_causes(&e))))?;
    let token = match &read.token {
        Some(t) => Some(
            t.expose_text()
                .map_err(|e| fail(e.to_string()))?
                .to_string(),
        ),
        None => None,
    };
    for rt in &read.resource_types {
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|_| fail(format!("base URL {} cannot have a path", read.base_url)))?
            .push(rt);
        url.query_pairs_mut()
            .append_pair("_count", &read.page_size.to_string());
        let mut seen = HashSet::new();
        let mut next = Some(url);
        let mut page = 0usize;
        while let Some(url) = next.take() {
            page += 1;
            if page > MAX_PAGES || !seen.insert(url.to_string()) {
                return Err(fail(format!(
                    "{rt}: paging did not end (page {page}, {url})"
                )));
            }
            if origin(&url) != origin(&base) {
                return Err(fail(format!(
                    "{rt}: next link {url} leaves the server {}",
                    origin(&base)
                )));
            }
            let mut req = client
                .get(url.clone())
                .header("Accept", "application/fhir+json");
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| fail(format!("GET {url}: {}", with_causes(&e))))?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|e| fail(format!("GET {url}: {e}")))?;
            producer.bytes.add(body.len() as u64);
            if !status.is_success() {
                return Err(fail(format!("GET {url}: HTTP {status}")));
            }
            let bundle: Value = serde_json::from_slice(&body)
                .map_err(|e| fail(format!("GET {url}: response is not JSON: {e}")))?;
            if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
                return Err(fail(format!("GET {url}: response is not a Bundle")));
            }
            let entries = bundle
                .get("entry")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, entry) in entries.into_iter().enumerate() {
                let location = format!("{rt} page {page} entry {}", i + 1);
                let item = match entry.get("resource") {
                    Some(Value::Object(r))
                        if r.get("resourceType").is_some_and(Value::is_string) =>
                    {
                        SourceItem::Record {
                            record: r.clone().into(),
                            location,
                        }
                    }
                    _ => SourceItem::Malformed {
                        location,
                        reason: "Bundle entry has no resource with a resourceType".into(),
                        raw: bounded_raw(entry.to_string()),
                    },
                };
                if !producer.send(Ok(item)).await {
                    return Ok(());
                }
            }
            next = bundle
                .get("link")
                .and_then(Value::as_array)
                .and_then(|links| {
                    links
                        .iter()
                        .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
                })
                .and_then(|l| l.get("url").and_then(Value::as_str))
                .map(|u| {
                    base.join(u)
                        .map_err(|e| fail(format!("{rt}: bad next link {u}: {e}")))
                })
                .transpose()?;
        }
    }
    Ok(())
}
