//! Canaries: distinctive secret values planted in Secrets, and a scanner that looks for them,
//! raw and encoded (base64 at any byte alignment, hex, and the decoded bytes of a hex key), in
//! whatever a test captured: log lines, API objects, metrics, files.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// A planted secret value.
#[derive(Clone, Debug)]
pub struct Canary {
    /// What it stands for, e.g. `lab-deid-keys/hmac-key`.
    pub name: String,
    /// The value exactly as planted.
    pub value: Vec<u8>,
}

/// Something a test captured, to be scanned.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// Where it came from (`log`, `Event clinical/x`, `file out/part-00000.csv`, …).
    pub origin: String,
    /// Its content.
    pub bytes: Vec<u8>,
}

impl Artifact {
    /// An artifact from text or bytes.
    pub fn new(origin: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Artifact {
        Artifact {
            origin: origin.into(),
            bytes: bytes.into(),
        }
    }
}

/// One planted value found where it must not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The canary's name.
    pub canary: String,
    /// Which encoding matched.
    pub form: String,
    /// The artifact's origin.
    pub origin: String,
    /// Byte offset in the artifact.
    pub offset: usize,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) in {} at byte {}",
            self.canary, self.form, self.origin, self.offset
        )
    }
}

impl Canary {
    /// A canary named `name` with `value`.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Canary {
        Canary {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Every form a leak of this value could take, as (form, bytes).
    pub fn needles(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![("raw".to_string(), self.value.clone())];
        let trimmed = String::from_utf8_lossy(&self.value).trim().to_string();
        if trimmed.len() != self.value.len() {
            out.push(("trimmed".into(), trimmed.clone().into_bytes()));
        }
        out.extend(encoded_forms("", trimmed.as_bytes()));
        // Key files hold hex; the worker uses the decoded bytes.
        if trimmed.len() >= 32
            && trimmed.len().is_multiple_of(2)
            && trimmed.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let decoded: Vec<u8> = (0..trimmed.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(&trimmed[i..i + 2], 16).ok())
                .collect();
            out.push(("decoded key bytes".into(), decoded.clone()));
            out.extend(encoded_forms("decoded key ", &decoded));
        }
        out
    }
}

/// base64 (standard and URL-safe, at each of the three byte alignments inside a larger blob)
/// and hex (lower and upper case) of `bytes`.
fn encoded_forms(prefix: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, engine) in [
        ("base64", &STANDARD_NO_PAD),
        ("base64url", &URL_SAFE_NO_PAD),
    ] {
        for shift in 0..3usize {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(bytes);
            let enc = engine.encode(&shifted);
            // Characters that mix the zero prefix in, and a last character that would mix in
            // whatever follows the value, are not part of every encoding of it.
            let skip = [0, 2, 3][shift];
            let end = if shifted.len() % 3 == 0 {
                enc.len()
            } else {
                enc.len() - 1
            };
            if end > skip + 8 {
                out.push((
                    format!("{prefix}{name} (alignment {shift})"),
                    enc.as_bytes()[skip..end].to_vec(),
                ));
            }
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    out.push((format!("{prefix}hex"), hex.clone().into_bytes()));
    out.push((format!("{prefix}HEX"), hex.to_uppercase().into_bytes()));
    out
}

/// Every occurrence of any canary, in any of its forms, in `artifacts`.
pub fn scan(canaries: &[Canary], artifacts: &[Artifact]) -> Vec<Finding> {
    let mut out = Vec::new();
    // One canary at a time: a match of one must not hide an overlapping match of another
    // (a PEM line inside the whole PEM).
    for c in canaries {
        let mut forms: Vec<(String, Vec<u8>)> = c.needles();
        // Longest first, so that where one form contains another the more specific is named.
        forms.sort_by_key(|(_, n)| std::cmp::Reverse(n.len()));
        forms.dedup_by(|a, b| a.1 == b.1);
        let form_of = |bytes: &[u8]| {
            forms
                .iter()
                .find(|(_, n)| n == bytes)
                .map(|(f, _)| f.clone())
                .unwrap_or_default()
        };
        // Text forms go into one regex (an Aho-Corasick scan); non-UTF-8 ones (decoded key
        // bytes) are matched byte-wise.
        let pattern = forms
            .iter()
            .filter_map(|(_, n)| std::str::from_utf8(n).ok())
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join("|");
        let text = regex::bytes::RegexBuilder::new(&pattern)
            .size_limit(64 << 20)
            .build()
            .expect("the canary's forms make a valid regex");
        for a in artifacts {
            let mut found = |form: String, offset: usize| {
                out.push(Finding {
                    canary: c.name.clone(),
                    form,
                    origin: a.origin.clone(),
                    offset,
                })
            };
            for m in text.find_iter(&a.bytes) {
                found(form_of(m.as_bytes()), m.start());
            }
            for (form, needle) in forms
                .iter()
                .filter(|(_, n)| std::str::from_utf8(n).is_err())
            {
                if let Some(offset) = a.bytes.windows(needle.len()).position(|w| w == &needle[..]) {
                    found(form.clone(), offset);
                }
            }
        }
    }
    out
}

/// Every regular file under `dir` (recursively, following no links), as artifacts named by
/// their path relative to `dir` with `label` in front.
pub fn files_under(dir: &Path, label: &str) -> Vec<Artifact> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file()
                && let Ok(bytes) = std::fs::read(&path)
            {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                out.push(Artifact::new(format!("{label} {rel}"), bytes));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    const KEY: &str = "8c4883efe6c1b6b6bc3d968f16d9b77cbb8806abc651664e9f477a4cac9e36b2";

    fn found(artifact: Vec<u8>) -> Vec<String> {
        scan(
            &[Canary::new("k", format!("{KEY}\n"))],
            &[Artifact::new("a", artifact)],
        )
        .into_iter()
        .map(|f| f.form)
        .collect()
    }

    #[test]
    fn finds_every_encoding_at_every_alignment() {
        let decoded: Vec<u8> = (0..KEY.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&KEY[i..i + 2], 16).unwrap())
            .collect();
        for prefix in ["", "x", "xy", "xyz"] {
            let embed = |inner: &[u8]| {
                let mut v = prefix.as_bytes().to_vec();
                v.extend_from_slice(inner);
                v.extend_from_slice(b" tail");
                v
            };
            let cases: Vec<Vec<u8>> = vec![
                embed(KEY.as_bytes()),
                embed(KEY.to_uppercase().as_bytes()),
                STANDARD.encode(embed(KEY.as_bytes())).into_bytes(),
                STANDARD.encode(embed(&decoded)).into_bytes(),
                embed(&decoded),
                embed(
                    KEY.bytes()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                        .as_bytes(),
                ),
            ];
            for case in cases {
                assert!(
                    !found(case.clone()).is_empty(),
                    "missed {:?}",
                    String::from_utf8_lossy(&case)
                );
            }
        }
    }

    #[test]
    fn names_nothing_in_clean_text() {
        assert!(found(b"secretName: lab-deid-keys, key hmac-key, <redacted>".to_vec()).is_empty());
        assert!(found(KEY.as_bytes()[..40].to_vec()).is_empty());
    }
}
