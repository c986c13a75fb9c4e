//! Decoding of Kubernetes protobuf request bodies for the few kinds kubectl writes with its typed
//! clients (`kubectl create namespace|configmap|secret|serviceaccount`, `kubectl drain`'s
//! evictions). Other kinds are refused with 415; responses are always JSON, which client-go
//! accepts.
//!
//! Format: <https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding> — the
//! magic `k8s\0`, then a `runtime.Unknown` message (1: TypeMeta{1: apiVersion, 2: kind},
//! 2: raw object bytes), the object encoded with the field numbers of k8s.io/api's
//! `generated.proto`.

use base64::Engine;
use serde_json::{Map, Value, json};

/// A protobuf body kubesim cannot turn into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Not a Kubernetes protobuf envelope, or truncated/garbled wire data.
    #[error("malformed protobuf body: {0}")]
    Malformed(String),
    /// A kind whose protobuf schema kubesim does not carry.
    #[error(
        "kubesim decodes protobuf bodies only for Namespace, ConfigMap, Secret, ServiceAccount and Eviction, not {0}; send JSON"
    )]
    UnsupportedKind(String),
}

#[derive(Debug, Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    Time,
    Msg(&'static [Field]),
    MapStr,
    MapBytes,
    RepStr,
    RepMsg(&'static [Field]),
}

#[derive(Debug, Clone, Copy)]
struct Field {
    num: u64,
    name: &'static str,
    ty: Ty,
}

const fn f(num: u64, name: &'static str, ty: Ty) -> Field {
    Field { num, name, ty }
}

const OWNER_REFERENCE: &[Field] = &[
    f(1, "kind", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
    f(5, "apiVersion", Ty::Str),
    f(6, "controller", Ty::Bool),
    f(7, "blockOwnerDeletion", Ty::Bool),
];

const OBJECT_META: &[Field] = &[
    f(1, "name", Ty::Str),
    f(2, "generateName", Ty::Str),
    f(3, "namespace", Ty::Str),
    f(5, "uid", Ty::Str),
    f(6, "resourceVersion", Ty::Str),
    f(7, "generation", Ty::Int),
    f(8, "creationTimestamp", Ty::Time),
    f(9, "deletionTimestamp", Ty::Time),
    f(10, "deletionGracePeriodSeconds", Ty::Int),
    f(11, "labels", Ty::MapStr),
    f(12, "annotations", Ty::MapStr),
    f(13, "ownerReferences", Ty::RepMsg(OWNER_REFERENCE)),
    f(14, "finalizers", Ty::RepStr),
];

const LOCAL_REF: &[Field] = &[f(1, "name", Ty::Str)];
const OBJECT_REF: &[Field] = &[
    f(1, "kind", Ty::Str),
    f(2, "namespace", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
    f(5, "apiVersion", Ty::Str),
];

const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "data", Ty::MapStr),
    f(3, "binaryData", Ty::MapBytes),
    f(4, "immutable", Ty::Bool),
];

const SECRET: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "data", Ty::MapBytes),
    f(3, "type", Ty::Str),
    f(4, "stringData", Ty::MapStr),
    f(5, "immutable", Ty::Bool),
];

const NAMESPACE_SPEC: &[Field] = &[f(1, "finalizers", Ty::RepStr)];
const NAMESPACE: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(NAMESPACE_SPEC)),
];

const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "secrets", Ty::RepMsg(OBJECT_REF)),
    f(3, "imagePullSecrets", Ty::RepMsg(LOCAL_REF)),
    f(4, "automountServiceAccountToken", Ty::Bool),
];

const PRECONDITIONS: &[Field] = &[f(1, "uid", Ty::Str), f(2, "resourceVersion", Ty::Str)];
const DELETE_OPTIONS: &[Field] = &[
    f(1, "gracePeriodSeconds", Ty::Int),
    f(2, "preconditions", Ty::Msg(PRECONDITIONS)),
    f(3, "orphanDependents", Ty::Bool),
    f(4, "propagationPolicy", Ty::Str),
    f(5, "dryRun", Ty::RepStr),
];
const EVICTION: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "deleteOptions", Ty::Msg(DELETE_OPTIONS)),
];

#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ProtoError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            return Err(ProtoError::Malformed("truncated varint".into()));
        };
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(ProtoError::Malformed("varint longer than 10 bytes".into()))
}

/// Splits a message into (field number, value) pairs.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ProtoError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?)
                    .map_err(|_| ProtoError::Malformed("length does not fit".into()))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| ProtoError::Malformed("length past the end".into()))?;
                let v = Wire::Len(&buf[pos..end]);
                pos = end;
                v
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                pos = pos
                    .checked_add(n)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| ProtoError::Malformed("fixed field past the end".into()))?;
                Wire::Fixed
            }
            other => {
                return Err(ProtoError::Malformed(format!(
                    "unsupported wire type {other}"
                )));
            }
        };
        out.push((num, value));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec())
        .map_err(|_| ProtoError::Malformed("a string field is not UTF-8".into()))
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), ProtoError> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (num, w) in fields(b)? {
        match (num, w) {
            (1, Wire::Len(k)) => key = text(k)?,
            (2, Wire::Len(v)) if bytes_value => {
                value = Value::String(base64::engine::general_purpose::STANDARD.encode(v));
            }
            (2, Wire::Len(v)) => value = Value::String(text(v)?),
            _ => {}
        }
    }
    Ok((key, value))
}

