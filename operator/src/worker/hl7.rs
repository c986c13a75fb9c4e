//! An HL7 v2 message parser: segments, fields, repetitions, components, sub-components and
//! escape sequences, on text already decoded from its charset (GB18030 is common).
//!
//! A message becomes a record keyed by segment id and field number: `PID.5.1` is the family
//! name, `MSH.9` the message type. Empty fields are absent; `""` (the HL7 null) is JSON null; a
//! repeated segment (OBX) becomes an array. The parser never panics on any input; the fuzz
//! target `hl7_parse` holds it to that.

use serde_json::{Map, Value};

use super::record::Record;

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hl7Error {
    /// The message is empty.
    #[error("empty message")]
    Empty,
    /// The first segment is not `MSH`.
    #[error("message does not start with an MSH segment (starts with {0:?})")]
    NoMsh(String),
    /// MSH is too short to hold the field separator and encoding characters.
    #[error(
        "MSH segment is truncated: it must start with MSH, the field separator and 4 encoding characters"
    )]
    TruncatedMsh,
    /// The delimiters in MSH-1/MSH-2 are unusable (repeated, alphanumeric or line breaks).
    #[error("MSH declares unusable delimiters {0:?}")]
    BadDelimiters(String),
    /// A segment id is not three upper-case letters or digits (often a truncated segment).
    #[error("segment {index} is malformed or truncated: {text:?}")]
    BadSegment {
        /// The segment's position, from 1.
        index: usize,
        /// The start of the segment's text.
        text: String,
    },
}

/// The delimiters a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// Field separator, `|`.
    pub field: char,
    /// Component separator, `^`.
    pub component: char,
    /// Repetition separator, `~`.
    pub repetition: char,
    /// Escape character, `\`.
    pub escape: char,
    /// Sub-component separator, `&`.
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
        }
    }
}

/// One field: its repetitions, each a list of components, each a list of sub-components.
/// Text is unescaped.
pub type Field = Vec<Vec<Vec<String>>>;

/// One segment: its id and fields (index 0 is field 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// `MSH`, `PID`, `OBX`, ...
    pub id: String,
    /// The fields, from field 1.
    pub fields: Vec<Field>,
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The delimiters from MSH.
    pub delimiters: Delimiters,
    /// The segments in order, MSH first.
    pub segments: Vec<Segment>,
}

/// Splits text into segments on CR, LF or CRLF, dropping MLLP framing bytes and blank lines.
fn segments_of(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\r', '\n'])
        .map(|s| s.trim_matches(|c| c == '\u{0b}' || c == '\u{1c}'))
        .filter(|s| !s.trim().is_empty())
}

pub use super::hl7_split::split_messages;

/// Parses one message.
pub fn parse(text: &str) -> Result<Message, Hl7Error> {
    let mut segs = segments_of(text);
    let msh = segs.next().ok_or(Hl7Error::Empty)?;
    if !msh.starts_with("MSH") {
        return Err(Hl7Error::NoMsh(msh.chars().take(16).collect()));
    }
    let mut chars = msh.chars().skip(3);
    let field = chars.next().ok_or(Hl7Error::TruncatedMsh)?;
    let enc: Vec<char> = chars.by_ref().take_while(|c| *c != field).collect();
    if enc.len() < 4 {
        return Err(Hl7Error::TruncatedMsh);
    }
    let d = Delimiters {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: enc[2],
        subcomponent: enc[3],
    };
    let all = [d.field, d.component, d.repetition, d.escape, d.subcomponent];
    let distinct = all.iter().enumerate().all(|(i, c)| !all[..i].contains(c));
    if !distinct || all.iter().any(|c| c.is_alphanumeric() || c.is_whitespace()) {
        return Err(Hl7Error::BadDelimiters(all.iter().collect()));
    }

    let mut segments = Vec::new();
    // MSH-1 is the field separator itself and MSH-2 the encoding characters, kept verbatim.
    let enc_text: String = enc.iter().collect();
    let msh_rest = msh
        .split_once(d.field)
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let mut msh_fields: Vec<Field> = vec![
        vec![vec![vec![d.field.to_string()]]],
        vec![vec![vec![enc_text.clone()]]],
    ];
    let after_enc = msh_rest.strip_prefix(enc_text.as_str()).unwrap_or("");
    let after_enc = after_enc.strip_prefix(d.field).unwrap_or(after_enc);
    if !after_enc.is_empty() || msh_rest.len() > enc_text.len() {
        msh_fields.extend(after_enc.split(d.field).map(|f| parse_field(f, &d)));
    }
    segments.push(Segment {
        id: "MSH".into(),
        fields: msh_fields,
    });

    for (i, seg) in segs.enumerate() {
        let (id, rest) = match seg.split_once(d.field) {
            Some((id, rest)) => (id, Some(rest)),
            None => (seg, None),
        };
        let valid_id = id.len() == 3
            && id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !valid_id {
            return Err(Hl7Error::BadSegment {
                index: i + 2,
                text: seg.chars().take(24).collect(),
            });
        }
        let fields = rest
            .map(|r| r.split(d.field).map(|f| parse_field(f, &d)).collect())
            .unwrap_or_default();
        segments.push(Segment {
            id: id.to_string(),
            fields,
        });
    }
    Ok(Message {
        delimiters: d,
        segments,
    })
}

