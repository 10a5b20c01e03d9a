//! Time zones as a schema file or a stage names them: known to arrow, and a fixed offset in
//! the one spelling every reader takes. Arrow also takes `+0930` and `+09`, and writes the
//! name as given into the files' schema, where pyarrow looks them up as zone names and fails
//! on every value; `+09:30` is the same zone.

use arrow::array::timezone::Tz;

/// The zone `tz` in the spelling written to files: a fixed offset as `±HH:MM`, any other
/// name as given. Err: arrow does not know it.
pub fn canonical(tz: &str) -> Result<String, String> {
    if tz.parse::<Tz>().is_err() {
        return Err(format!(
            "`{tz}` is not a time zone (UTC, an offset such as `+02:00`, or an IANA name such \
             as `Europe/Berlin`)"
        ));
    }
    let b = tz.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let (hours, minutes) = match b {
        [b'+' | b'-', rest @ ..] if rest.len() == 2 && digits(rest) => (&tz[1..3], "00"),
        [b'+' | b'-', rest @ ..] if rest.len() == 4 && digits(rest) => (&tz[1..3], &tz[3..5]),
        _ => return Ok(tz.to_string()),
    };
    Ok(format!("{}{hours}:{minutes}", &tz[..1]))
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn offsets_are_spelled_with_a_colon_and_names_are_kept() {
        assert_eq!(canonical("+0930").unwrap(), "+09:30");
        assert_eq!(canonical("-05").unwrap(), "-05:00");
        assert_eq!(canonical("+02:00").unwrap(), "+02:00");
        assert_eq!(canonical("UTC").unwrap(), "UTC");
        assert_eq!(canonical("Asia/Kolkata").unwrap(), "Asia/Kolkata");
        assert!(canonical("Mars/Base").unwrap_err().contains("`Mars/Base`"));
        assert!(canonical("+2").is_err());
    }
}
