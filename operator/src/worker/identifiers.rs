//! Recognisers for Chinese direct identifiers: the 身份证号 (GB 11643-1999 with its ISO 7064
//! MOD 11-2 check character), mainland mobile numbers and e-mail addresses.
//!
//! `validate` uses the exact checks on one field; the privacy gate's leftover scan uses the
//! finders on every text value of the output (REFERENCE.md: checks before a release).

use std::sync::LazyLock;

use regex::Regex;

/// The GB 11643 weights of the first 17 digits.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// The check character for each remainder mod 11.
const CHECK: [u8; 11] = *b"10X98765432";

/// The check character (`0`-`9` or `X`) of the first 17 digits, or `None` if they are not digits.
pub fn resident_id_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    Some(CHECK[(sum % 11) as usize])
}

/// Whether `s` is an 18-character 身份证号 whose check character is right and whose birth
/// date (characters 7-14) is a real date. A lower-case `x` is accepted.
pub fn is_valid_resident_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 {
        return false;
    }
    let Some(check) = resident_id_check_char(&b[..17]) else {
        return false;
    };
    if b[17].to_ascii_uppercase() != check {
        return false;
    }
    let year: i16 = s[6..10].parse().unwrap_or(0);
    let month: i8 = s[10..12].parse().unwrap_or(0);
    let day: i8 = s[12..14].parse().unwrap_or(0);
    (1800..=2200).contains(&year) && jiff::civil::Date::new(year, month, day).is_ok()
}

/// Whether `s` is a mainland mobile number: `1[3-9]` and nine more digits, optionally `+86`.
pub fn is_mobile_phone(s: &str) -> bool {
    let s = s.strip_prefix("+86").unwrap_or(s).trim();
    let b = s.as_bytes();
    b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && b.iter().all(u8::is_ascii_digit)
}

/// What kind of identifier the leftover scan found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeftoverKind {
    /// A 身份证号 with a valid check character.
    ResidentId,
    /// A mainland mobile number.
    MobilePhone,
    /// An e-mail address.
    Email,
}

impl LeftoverKind {
    /// The kind's name in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            LeftoverKind::ResidentId => "resident id (身份证号)",
            LeftoverKind::MobilePhone => "mobile number",
            LeftoverKind::Email => "e-mail address",
        }
    }
}

static ID_CANDIDATE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?:^|[^0-9A-Za-z])([0-9]{17}[0-9Xx])(?:[^0-9A-Za-z]|$)").ok());
static MOBILE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?:^|[^0-9A-Za-z])(1[3-9][0-9]{9})(?:[^0-9A-Za-z]|$)").ok());
static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}").ok()
});

/// The identifiers found in a text value, by kind. Valid-checksum ids only: an 18-digit number
/// that fails the checksum is not reported. Numbers glued to ASCII letters or digits are not
/// reported either: hex digests (cryptoHash output) are full of digit runs.
pub fn scan_text(text: &str) -> Vec<LeftoverKind> {
    let mut found = Vec::new();
    // Cheap pre-filter: every pattern needs at least 11 digits or an '@'.
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    if digits >= 11 {
        if let Some(re) = ID_CANDIDATE.as_ref()
            && re
                .captures_iter(text)
                .any(|c| c.get(1).is_some_and(|m| is_valid_resident_id(m.as_str())))
        {
            found.push(LeftoverKind::ResidentId);
        }
        if let Some(re) = MOBILE.as_ref()
            && re.is_match(text)
        {
            found.push(LeftoverKind::MobilePhone);
        }
    }
    if text.contains('@')
        && let Some(re) = EMAIL.as_ref()
        && re.is_match(text)
    {
        found.push(LeftoverKind::Email);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a valid id from 17 digits (as the test corpus generator does).
    fn with_check(first17: &str) -> String {
        let c = resident_id_check_char(first17.as_bytes()).unwrap();
        format!("{first17}{}", c as char)
    }

    #[test]
    fn resident_id_checksum_follows_gb_11643() {
        // The standard's worked example.
        assert!(is_valid_resident_id("11010519491231002X"));
        assert!(is_valid_resident_id("11010519491231002x"));
        assert!(!is_valid_resident_id("110105194912310021"));
        assert!(!is_valid_resident_id("11010519491331002X"), "month 13");
        assert!(!is_valid_resident_id("1101051949123100"));
        let id = with_check("44030619900101123");
        assert!(is_valid_resident_id(&id));
    }

    #[test]
    fn mobile_numbers() {
        assert!(is_mobile_phone("13812345678"));
        assert!(is_mobile_phone("+8619912345678"));
        assert!(!is_mobile_phone("12812345678"));
        assert!(!is_mobile_phone("1381234567"));
    }

    #[test]
    fn scan_finds_planted_identifiers_in_free_text() {
        let found =
            scan_text("患者王某，身份证11010519491231002X，电话13912345678，邮箱 wang@example.com");
        assert_eq!(
            found,
            vec![
                LeftoverKind::ResidentId,
                LeftoverKind::MobilePhone,
                LeftoverKind::Email
            ]
        );
        assert!(scan_text("hash 110105194912310021 and 2345-7").is_empty());
        assert!(scan_text("a1f3c9e0b2d4").is_empty());
        // Digit runs inside longer numbers or hex digests are not phones.
        assert!(scan_text("1234567890123456").is_empty());
        assert!(scan_text("ab13912345678cd").is_empty());
        assert!(!scan_text("电话13912345678。").is_empty());
    }
}