fn parse_field(text: &str, d: &Delimiters) -> Field {
    text.split(d.repetition)
        .map(|rep| {
            rep.split(d.component)
                .map(|comp| {
                    comp.split(d.subcomponent)
                        .map(|sub| unescape(sub, d))
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Resolves HL7 escape sequences: `\F\ \S\ \T\ \R\ \E\` become the delimiters, `\Xhh..\` the
/// bytes (UTF-8 when valid), `\.br\` a line break; highlighting (`\H\ \N\`) is dropped. An
/// unknown or unterminated sequence is kept as written.
pub fn unescape(text: &str, d: &Delimiters) -> String {
    if !text.contains(d.escape) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(d.escape) {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + d.escape.len_utf8()..];
        let Some(end) = after.find(d.escape) else {
            out.push_str(&rest[pos..]);
            return out;
        };
        let seq = &after[..end];
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(d.escape),
            "H" | "N" => {}
            ".br" => out.push('\n'),
            s if s.starts_with('X') && s.len() > 1 && s.len() % 2 == 1 => {
                match hex_bytes(&s[1..]).and_then(|b| String::from_utf8(b).ok()) {
                    Some(decoded) => out.push_str(&decoded),
                    None => {
                        out.push(d.escape);
                        out.push_str(seq);
                        out.push(d.escape);
                    }
                }
            }
            _ => {
                out.push(d.escape);
                out.push_str(seq);
                out.push(d.escape);
            }
        }
        rest = &after[end + d.escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Escapes text so it can stand in a field (used when writing ACK text).
pub fn escape(text: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = if c == d.escape {
            Some('E')
        } else if c == d.field {
            Some('F')
        } else if c == d.component {
            Some('S')
        } else if c == d.subcomponent {
            Some('T')
        } else if c == d.repetition {
            Some('R')
        } else {
            None
        };
        match code {
            Some(code) => {
                out.push(d.escape);
                out.push(code);
                out.push(d.escape);
            }
            None if c == '\r' || c == '\n' => out.push(' '),
            None => out.push(c),
        }
    }
    out
}

impl Message {
    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// The first component of the first repetition of a field, e.g. `("MSH", 10)`.
    pub fn value(&self, segment: &str, field: usize) -> Option<&str> {
        let f = self.segment(segment)?.fields.get(field.checked_sub(1)?)?;
        f.first()?.first()?.first().map(String::as_str)
    }

    /// The message type `MSH-9` as `ADT^A01` (code and trigger event).
    pub fn message_type(&self) -> Option<String> {
        let f = self.segment("MSH")?.fields.get(8)?;
        let rep = f.first()?;
        let code = rep.first()?.first()?;
        if code.is_empty() {
            return None;
        }
        match rep.get(1).and_then(|c| c.first()) {
            Some(ev) if !ev.is_empty() => Some(format!("{code}^{ev}")),
            _ => Some(code.clone()),
        }
    }

    /// The message control id, `MSH-10`.
    pub fn control_id(&self) -> Option<&str> {
        self.value("MSH", 10)
    }

    /// The message as a record: `{"MSH": {"9": {"1": "ADT", "2": "A01"}, ...}, "PID": {...}}`.
    pub fn to_record(&self) -> Record {
        let mut rec = Record::new();
        for seg in &self.segments {
            let mut obj = Map::new();
            for (i, f) in seg.fields.iter().enumerate() {
                if let Some(v) = field_value(f) {
                    obj.insert((i + 1).to_string(), v);
                }
            }
            let seg_value = Value::Object(obj);
            match rec.get_mut(&seg.id) {
                Some(Value::Array(items)) => items.push(seg_value),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, seg_value]);
                }
                None => {
                    rec.insert(seg.id.clone(), seg_value);
                }
            }
        }
        rec
    }
}

fn field_value(f: &Field) -> Option<Value> {
    let reps: Vec<Value> = f.iter().filter_map(|r| repetition_value(r)).collect();
    match reps.len() {
        0 => None,
        1 => reps.into_iter().next(),
        _ => Some(Value::Array(reps)),
    }
}

fn repetition_value(rep: &[Vec<String>]) -> Option<Value> {
    if rep.len() == 1 {
        return component_value(&rep[0]);
    }
    let mut obj = Map::new();
    for (i, comp) in rep.iter().enumerate() {
        if let Some(v) = component_value(comp) {
            obj.insert((i + 1).to_string(), v);
        }
    }
    (!obj.is_empty()).then_some(Value::Object(obj))
}

fn component_value(comp: &[String]) -> Option<Value> {
    if comp.len() == 1 {
        return match comp[0].as_str() {
            "" => None,
            "\"\"" => Some(Value::Null),
            s => Some(Value::String(s.to_string())),
        };
    }
    let mut obj = Map::new();
    for (i, sub) in comp.iter().enumerate() {
        if !sub.is_empty() {
            obj.insert((i + 1).to_string(), Value::String(sub.clone()));
        }
    }
    (!obj.is_empty()).then_some(Value::Object(obj))
}

/// An acknowledgement code (MSA-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Application accept: the message was landed.
    Accept,
    /// Application error: it could not be processed now (retry may succeed).
    Error,
    /// Application reject: it will never be accepted (malformed, unsupported type).
    Reject,
}

impl AckCode {
    /// `AA`, `AE` or `AR`.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// Builds an ACK for a message (or for unparseable input, with default delimiters), swapping
/// sender and receiver. `timestamp` is `YYYYMMDDHHMMSS`.
pub fn ack(original: Option<&Message>, code: AckCode, text: &str, timestamp: &str) -> String {
    let d = original.map(|m| m.delimiters).unwrap_or_default();
    let get = |f: usize| -> String {
        original
            .and_then(|m| m.value("MSH", f))
            .map(|v| escape(v, &d))
            .unwrap_or_default()
    };
    let control = get(10);
    let trigger = original
        .and_then(|m| m.segment("MSH"))
        .and_then(|s| s.fields.get(8))
        .and_then(|f| f.first())
        .and_then(|r| r.get(1))
        .and_then(|c| c.first())
        .map(|t| escape(t, &d))
        .unwrap_or_default();
    let version = {
        let v = get(12);
        if v.is_empty() { "2.5".to_string() } else { v }
    };
    let enc: String = [d.component, d.repetition, d.escape, d.subcomponent]
        .iter()
        .collect();
    let f = d.field;
    let c = d.component;
    let ack_type = if trigger.is_empty() {
        "ACK".to_string()
    } else {
        format!("ACK{c}{trigger}{c}ACK")
    };
    format!(
        "MSH{f}{enc}{f}{r_app}{f}{r_fac}{f}{s_app}{f}{s_fac}{f}{timestamp}{f}{f}{ack_type}{f}ACK{control}{f}P{f}{version}\rMSA{f}{code}{f}{control}{f}{text}\r",
        r_app = get(5),
        r_fac = get(6),
        s_app = get(3),
        s_fac = get(4),
        code = code.as_str(),
        text = escape(text, &d),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ADT: &str = "MSH|^~\\&|HIS|HOSP|MEDPLAT|HOSP|20261128093000||ADT^A01^ADT_A01|MSG0001|P|2.5|||||CHN|GB18030\r\
EVN|A01|20261128093000\r\
PID|1||P000123^^^HIS^PI~110105194912310020^^^MPI^NNCHN||王^小明||19491231|M|||北京市朝阳区\\F\\建国路1号^^110105||13812345678\r\
PV1|1|I|CARD^0301^01||||||||||||||||ZY2026001|||||||||||||||||||||||||20261128090000\r\
OBX|1|NM|GLU||5.6|mmol/L\r\
OBX|2|NM|HGB||\"\"|g/L\r";

    #[test]
    fn parses_fields_components_repetitions_and_escapes() {
        let m = parse(ADT).unwrap();
        assert_eq!(m.message_type().as_deref(), Some("ADT^A01"));
        assert_eq!(m.control_id(), Some("MSG0001"));
        let r = m.to_record();
        assert_eq!(r["MSH"]["1"], "|");
        assert_eq!(r["MSH"]["2"], "^~\\&");
        assert_eq!(
            r["MSH"]["9"],
            json!({"1": "ADT", "2": "A01", "3": "ADT_A01"})
        );
        assert_eq!(r["MSH"]["18"], "GB18030");
        assert_eq!(r["PID"]["3"][0]["1"], "P000123");
        assert_eq!(r["PID"]["3"][1]["5"], "NNCHN");
        assert_eq!(r["PID"]["5"], json!({"1": "王", "2": "小明"}));
        assert_eq!(r["PID"]["11"]["1"], "北京市朝阳区|建国路1号");
        assert_eq!(r["PID"]["11"]["3"], "110105");
        assert_eq!(r["PV1"]["19"], "ZY2026001");
        assert_eq!(r["PV1"]["44"], "20261128090000");
        assert!(r["PID"].get("2").is_none(), "empty fields are absent");
        assert_eq!(r["OBX"].as_array().unwrap().len(), 2);
        assert_eq!(r["OBX"][1]["5"], Value::Null, "\"\" is the HL7 null");
    }

    #[test]
    fn escape_sequences_round_trip() {
        let d = Delimiters::default();
        let raw = "a|b^c&d~e\\f";
        assert_eq!(unescape(&escape(raw, &d), &d), raw);
        assert_eq!(unescape("x\\X E4B8AD\\y", &d), "x\\X E4B8AD\\y");
        assert_eq!(unescape("\\XE4B8AD\\", &d), "中");
        assert_eq!(unescape("line\\.br\\two\\H\\b\\N\\", &d), "line\ntwob");
        assert_eq!(unescape("dangling\\F", &d), "dangling\\F");
        assert_eq!(unescape("\\Z\\", &d), "\\Z\\");
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert_eq!(parse(""), Err(Hl7Error::Empty));
        assert!(matches!(parse("PID|1"), Err(Hl7Error::NoMsh(_))));
        assert_eq!(parse("MSH|^~"), Err(Hl7Error::TruncatedMsh));
        assert_eq!(parse("MSH"), Err(Hl7Error::TruncatedMsh));
        assert!(matches!(
            parse("MSH|^^\\&|a"),
            Err(Hl7Error::BadDelimiters(_))
        ));
        assert!(matches!(
            parse("MSH|^~\\&|A\rPI"),
            Err(Hl7Error::BadSegment { index: 2, .. })
        ));
        let minimal = parse("MSH|^~\\&").unwrap();
        assert_eq!(minimal.message_type(), None);
    }

    #[test]
    fn ack_swaps_parties_and_echoes_control_id() {
        let m = parse(ADT).unwrap();
        let a = ack(Some(&m), AckCode::Accept, "landed", "20261128093001");
        assert!(
            a.starts_with(
                "MSH|^~\\&|MEDPLAT|HOSP|HIS|HOSP|20261128093001||ACK^A01^ACK|ACKMSG0001|P|2.5\r"
            ),
            "{a}"
        );
        assert!(a.contains("\rMSA|AA|MSG0001|landed\r"));
        let r = ack(None, AckCode::Reject, "bad|frame", "20261128093001");
        assert!(r.contains("MSA|AR||bad\\F\\frame"), "{r}");
        assert!(parse(&r).is_ok());
    }
}
