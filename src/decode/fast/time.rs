//! RFC 3339 timestamps in their most common spelling, read without building a parser per value:
//! `YYYY-MM-DDTHH:MM:SS`, an optional fraction of 1–9 digits, then `Z` or `±HH:MM`. The value is
//! the instant's count of `unit`s since the epoch, exactly what arrow's `string_to_datetime`
//! gives for the same text (floor seconds plus the fraction, as chrono counts them). Any other
//! spelling, a leap second, or nanoseconds answer `None`: the caller asks arrow.

use arrow::datatypes::TimeUnit;

/// The last date read and its day number: the records of a batch mostly share their date,
/// which is then read and checked once. It always holds a valid date (the epoch's at first).
#[derive(Clone)]
pub struct Days {
    date: [u8; 10],
    days: i64,
}

impl Default for Days {
    fn default() -> Days {
        Days {
            date: *b"1970-01-01",
            days: 0,
        }
    }
}

/// The timestamp `s` spells, in `unit`, or `None` when it is not in the common spelling.
/// `days` remembers the last date read (a date is the same whatever its time).
pub fn rfc3339(s: &[u8], unit: TimeUnit, days: &mut Days) -> Option<i64> {
    if s.len() < 20 || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let day = if s[..10] == days.date {
        days.days
    } else {
        let d = date(&s[..10])?;
        days.date.copy_from_slice(&s[..10]);
        days.days = d;
        d
    };
    let (hour, minute, second) = (
        digits(&s[11..13])?,
        digits(&s[14..16])?,
        digits(&s[17..19])?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if s[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < s.len() && s[end].is_ascii_digit() {
            end += 1;
        }
        let n = end - start;
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(&s[start..end])? * 10u32.pow(9 - n as u32);
        i = end;
    }
    let offset = match &s[i..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = (h * 3600 + m * 60) as i64;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = day * 86_400 + (hour * 3600 + minute * 60 + second) as i64 - offset;
    match unit {
        TimeUnit::Second => Some(secs),
        TimeUnit::Millisecond => secs
            .checked_mul(1_000)?
            .checked_add((nanos / 1_000_000) as i64),
        TimeUnit::Microsecond => secs
            .checked_mul(1_000_000)?
            .checked_add((nanos / 1_000) as i64),
        TimeUnit::Nanosecond => None,
    }
}

/// The day number of `YYYY-MM-DD`, or `None` when it is not such a date.
fn date(s: &[u8]) -> Option<i64> {
    if s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let year = digits(&s[0..4])? as i64;
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// A run of ASCII digits as a number.
fn digits(d: &[u8]) -> Option<u32> {
    d.iter().try_fold(0u32, |v, c| {
        c.is_ascii_digit().then(|| v * 10 + (c - b'0') as u32)
    })
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::timezone::Tz;
    use arrow::compute::kernels::cast_utils::string_to_datetime;
    use proptest::prelude::*;

    fn arrow_value(s: &str, unit: TimeUnit, tz: &Tz) -> Option<i64> {
        let t = string_to_datetime(tz, s).ok()?;
        Some(match unit {
            TimeUnit::Second => t.timestamp(),
            TimeUnit::Millisecond => t.timestamp_millis(),
            TimeUnit::Microsecond => t.timestamp_micros(),
            TimeUnit::Nanosecond => t.timestamp_nanos_opt()?,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whenever it answers, it answers what arrow does, in every unit and zone.
        #[test]
        fn agrees_with_arrow(
            y in 0i64..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..25, mi in 0u32..61,
            sec in 0u32..61, frac in proptest::option::of("[0-9]{0,10}"),
            zone in prop_oneof![Just("Z".to_string()), Just(String::new()),
                (any::<bool>(), 0u32..25, 0u32..61).prop_map(|(p, h, m)|
                    format!("{}{h:02}:{m:02}", if p { '+' } else { '-' }))],
            unit in prop_oneof![Just(TimeUnit::Second), Just(TimeUnit::Millisecond),
                Just(TimeUnit::Microsecond), Just(TimeUnit::Nanosecond)],
            tz in prop_oneof![Just("UTC"), Just("Europe/Berlin"), Just("+05:30")],
        ) {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            let s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}{frac}{zone}");
            let tz: Tz = tz.parse().unwrap();
            let cold = rfc3339(s.as_bytes(), unit, &mut Days::default());
            if let Some(v) = cold {
                prop_assert_eq!(Some(v), arrow_value(&s, unit, &tz), "{}", s);
            }
            // The same answer with the date remembered from a record before, or another one.
            for before in [format!("{}T12:00:00Z", &s[..10]), "2024-02-29T00:00:00Z".into()] {
                let mut days = Days::default();
                rfc3339(before.as_bytes(), unit, &mut days);
                prop_assert_eq!(rfc3339(s.as_bytes(), unit, &mut days), cold, "{} after {}", s, before);
            }
        }
    }

    #[test]
    fn the_common_spellings_are_read() {
        for s in [
            "2024-05-01T00:00:00.005Z",
            "1969-12-31T23:59:59.5-05:30",
            "0000-02-29T00:00:00Z",
        ] {
            let v = rfc3339(s.as_bytes(), TimeUnit::Millisecond, &mut Days::default());
            assert!(v.is_some(), "{s}");
            assert_eq!(
                v,
                arrow_value(s, TimeUnit::Millisecond, &"UTC".parse().unwrap())
            );
        }
        assert_eq!(
            rfc3339(
                b"2024-05-01 00:00:00Z",
                TimeUnit::Millisecond,
                &mut Days::default()
            ),
            None
        );
        assert_eq!(
            rfc3339(
                b"2024-05-01T00:00:60Z",
                TimeUnit::Millisecond,
                &mut Days::default()
            ),
            None
        );
    }
}
