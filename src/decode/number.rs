//! Number text, read exactly: the grammar shared by decimal and integer fields, the rounding of
//! decimals, and the whole-number check of integers. Nothing goes through a float, so no digit
//! is lost or invented (`9007199254740993` stays itself, `2.675` rounds from its text).
//!
//! The text is a JSON number, or one with a leading `+`, with surrounding ASCII whitespace
//! allowed (CSV cells): `[+-]digits[.digits][(e|E)[+-]digits]`, `.5` and `5.` included. Any
//! exponent is read without building the number (`1e-400` is 0, `1e400` an overflow).
//!
//! - Decimals round half away from zero, as SQL engines cast (PostgreSQL, DuckDB, Spark,
//!   BigQuery): `12.345` is `12.35` at scale 2, `-0.005` is `-0.01`. arrow's own parser
//!   truncated (`2.675` was `2.67`).
//! - Integers take a number whose value is whole: `7`, `7.0`, `7e2`, `700e-2`. `7.5` is not
//!   one; arrow-json cut it to 7 without a word.

/// Why a text is not a number of the field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    /// Not a number.
    Malformed,
    /// Out of the type's range (for a decimal: more digits before the point than
    /// `precision - scale`).
    Overflow,
    /// An integer field's value with a fraction.
    Fraction,
}

/// A number's text, split into its sign and its significant digits (leading zeros dropped),
/// of which `point` stand before the point once the exponent is applied (`point` may be
/// negative, or past the digits' count: `5e3` is one digit and a point of 4).
struct Parts<'a> {
    negative: bool,
    /// The digits before and after the written point, leading zeros dropped.
    int: &'a [u8],
    frac: &'a [u8],
    /// How many of the significant digits stand before the point.
    point: i64,
}

impl<'a> Parts<'a> {
    fn parse(text: &'a [u8]) -> Result<Parts<'a>, NumberError> {
        let b = text.trim_ascii();
        let (negative, b) = match b.first() {
            Some(b'-') => (true, &b[1..]),
            Some(b'+') => (false, &b[1..]),
            _ => (false, b),
        };
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let (int, rest) = b.split_at(int_len);
        let (frac, rest) = match rest.split_first() {
            Some((b'.', r)) => {
                let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
                r.split_at(n)
            }
            _ => (&rest[..0], rest),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(NumberError::Malformed);
        }
        let exponent: i64 = match rest.split_first() {
            None => 0,
            Some((b'e' | b'E', r)) => {
                let (sign, digits) = match r.split_first() {
                    Some((b'-', d)) => (-1, d),
                    Some((b'+', d)) => (1, d),
                    _ => (1, r),
                };
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(NumberError::Malformed);
                }
                // Saturates: past a billion, every value is 0 or an overflow anyway.
                let e = digits.iter().fold(0i64, |e, d| {
                    (e * 10 + i64::from(d - b'0')).min(1_000_000_000)
                });
                sign * e
            }
            Some(_) => return Err(NumberError::Malformed),
        };
        // Leading zeros are not significant, wherever the point falls among them.
        let lead_int = int.iter().take_while(|&&d| d == b'0').count();
        let int = &int[lead_int..];
        let (frac, point) = if int.is_empty() {
            let lead = frac.iter().take_while(|&&d| d == b'0').count();
            (&frac[lead..], exponent - lead as i64)
        } else {
            (frac, int.len() as i64 + exponent)
        };
        Ok(Parts {
            negative,
            int,
            frac,
            point,
        })
    }

    /// The significant digits, as numbers.
    fn digits(&self) -> impl Iterator<Item = u8> + '_ {
        self.int.iter().chain(self.frac).map(|d| d - b'0')
    }

    fn count(&self) -> usize {
        self.int.len() + self.frac.len()
    }
}

/// Parses `text` as a decimal of `precision` and `scale`: the value × 10^scale, rounded half
/// away from zero.
pub fn decimal(text: &str, precision: u8, scale: i8) -> Result<i128, NumberError> {
    let parts = Parts::parse(text.as_bytes())?;
    let count = parts.count();
    if parts.digits().all(|d| d == 0) {
        return Ok(0);
    }
    // Digits kept in front of the point once scaled.
    let keep = parts.point + i64::from(scale);
    if keep > i64::from(precision) {
        return Err(NumberError::Overflow);
    }
    let kept = keep.max(0) as usize;
    let mut value = parts
        .digits()
        .take(kept)
        .fold(0i128, |v, d| v * 10 + i128::from(d));
    for _ in count..kept {
        value *= 10;
    }
    // The first digit dropped decides: 5 or more rounds away from zero.
    if keep >= 0 && parts.digits().nth(kept).is_some_and(|d| d >= 5) {
        value += 1;
        if value >= 10i128.pow(u32::from(precision)) {
            return Err(NumberError::Overflow);
        }
    }
    Ok(if parts.negative { -value } else { value })
}

