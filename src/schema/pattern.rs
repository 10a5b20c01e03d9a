//! strftime patterns of timestamp fields: how a value is read by one ([`Pattern::read`]), and
//! the check at load that a pattern can read what it writes. chrono accepts patterns no value
//! can ever match (`%Y-%m` has no day, `%Y%m%d%H` no minute, `%Z` reads a zone's name but gives
//! no offset): such a schema made every record a dead letter; now it is refused with why.

use std::fmt::Write;

use arrow::array::timezone::Tz;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A pattern, with what it holds.
pub struct Pattern<'a> {
    text: &'a str,
    /// Values carry their offset (`%z`): the field's zone is not used.
    offset: bool,
    /// Values carry a time of day; else they are dates, read as midnight in the zone.
    time: bool,
}

/// Why a value was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// It does not match the pattern (or names no valid date or time).
    NoMatch,
    /// A local time the zone skips (a daylight-saving gap).
    Skipped,
}

impl<'a> Pattern<'a> {
    pub fn new(text: &'a str) -> Pattern<'a> {
        let conversion = |spec: &str| spec.chars().last().unwrap_or('%');
        Pattern {
            text,
            // `%+` is RFC 3339's form, with its offset; `%s` (seconds since 1970) names an
            // instant, whatever the field's zone.
            offset: specs(text).any(|(_, s)| matches!(conversion(s), 'z' | 'Z' | '+' | 's')),
            time: specs(text).any(|(_, s)| "HIMSTRrXcs+kl".contains(conversion(s))),
        }
    }

    /// `value` as an instant; without an offset in the pattern, a local time in `zone` (the
    /// earlier of two in a fold).
    pub fn read(&self, value: &str, zone: &Tz) -> Result<DateTime<Utc>, Miss> {
        if self.offset {
            return DateTime::parse_from_str(value, self.text)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| Miss::NoMatch);
        }
        let naive = if self.time {
            NaiveDateTime::parse_from_str(value, self.text).ok()
        } else {
            NaiveDate::parse_from_str(value, self.text)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        };
        let naive = naive.ok_or(Miss::NoMatch)?;
        zone.from_local_datetime(&naive)
            .earliest()
            .map(|d| d.with_timezone(&Utc))
            .ok_or(Miss::Skipped)
    }
}

/// Refuses a pattern chrono cannot parse, or one that cannot read back what it writes.
pub fn validate(pattern: &str) -> Result<(), String> {
    if StrftimeItems::new(pattern).any(|i| matches!(i, Item::Error)) {
        return Err(format!("invalid strftime pattern `{pattern}`"));
    }
    // An instant whose every field differs from the others (day 19, 10 h, 45 min, 56 s), so
    // a pattern that leaves one out cannot read it back.
    let sample = FixedOffset::east_opt(2 * 3600)
        .expect("a valid offset")
        .with_ymd_and_hms(2024, 11, 19, 10, 45, 56)
        .single()
        .expect("a valid instant");
    // chrono reads `%#z` (an offset with or without its minutes) but cannot write it: the
    // sample is written with `%:z`, which it reads.
    let written = permissive_offsets_written(pattern);
    let mut text = String::new();
    if write!(text, "{}", sample.format(&written)).is_err() {
        return Err(format!(
            "the time format `{pattern}` cannot be used: chrono cannot write an instant with it"
        ));
    }
    let utc: Tz = "UTC".parse().expect("UTC");
    match Pattern::new(pattern).read(&text, &utc) {
        Ok(_) => Ok(()),
        Err(_) if pattern.contains("%Z") => Err(format!(
            "the time format `{pattern}` reads a zone's name (`%Z`), which gives no offset: \
             no value could be read. Use `%z` for offsets such as +0200, or leave the zone \
             out of the pattern and set the field's `timezone`"
        )),
        Err(_) => Err(format!(
            "the time format `{pattern}` cannot read a value it writes itself (`{text}`): a \
             pattern needs a year, month and day (or a day of the year, or `%s`), and with a \
             time of day at least the hour and minute; no record could be read with it"
        )),
    }
}

/// The conversions of a pattern, in order, with where each starts: `%`, its flags and
/// width (`-_0#:.` and digits), and its letter; `%%` is one (a literal `%`).
fn specs(pattern: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at + pattern[at..].find('%')?;
        let rest = &pattern[start + 1..];
        let flags = rest
            .find(|c: char| !matches!(c, '-' | '_' | '0' | '#' | ':' | '.' | '1'..='9'))
            .unwrap_or(rest.len());
        let letter = rest[flags..].chars().next().map_or(0, char::len_utf8);
        at = start + 1 + flags + letter;
        Some((start, &pattern[start..at]))
    })
}

