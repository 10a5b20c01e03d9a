//! Which topics a job reads: its names and `^` patterns, matched against the broker's
//! metadata, and the patterns refused where librdkafka, which matches them again when it
//! subscribes, would read them otherwise.

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{err_at, TIMEOUT};
use crate::source::SourceError;

/// The topics (and their partition numbers) the names and patterns match now.
pub(super) fn topics_now<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    name: &str,
    names: &[String],
    patterns: &[regex::Regex],
) -> Result<Vec<(String, Vec<i32>)>, SourceError> {
    let md = consumer
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| {
            err_at(
                name,
                format!(
                    "cannot read the topics' metadata within {} s: {e} (are the brokers of `source.brokers` up, reachable from here and speaking Kafka?)",
                    TIMEOUT.as_secs()
                ),
            )
        })?;
    let mut out = Vec::new();
    for t in md.topics() {
        let wanted =
            names.iter().any(|n| n == t.name()) || patterns.iter().any(|r| r.is_match(t.name()));
        if !wanted || t.error().is_some() || t.partitions().is_empty() {
            continue;
        }
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        out.push((t.name().to_string(), ids));
    }
    out.sort();
    for n in names.iter().filter(|n| !n.starts_with('^')) {
        if !out.iter().any(|(t, _)| t == n) {
            return Err(err_at(name, format!("topic `{n}` does not exist")));
        }
    }
    if out.is_empty() {
        return Err(err_at(name, "no topic matches the configured patterns"));
    }
    Ok(out)
}

/// The `^` entries of `topics` as regular expressions. librdkafka matches them itself when
/// it subscribes, as POSIX extended regular expressions, where `\d` is the letter `d` and
/// `(?i)` an error: a pattern whose meaning there may differ from this crate's (a backslash
/// before a letter or digit, a `(?` group) is refused, or a backfill (matched here) and a
/// live job (matched there) would read different topics, the live job perhaps none at all.
pub(super) fn patterns(name: &str, topics: &[String]) -> Result<Vec<regex::Regex>, SourceError> {
    topics
        .iter()
        .filter(|t| t.starts_with('^'))
        .map(|t| {
            if let Some(bad) = not_posix(t) {
                return Err(err_at(
                    name,
                    format!("topic pattern `{t}` uses `{bad}`, which librdkafka (POSIX extended regular expressions) reads otherwise; write classes out, e.g. `[0-9]` for `\\d`, `[a-zA-Z0-9_]` for `\\w`"),
                ));
            }
            regex::Regex::new(t)
                .map_err(|e| err_at(name, format!("topic pattern `{t}` is not a regex: {e}")))
        })
        .collect()
}

/// The character classes glibc's regular expressions know, which this crate reads alike.
const POSIX_CLASSES: [&[u8]; 12] = [
    b"alnum", b"alpha", b"blank", b"cntrl", b"digit", b"graph", b"lower", b"print", b"punct",
    b"space", b"upper", b"xdigit",
];

/// The first part of `pattern` that POSIX extended regular expressions (glibc's, which
/// librdkafka uses) may read otherwise than this crate: a backslash before a letter or digit
/// other than `\w \W \s \S \b \B` (which glibc reads alike), `(?`, and in a bracket
/// expression a backslash (POSIX takes it as itself), a nested `[` other than a class
/// both know (`[:digit:]`; collating elements `[.x.]` and `[=x=]` are read otherwise), or
/// `&&`, `--`, `~~` (this crate's class operations).
fn not_posix(pattern: &str) -> Option<&str> {
    let b = pattern.as_bytes();
    let at = |i: usize, n: usize| {
        let mut end = (i + n).min(b.len());
        while !pattern.is_char_boundary(end) {
            end += 1;
        }
        Some(&pattern[i..end])
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => match b.get(i + 1) {
                Some(c) if c.is_ascii_alphanumeric() && !b"wWsSbB".contains(c) => return at(i, 2),
                _ => i += 2,
            },
            b'(' if b.get(i + 1) == Some(&b'?') => return at(i, 2),
            b'[' => {
                // A bracket expression: `]` first (after an optional `^`) is a member.
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                while i < b.len() && b[i] != b']' {
                    match (b[i], b.get(i + 1)) {
                        (b'\\', _) => return at(i, 2),
                        (b'[', Some(b':')) => {
                            // A class both read alike: glibc's names, not negated.
                            let name = b[i + 2..]
                                .windows(2)
                                .position(|w| w == b":]")
                                .map(|p| &b[i + 2..i + 2 + p])
                                .filter(|n| POSIX_CLASSES.contains(n));
                            match name {
                                Some(n) => i += 2 + n.len() + 2,
                                None => return at(i, 2),
                            }
                        }
                        (b'[', _) => return at(i, 1),
                        (b'&', Some(b'&')) | (b'-', Some(b'-')) | (b'~', Some(b'~')) => {
                            return at(i, 2)
                        }
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `^logs-\d+$` passed here and matched nothing in librdkafka (`\d` is `d` there): a
    /// live job sat idle without an error while a backfill read the topics.
    #[test]
    fn patterns_read_otherwise_by_posix_are_refused() {
        for (p, bad) in [
            ("^logs-\\d+$", Some("\\d")),
            ("^(?i)logs", Some("(?")),
            ("^a\\pLb", Some("\\p")),
            ("^[\\-_]x", Some("\\-")),
            ("^[a-z&&[^x]]", Some("&&")),
            ("^[[a-z]]", Some("[")),
            ("^[\\é]", Some("\\é")),
            ("^[a-z--x]", Some("--")),
            ("^[[:alpha:]_-]+$", None),
            ("^[]a]+$", None),
            ("^[^]a]+$", None),
            ("^a\\sb\\w\\b", None),
            ("^logs-[0-9]+$", None),
            ("^logs\\.eu-.*", None),
            ("^a\\\\d", None),
            ("^é\\(x", None),
            ("^[[:alpha:", Some("[:")),
            ("^[[:word:]]", Some("[:")),
            ("^[[:^alpha:]]", Some("[:")),
            ("^[[.-.]]", Some("[")),
        ] {
            assert_eq!(not_posix(p), bad, "{p}");
        }
        let err = patterns("job", &["^logs-\\d+$".into(), "plain".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("uses `\\d`") && err.contains("[0-9]"), "{err}");
        assert_eq!(patterns("job", &["^logs-[0-9]+$".into()]).unwrap().len(), 1);
    }
}
