//! Standard five-field cron schedules (and `@hourly` etc.), as CronJob `spec.schedule` takes them.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// A parsed schedule: the allowed values of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: Vec<u8>,
    hours: Vec<u8>,
    days: Vec<u8>,
    months: Vec<u8>,
    weekdays: Vec<u8>,
    day_restricted: bool,
    weekday_restricted: bool,
}

/// A schedule string that is not valid cron.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron schedule {0:?}")]
pub struct CronError(pub String);

fn field(spec: &str, min: u8, max: u8, whole: &str) -> Result<(Vec<u8>, bool), CronError> {
    let err = || CronError(whole.to_string());
    let mut out = Vec::new();
    let restricted = spec != "*" && spec != "?";
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u8>().map_err(|_| err())?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(err());
        }
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?)
        } else {
            let v: u8 = range.parse().map_err(|_| err())?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(err());
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok((out, restricted))
}

impl Schedule {
    /// Parses `*/5 * * * *`, `0 3 * * 1-5`, `@daily`, ….
    pub fn parse(s: &str) -> Result<Self, CronError> {
        let expanded = match s.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, d, mo, w] = parts.as_slice() else {
            return Err(CronError(s.to_string()));
        };
        let (minutes, _) = field(mi, 0, 59, s)?;
        let (hours, _) = field(h, 0, 23, s)?;
        let (days, day_restricted) = field(d, 1, 31, s)?;
        let (months, _) = field(mo, 1, 12, s)?;
        let (mut weekdays, weekday_restricted) = field(&w.replace('7', "0"), 0, 6, s)?;
        weekdays.dedup();
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            day_restricted,
            weekday_restricted,
        })
    }

    fn matches(&self, t: DateTime) -> bool {
        let day_ok = self.days.contains(&(t.day() as u8));
        let wd_ok = self
            .weekdays
            .contains(&(t.weekday().to_sunday_zero_offset() as u8));
        let date_ok = match (self.day_restricted, self.weekday_restricted) {
            (true, true) => day_ok || wd_ok,
            (true, false) => day_ok,
            (false, true) => wd_ok,
            (false, false) => true,
        };
        date_ok
            && self.minutes.contains(&(t.minute() as u8))
            && self.hours.contains(&(t.hour() as u8))
            && self.months.contains(&(t.month() as u8))
    }

    /// The first scheduled time strictly after `after` (UTC), within about four years.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(TimeZone::UTC).datetime();
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(jiff::Span::new().minutes(1))
            .ok()?;
        for _ in 0..(4 * 366 * 24 * 60) {
            if self.matches(t) {
                return t.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp());
            }
            t = t.checked_add(jiff::Span::new().minutes(1)).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#schedule-syntax
    #[test]
    fn schedules_matrix() {
        let base: Timestamp = "2026-01-01T10:07:30Z".parse().expect("ts");
        let cases = [
            ("*/5 * * * *", "2026-01-01T10:10:00Z"),
            ("0 * * * *", "2026-01-01T11:00:00Z"),
            ("@daily", "2026-01-02T00:00:00Z"),
            ("30 3 * * 1", "2026-01-05T03:30:00Z"),
        ];
        for (spec, want) in cases {
            let s = Schedule::parse(spec).expect(spec);
            assert_eq!(
                s.next_after(base).map(|t| t.to_string()),
                Some(want.to_string()),
                "{spec}"
            );
        }
        for bad in ["", "* * *", "61 * * * *", "a b c d e", "*/0 * * * *"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