fn message(buf: &[u8], schema: &[Field], depth: usize) -> Result<Value, ProtoError> {
    if depth > 16 {
        return Err(ProtoError::Malformed("nesting too deep".into()));
    }
    let mut out = Map::new();
    for (num, w) in fields(buf)? {
        let Some(field) = schema.iter().find(|f| f.num == num) else {
            continue;
        };
        match (field.ty, w) {
            (Ty::Str, Wire::Len(b)) => {
                let s = text(b)?;
                if !s.is_empty() {
                    out.insert(field.name.into(), Value::String(s));
                }
            }
            (Ty::Int, Wire::Varint(v)) => {
                // Two's complement int64 on the wire.
                let n = v as i64;
                if n != 0 {
                    out.insert(field.name.into(), json!(n));
                }
            }
            (Ty::Bool, Wire::Varint(v)) => {
                out.insert(field.name.into(), json!(v != 0));
            }
            (Ty::Time, Wire::Len(b)) => {
                let mut secs = 0i64;
                for (n, tw) in fields(b)? {
                    if let (1, Wire::Varint(s)) = (n, tw) {
                        secs = s as i64;
                    }
                }
                if secs != 0
                    && let Ok(t) = jiff::Timestamp::from_second(secs)
                {
                    out.insert(field.name.into(), json!(t.to_string()));
                }
            }
            (Ty::Msg(s), Wire::Len(b)) => {
                out.insert(field.name.into(), message(b, s, depth + 1)?);
            }
            (Ty::MapStr | Ty::MapBytes, Wire::Len(b)) => {
                let (k, v) = map_entry(b, matches!(field.ty, Ty::MapBytes))?;
                let entry = out
                    .entry(field.name.to_string())
                    .or_insert_with(|| json!({}));
                if let Some(m) = entry.as_object_mut() {
                    m.insert(k, v);
                }
            }
            (Ty::RepStr, Wire::Len(b)) => {
                let s = text(b)?;
                let entry = out
                    .entry(field.name.to_string())
                    .or_insert_with(|| json!([]));
                if let Some(a) = entry.as_array_mut() {
                    a.push(Value::String(s));
                }
            }
            (Ty::RepMsg(s), Wire::Len(b)) => {
                let item = message(b, s, depth + 1)?;
                let entry = out
                    .entry(field.name.to_string())
                    .or_insert_with(|| json!([]));
                if let Some(a) = entry.as_array_mut() {
                    a.push(item);
                }
            }
            _ => {
                return Err(ProtoError::Malformed(format!(
                    "field {} has the wrong wire type",
                    field.name
                )));
            }
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a `k8s\0`-prefixed protobuf body into the JSON object it encodes.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| ProtoError::Malformed("missing the k8s\\0 magic prefix".into()))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (num, w) in fields(rest)? {
        match (num, w) {
            (1, Wire::Len(tm)) => {
                for (n, tw) in fields(tm)? {
                    match (n, tw) {
                        (1, Wire::Len(v)) => api_version = text(v)?,
                        (2, Wire::Len(v)) => kind = text(v)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Len(r)) => raw = r,
            _ => {}
        }
    }
    let schema = match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("policy/v1" | "policy/v1beta1", "Eviction") => EVICTION,
        _ => return Err(ProtoError::UnsupportedKind(format!("{api_version}/{kind}"))),
    };
    let mut obj = message(raw, schema, 0)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .filter_map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect()
    }

    // Bodies captured from `kubectl create secret generic psec --from-literal=k=v` and
    // `kubectl create namespace pns` (kubectl 1.32).
    #[test]
    fn decodes_what_kubectl_sends() {
        let secret = hex(
            "6b3873000a0c0a027631120653656372657412260a140a047073656312001a0022002a0032003800420012060a016b1201761a064f70617175651a002200",
        );
        assert_eq!(
            decode(&secret).expect("secret"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "psec"}, "data": {"k": "dg=="}, "type": "Opaque"})
        );
        let ns = hex(
            "6b3873000a0f0a02763112094e616d657370616365121b0a130a03706e7312001a0022002a0032003800420012001a020a001a002200",
        );
        assert_eq!(
            decode(&ns).expect("namespace"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pns"}, "spec": {}})
        );
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            b"k8s".to_vec(),
            b"k8s\0\x0a\xff".to_vec(),
            b"k8s\0\x0a\x02\x0a".to_vec(),
            b"k8s\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            b"k8s\0\x0f".to_vec(),
        ];
        for c in cases {
            assert!(decode(&c).is_err(), "{c:?}");
        }
        let job = hex("6b3873000a0f0a0862617463682f763112034a6f62");
        assert!(matches!(decode(&job), Err(ProtoError::UnsupportedKind(k)) if k == "batch/v1/Job"));
    }
}