/// Parses `text` as a whole number in `min..=max`: `7`, `7.0`, `7e2` and `700e-2` are whole,
/// `7.5` is a [`NumberError::Fraction`]. The text is bytes (a record's number token needs no
/// UTF-8 check): anything but the grammar's ASCII is [`NumberError::Malformed`].
pub fn integer(text: impl AsRef<[u8]>, min: i64, max: i64) -> Result<i64, NumberError> {
    let text = text.as_ref();
    // Plain digits, the common case, at the speed of a plain parse.
    if let Ok(v) = lexical_core::parse::<i64>(text) {
        return if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(NumberError::Overflow)
        };
    }
    let parts = Parts::parse(text)?;
    if parts.digits().all(|d| d == 0) {
        return Ok(0);
    }
    let count = parts.count();
    // Digits before the point; the rest must be zeros.
    let whole = parts.point.max(0);
    if parts.digits().skip(whole as usize).any(|d| d != 0) {
        return Err(NumberError::Fraction);
    }
    // i64 has 19 digits; a value with more (its first digit is not 0) is out of range.
    if whole > 19 {
        return Err(NumberError::Overflow);
    }
    let whole = whole as usize;
    let mut value = parts
        .digits()
        .take(whole)
        .fold(0i128, |v, d| v * 10 + i128::from(d));
    for _ in count..whole {
        value *= 10;
    }
    let value = if parts.negative { -value } else { value };
    if value < i128::from(min) || value > i128::from(max) {
        return Err(NumberError::Overflow);
    }
    Ok(value as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_rounded_half_away_from_zero_and_checked() {
        let ok = |t: &str, p: u8, s: i8| decimal(t, p, s).unwrap();
        let cases: [(&str, i128); 22] = [
            ("12.34", 1234),
            ("12.345", 1235),
            ("12.3449999", 1234),
            ("-12.345", -1235),
            ("-0.005", -1),
            ("-0.004", 0),
            ("12345e-3", 1235),
            ("12.3456789e2", 123457),
            ("0.1e1", 100),
            ("1E+2", 10000),
            ("1e-400", 0),
            ("0e999999999999999999", 0),
            ("000000000000000000000000000000000000000000012.5", 1250),
            (".5", 50),
            ("5.", 500),
            ("+5", 500),
            (" 7 ", 700),
            ("-0", 0),
            ("9999999999.99", 999999999999),
            ("9999999999.994", 999999999999),
            ("0.00000000000000000000000000000000000000000000000005", 0),
            ("0.005", 1),
        ];
        for (t, want) in cases {
            assert_eq!(ok(t, 12, 2), want, "{t}");
        }
        assert_eq!(ok("123", 3, 0), 123);
        assert_eq!(ok("0.5", 1, 0), 1);
        assert_eq!(
            ok("99999999999999999999999999999999999999", 38, 0),
            10i128.pow(38) - 1
        );
        for t in [
            "9999999999.995",
            "1e20",
            "99999999999.99",
            "1e1000000000000",
        ] {
            assert_eq!(decimal(t, 12, 2), Err(NumberError::Overflow), "{t}");
        }
        assert_eq!(decimal("9.5", 1, 0), Err(NumberError::Overflow));
        for t in [
            "", " ", "-", "+", ".", "e5", "1e", "1e+", "1.2.3", "1-2", "--5", "1e40e-40", "abc",
            "0x10", "NaN", "Infinity", "1 2", "true", "١٢",
        ] {
            assert_eq!(decimal(t, 12, 2), Err(NumberError::Malformed), "{t:?}");
        }
    }

    #[test]
    fn integers_must_be_whole_and_in_range() {
        let int = |t: &str| integer(t, i64::MIN, i64::MAX);
        let cases: [(&str, i64); 14] = [
            ("7", 7),
            ("-7", -7),
            ("+7", 7),
            (" 7 ", 7),
            ("7.0", 7),
            ("7.000000000000000000000000000000", 7),
            ("7e2", 700),
            ("7E+2", 700),
            ("700e-2", 7),
            ("0.7e1", 7),
            ("-0.0", 0),
            ("0e999999999999", 0),
            ("9223372036854775807.0", i64::MAX),
            ("-9223372036854775808e0", i64::MIN),
        ];
        for (t, want) in cases {
            assert_eq!(int(t), Ok(want), "{t}");
        }
        // Exact past 2^53, where a float would have moved it.
        assert_eq!(int("9007199254740993.0"), Ok(9_007_199_254_740_993));
        for t in [
            "7.5",
            "1.9",
            "-0.5",
            "0.1",
            "1e-400",
            "700e-3",
            "2147483647.5",
        ] {
            assert_eq!(int(t), Err(NumberError::Fraction), "{t}");
        }
        for t in [
            "9223372036854775808",
            "-9223372036854775809",
            "1e19",
            "1e400",
            "1e20.0",
        ] {
            assert!(int(t).is_err(), "{t}");
        }
        assert_eq!(int("1e19"), Err(NumberError::Overflow));
        assert_eq!(
            int("12345678901234567890e-1"),
            Ok(1_234_567_890_123_456_789)
        );
        assert_eq!(
            integer("2147483648", i32::MIN.into(), i32::MAX.into()),
            Err(NumberError::Overflow)
        );
        assert_eq!(
            integer("-2147483648.0", i32::MIN.into(), i32::MAX.into()),
            Ok(-2147483648)
        );
        for t in [
            "", " ", "-", "e5", "1e", "1.2.3", "abc", "0x10", "NaN", "Infinity", "true",
        ] {
            assert_eq!(int(t), Err(NumberError::Malformed), "{t:?}");
        }
        // Bytes that are not the grammar's, UTF-8 or not, are no number.
        for b in [&b"7\xff"[..], b"\xff7", b"7\xc3\xa9", b"7\x00"] {
            assert_eq!(
                integer(b, i64::MIN, i64::MAX),
                Err(NumberError::Malformed),
                "{b:?}"
            );
        }
    }
}
