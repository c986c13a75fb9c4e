//! Text decoding for the character sets hospital systems export: UTF-8, GBK and GB18030.
//!
//! Decoding is strict: bytes that are not valid in the declared charset are an error the caller
//! turns into a quarantined record, never silently replaced.

use std::borrow::Cow;

use encoding_rs::{Encoding, GB18030, GBK, UTF_8};

use crate::api::data_source::Charset;

/// The `encoding_rs` encoding of a charset.
pub fn encoding(charset: Charset) -> &'static Encoding {
    match charset {
        Charset::Utf8 => UTF_8,
        Charset::Gb18030 => GB18030,
        Charset::Gbk => GBK,
    }
}

/// Decodes bytes strictly; `None` when they are not valid in `charset`.
///
/// A UTF-8 byte-order mark is dropped. GBK input is decoded with the GB18030 decoder, a strict
/// superset, as the WHATWG encoding standard does.
pub fn decode(bytes: &[u8], charset: Charset) -> Option<Cow<'_, str>> {
    match charset {
        Charset::Utf8 => std::str::from_utf8(bytes)
            .ok()
            .map(|t| Cow::Borrowed(strip_bom(t))),
        other => encoding(other).decode_without_bom_handling_and_without_replacement(bytes),
    }
}

/// `text` without a leading byte order mark.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Encodes text into `charset`; characters the charset cannot hold become numeric character
/// references (only generators and tests write non-UTF-8 text).
pub fn encode(text: &str, charset: Charset) -> Cow<'_, [u8]> {
    let (bytes, _, _) = encoding(charset).encode(text);
    bytes
}

/// Bytes as text for an error message or a quarantine entry: lossy, never failing.
pub fn lossy(bytes: &[u8], charset: Charset) -> String {
    encoding(charset)
        .decode_without_bom_handling(bytes)
        .0
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_chinese_text_in_every_charset() {
        for cs in [Charset::Utf8, Charset::Gb18030, Charset::Gbk] {
            let text = "王小明,男,北京市朝阳区";
            let bytes = encode(text, cs);
            assert_eq!(decode(&bytes, cs).as_deref(), Some(text), "{cs:?}");
        }
        // GB18030 reaches every Unicode code point; GBK does not.
        let rare = "𠀀";
        assert_eq!(
            decode(&encode(rare, Charset::Gb18030), Charset::Gb18030).as_deref(),
            Some(rare)
        );
    }

    #[test]
    fn invalid_bytes_are_rejected_not_replaced() {
        assert_eq!(decode(b"\xff\xfe\x00", Charset::Utf8), None);
        assert_eq!(decode(b"\x81", Charset::Gb18030), None);
        assert_eq!(
            decode(b"\xef\xbb\xbfabc", Charset::Utf8).as_deref(),
            Some("abc")
        );
        assert!(lossy(b"a\xffb", Charset::Utf8).contains('\u{FFFD}'));
    }
}