/// `pattern` with each `%#z` written `%:z` (chrono reads the one, writes only the other).
fn permissive_offsets_written(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut copied = 0;
    for (start, spec) in specs(pattern).filter(|(_, s)| *s == "%#z") {
        out.push_str(&pattern[copied..start]);
        out.push_str("%:z");
        copied = start + spec.len();
    }
    out.push_str(&pattern[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_that_can_read_nothing_are_refused() {
        for ok in [
            "%Y-%m-%d",
            "%d/%b/%Y:%H:%M:%S %z",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M:%S%.f%:z",
            "%s",
            "%Y-%j",
            "%e %B %Y %l:%M %p",
            "%+",
            "%m/%d/%y %I:%M:%S %p",
            "%Y-%m-%d %H:%M:%S %z %Z",
            "%Y-%m-%dT%H:%M:%S%#z",
            "%Y-%m-%d %H:%M:%S%%#z",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("%Y-%m", "cannot read a value it writes"),
            ("%Y%m%d%H", "cannot read a value it writes"),
            ("%H:%M:%S", "cannot read a value it writes"),
            ("%Y-%m-%d %H:%M:%S %Z", "zone's name"),
            ("%Y-%m-%d %Q", "invalid strftime"),
        ] {
            let e = validate(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_schema_with_a_pattern_that_can_read_nothing_does_not_load() {
        let text = |format: &str| {
            format!(
                "name = \"t\"\n[[fields]]\nname = \"at\"\ntype = \"timestamp\"\nformat = \"{format}\"\n"
            )
        };
        let parse =
            |f: &str| crate::schema::RepoSchema::parse(&text(f), std::path::Path::new("t.toml"));
        assert!(parse("%Y-%m-%d %H:%M").is_ok());
        let e = parse("%Y-%m").unwrap_err().to_string();
        assert!(e.contains("cannot read a value it writes"), "{e}");
    }

    #[test]
    fn a_local_time_the_zone_skips_is_told_apart() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let p = Pattern::new("%Y-%m-%d %H:%M:%S");
        assert_eq!(p.read("2024-03-31 02:30:00", &berlin), Err(Miss::Skipped));
        assert_eq!(p.read("2024-03-31 0x:30:00", &berlin), Err(Miss::NoMatch));
        // A fold reads as the earlier instant (summer time, +02:00).
        let fold = p.read("2024-10-27 02:30:00", &berlin).unwrap();
        assert_eq!(fold.to_rfc3339(), "2024-10-27T00:30:00+00:00");
        // An offset in the value is read, whatever the zone: `%+` holds one; `%%z` is a
        // literal.
        let plus = Pattern::new("%+").read("2024-10-27T02:30:00+05:00", &berlin);
        assert_eq!(plus.unwrap().to_rfc3339(), "2024-10-26T21:30:00+00:00");
        let literal = Pattern::new("%Y-%m-%d %H:%M:%S%%z");
        assert_eq!(
            literal
                .read("2024-10-27 04:30:00%z", &berlin)
                .unwrap()
                .to_rfc3339(),
            "2024-10-27T03:30:00+00:00"
        );
    }

    /// Seconds since 1970 are an instant: the field's zone does not move them. Before, `%s`
    /// was read as a wall time in the zone: every value an hour or two off in Berlin, one in
    /// the spring gap hour a dead letter ("a local time the zone skips").
    #[test]
    fn seconds_since_1970_are_read_whatever_the_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let p = Pattern::new("%s");
        let at = |v: &str| p.read(v, &berlin).unwrap().timestamp();
        assert_eq!(at("1700000000"), 1_700_000_000);
        // 2024-03-31T01:30:00Z, 02:30 on Berlin's skipped hour as a wall time.
        assert_eq!(at("1711848600"), 1_711_848_600);
        // Both instants of the autumn fold stay apart.
        assert_eq!(at("1729989000"), 1_729_989_000);
        assert_eq!(at("1729992600"), 1_729_992_600);
        let frac = Pattern::new("%s.%3f")
            .read("1700000000.250", &berlin)
            .unwrap();
        assert_eq!(frac.timestamp_millis(), 1_700_000_000_250);
    }

    #[test]
    fn conversions_are_told_from_literal_percents() {
        let all: Vec<&str> = specs("a%%#z%-d%:::z%.3f%é%").map(|(_, s)| s).collect();
        assert_eq!(all, ["%%", "%-d", "%:::z", "%.3f", "%é", "%"]);
        assert_eq!(permissive_offsets_written("%#z %%#z"), "%:z %%#z");
    }
}
