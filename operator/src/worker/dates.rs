//! Dates as hospital systems write them: ISO 8601 (`2026-11-28`, `2026-11-28T09:30:00+08:00`,
//! `2026-11-28 09:30:00`) and HL7 v2 (`20261128`, `202611280930`, `20261128093000`).
//!
//! A date is split into its calendar date and the verbatim rest (time, fraction, offset), so a
//! date shift moves the day and keeps everything else exactly as written.

use jiff::civil::Date;

/// How the date part was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateStyle {
    /// `YYYY-MM-DD`.
    Iso,
    /// `YYYYMMDD` (HL7 v2 DTM).
    Compact,
}

/// A date value taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateValue<'a> {
    /// The calendar date.
    pub date: Date,
    /// How it was written.
    pub style: DateStyle,
    /// Whatever followed the date (time of day, offset), verbatim.
    pub rest: &'a str,
}

impl<'a> DateValue<'a> {
    /// Parses a date or date-time. `None` when the text does not start with a real date.
    pub fn parse(text: &'a str) -> Option<DateValue<'a>> {
        let t = text.trim();
        let b = t.as_bytes();
        let digits = |r: std::ops::Range<usize>| {
            b.get(r.clone())
                .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
        };
        let (style, y, m, d, rest) = if b.len() >= 10
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
        {
            let rest = &t[10..];
            if !(rest.is_empty() || rest.starts_with('T') || rest.starts_with(' ')) {
                return None;
            }
            (DateStyle::Iso, &t[0..4], &t[5..7], &t[8..10], rest)
        } else if b.len() >= 8 && digits(0..8) {
            let rest = &t[8..];
            // An HL7 time is digits, maybe a fraction, maybe an offset.
            if !rest
                .bytes()
                .all(|c| c.is_ascii_digit() || c == b'.' || c == b'+' || c == b'-')
            {
                return None;
            }
            (DateStyle::Compact, &t[0..4], &t[4..6], &t[6..8], rest)
        } else {
            return None;
        };
        let date = Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()?;
        Some(DateValue { date, style, rest })
    }

    /// Writes the value back in its original style.
    pub fn render(&self) -> String {
        let d = self.date;
        let sep = match self.style {
            DateStyle::Iso => "-",
            DateStyle::Compact => "",
        };
        let Ok(year) = u16::try_from(d.year()) else {
            // Years before 1 BCE (only reachable by shifting year 0000 back) keep the sign.
            return format!(
                "{:04}{sep}{:02}{sep}{:02}{}",
                d.year(),
                d.month(),
                d.day(),
                self.rest
            );
        };
        // By hand rather than format!: this runs for every shifted date of every record.
        let mut out = String::with_capacity(10 + self.rest.len());
        push_digits(&mut out, year, 4);
        out.push_str(sep);
        push_digits(&mut out, d.month().unsigned_abs().into(), 2);
        out.push_str(sep);
        push_digits(&mut out, d.day().unsigned_abs().into(), 2);
        out.push_str(self.rest);
        out
    }

    /// The same value moved by whole days; `None` if that leaves the calendar.
    pub fn shifted(self, days: i64) -> Option<DateValue<'a>> {
        let date = self
            .date
            .checked_add(jiff::Span::new().try_days(days).ok()?)
            .ok()?;
        Some(DateValue { date, ..self })
    }
}

/// Appends `n` as decimal, zero-padded to `width` digits (wider numbers are written in full).
fn push_digits(out: &mut String, n: u16, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// Whole years from `birth` to `on` (the age on that day).
pub fn age_on(birth: Date, on: Date) -> i64 {
    let mut age = i64::from(on.year()) - i64::from(birth.year());
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_iso_and_hl7_styles() {
        for text in [
            "2026-11-28",
            "2026-11-28T09:30:00+08:00",
            "2026-11-28 09:30:00",
            "20261128",
            "20261128093000",
            "20261128093000.123+0800",
        ] {
            let v = DateValue::parse(text).unwrap();
            assert_eq!(v.render(), text);
            assert_eq!(v.date, jiff::civil::date(2026, 11, 28));
        }
        for bad in [
            "2026-02-30",
            "28/11/2026",
            "2026-11-28x",
            "abc",
            "2026112",
            "20261128abc",
        ] {
            assert_eq!(DateValue::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn shifts_keep_the_time_and_cross_months() {
        let v = DateValue::parse("2026-11-28T09:30:00Z").unwrap();
        assert_eq!(v.shifted(5).unwrap().render(), "2026-12-03T09:30:00Z");
        assert_eq!(
            DateValue::parse("20260301")
                .unwrap()
                .shifted(-1)
                .unwrap()
                .render(),
            "20260228"
        );
        for edge in ["0001-01-01", "99991231", "0000-01-01"] {
            assert_eq!(DateValue::parse(edge).unwrap().render(), edge);
        }
        let start = DateValue::parse("0000-01-01T00:00").unwrap();
        assert_eq!(start.shifted(-1).unwrap().render(), "-001-12-31T00:00");
    }

    #[test]
    fn ages_count_birthdays() {
        let b = jiff::civil::date(1990, 6, 15);
        assert_eq!(age_on(b, jiff::civil::date(2026, 6, 14)), 35);
        assert_eq!(age_on(b, jiff::civil::date(2026, 6, 15)), 36);
    }
}
