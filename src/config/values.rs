//! Values of a job file typed once: sizes (`64MiB`), durations (`30s`), each bounded so that
//! arithmetic on them cannot overflow, and pass-through client settings whose secrets never
//! show in `Debug`.

use std::time::Duration;

use serde::Deserialize;

/// Settings passed through to a client library (librdkafka properties). `Debug` hides the
/// values of keys that name a secret (`sasl.password`, `ssl.key.pem`, ...), so a logged or
/// printed job never shows them.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct PassThrough(pub std::collections::BTreeMap<String, String>);

impl std::ops::Deref for PassThrough {
    type Target = std::collections::BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for PassThrough {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl std::fmt::Debug for PassThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if crate::store::remote::secret_key(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            }))
            .finish()
    }
}

/// Splits `64MiB` into (64.0, "MiB"); `example` goes into the error message.
fn number_and_unit<'a>(s: &'a str, example: &str) -> Result<(f64, &'a str), String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n = num.parse().map_err(|_| format!("`{s}` is not {example}"))?;
    Ok((n, unit.trim()))
}

/// Parses `64MiB`, `1GB`, `4096`, `512k`: binary units for Ki/Mi/Gi, decimal for k/M/G.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(s, "a size (e.g. 64MiB)")?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    let v = (n * mult).round();
    if v < 1.0 {
        return Err(format!("`{s}` must be at least 1 byte"));
    }
    // Sizes are added and multiplied downstream: keep them far from overflow.
    if v.is_nan() || v > MAX_BYTES as f64 {
        return Err(format!(
            "`{s}` is more than the largest size accepted, 1PiB"
        ));
    }
    Ok(v as u64)
}

/// The largest size a job file may give (1 PiB).
pub const MAX_BYTES: u64 = 1 << 50;

/// The longest duration a job file may give (10 years): deadlines are `now + duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86400);

/// Parses `30s`, `5m`, `1h`, `250ms`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = number_and_unit(s, "a duration (e.g. 30s, 5m, 1h)")?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => return Err(format!("unknown duration unit `{other}` in `{s}`")),
    };
    if secs.is_nan() || secs <= 0.0 {
        return Err(format!("`{s}` must be positive"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "`{s}` is longer than the longest duration accepted, 3650d"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}
