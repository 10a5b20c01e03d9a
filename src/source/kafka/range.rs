//! Backfill bounds: where each partition starts and ends (earliest, latest, a timestamp or
//! explicit offsets), as given on the command line.

/// A position in every partition of the topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The low (`from`) watermark.
    Earliest,
    /// The high watermark when the run starts.
    Latest,
    /// The first offset whose message timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
    /// Explicit offsets per partition number (of one topic, or of every topic when `None`);
    /// partitions not listed use the fallback.
    Offsets(Vec<(Option<String>, i32, i64)>),
}

impl Position {
    /// Parses a backfill bound: `earliest`, `latest`, a timestamp (RFC 3339, e.g.
    /// `2024-05-01T00:00:00Z`, or `@<ms since the epoch>`), or offsets per partition
    /// (`0=100,1=250`, or `orders:0=100` for one topic's partition).
    pub fn parse(text: &str) -> Result<Position, String> {
        let t = text.trim();
        match t {
            "earliest" => return Ok(Position::Earliest),
            "latest" => return Ok(Position::Latest),
            _ => {}
        }
        if let Some(ms) = t.strip_prefix('@') {
            return ms
                .parse::<i64>()
                .map(Position::Timestamp)
                .map_err(|_| format!("`{t}`: expected @<milliseconds since the epoch>"));
        }
        if let Ok(ts) = chrono::DateTime::parse_from_rfc3339(t) {
            return Ok(Position::Timestamp(ts.timestamp_millis()));
        }
        if t.contains('=') {
            let mut list = Vec::new();
            for pair in t.split(',') {
                let (left, off) = pair.split_once('=').ok_or_else(|| {
                    format!(
                        "`{pair}`: expected <partition>=<offset> or <topic>:<partition>=<offset>"
                    )
                })?;
                let (topic, part) = match left.rsplit_once(':') {
                    Some((topic, part)) => (Some(topic.trim().to_string()), part),
                    None => (None, left),
                };
                let part = part
                    .trim()
                    .parse::<i32>()
                    .map_err(|_| format!("`{pair}`: `{part}` is not a partition number"))?;
                let off = off
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|o| *o >= 0)
                    .ok_or_else(|| format!("`{pair}`: `{off}` is not an offset"))?;
                list.push((topic, part, off));
            }
            return Ok(Position::Offsets(list));
        }
        Err(format!(
            "`{t}`: expected earliest, latest, a timestamp (2024-05-01T00:00:00Z or @<ms>) or offsets (0=100,1=250)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn positions_parse_and_bad_ones_say_why() {
        assert_eq!(Position::parse("earliest").unwrap(), Position::Earliest);
        assert_eq!(Position::parse("latest").unwrap(), Position::Latest);
        assert_eq!(
            Position::parse("@1714521600000").unwrap(),
            Position::Timestamp(1_714_521_600_000)
        );
        assert_eq!(
            Position::parse("2024-05-01T00:00:00Z").unwrap(),
            Position::Timestamp(1_714_521_600_000)
        );
        assert_eq!(
            Position::parse("0=10, orders:1=20").unwrap(),
            Position::Offsets(vec![(None, 0, 10), (Some("orders".into()), 1, 20)])
        );
        for bad in ["yesterday", "0=-1", "x=1", "@soon", "0=1,2"] {
            let e = Position::parse(bad).unwrap_err();
            assert!(e.contains('`'), "{bad}: {e}");
        }
    }
}
