//! A record that could not be decoded: where it came from, why (cut to a bound; arrow-json's
//! errors made plain), and the class of the reason for metrics.

use super::framing::Position;

/// A record that could not be decoded, with where it came from and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub position: Position,
    pub reason: String,
    pub record: Vec<u8>,
}

/// The longest reason a dead letter keeps, in bytes: some quote the whole value (arrow-json's
/// "expected { got ..."), which the dead letter holds anyway.
pub const MAX_REASON: usize = 1024;

impl DeadLetter {
    /// Cuts a reason longer than [`MAX_REASON`] (on a character boundary), marking the cut.
    pub fn cut_reason(&mut self) {
        if self.reason.len() <= MAX_REASON {
            return;
        }
        let end = cut(&self.reason, MAX_REASON).len();
        self.reason.truncate(end);
        self.reason.push_str("… (cut)");
        self.reason.shrink_to_fit();
    }

    /// The class of the reason, for metrics: `malformed` (not a well-formed record of its
    /// input kind: bad JSON, bad quoting, not UTF-8, a Kafka record batch the client cannot
    /// read), `type` (a value that does not convert to
    /// its field's type), `missing` (a required field absent or null), `unknown` (a field the
    /// schema does not name, when `unknown_fields` is not `ignore`), `stage` (a filter or
    /// transform stage failed on the row), `shape` (more CSV or
    /// text fields than the schema has), `metadata` (Kafka metadata that does not fit its
    /// column), `other`.
    pub fn class(&self) -> &'static str {
        reason_class(&self.reason)
    }
}

/// `s` cut to at most `max` bytes, at a character boundary (the text messages show of a
/// reason, a value, a header, an error).
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Every class [`reason_class`] gives.
pub const REASON_CLASSES: [&str; 9] = [
    "missing",
    "unknown",
    "stage",
    "type",
    "shape",
    "metadata",
    "skipped",
    "malformed",
    "other",
];

/// See [`DeadLetter::class`]: one of [`REASON_CLASSES`].
pub fn reason_class(reason: &str) -> &'static str {
    if reason.starts_with("missing required field") {
        "missing"
    } else if reason.starts_with("unknown field") {
        "unknown"
    } else if reason.starts_with("stage `") {
        "stage"
    } else if reason.starts_with("whilst decoding field")
        || reason.starts_with("field `")
        || reason.contains("failed to parse")
    {
        "type"
    } else if reason.contains("fields, more than") {
        "shape"
    } else if reason.contains("message key") || reason.contains("message timestamp") {
        "metadata"
    } else if reason.starts_with("skipped by") {
        "skipped"
    } else if reason.contains("UTF-8")
        || reason.contains("JSON")
        || reason.contains("whilst parsing")
        || reason.starts_with("expected ")
        || reason.contains("quote")
        || reason.contains("could not read the record batch")
    {
        "malformed"
    } else {
        "other"
    }
}

/// A dead letter's reason from an arrow-json error, which carries a generic prefix: the
/// useful part.
///
/// A required child of a struct that is absent or null is named plainly: arrow's message
/// (`Encountered unmasked nulls in non-nullable StructArray child: Field { "id": Utf8 }`)
/// shows the type arrow-json read, which for a value read as text is not the field's.
pub(super) fn arrow_reason(e: arrow::error::ArrowError) -> String {
    const UNMASKED: &str =
        "Encountered unmasked nulls in non-nullable StructArray child: Field { \"";
    let s = e.to_string();
    let s = s.strip_prefix("Json error: ").unwrap_or(&s);
    let s = s.strip_prefix("Parser error: ").unwrap_or(s);
    if let Some(at) = s.find(UNMASKED) {
        // The name as Rust's Debug quotes it: up to the first unescaped quote.
        let mut name = String::new();
        let mut chars = s[at + UNMASKED.len()..].chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return format!("{}required field `{name}` is missing or null", &s[..at]),
                '\\' => match chars.next() {
                    Some(e @ ('"' | '\\' | '\'')) => name.push(e),
                    Some(e) => {
                        name.push('\\');
                        name.push(e);
                    }
                    None => break,
                },
                c => name.push(c),
            }
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reason of each kind is classed into the list a revoked partition's series are
    /// removed by (one class missing there would leave its series behind).
    #[test]
    fn every_class_a_reason_gets_is_listed() {
        let reasons = [
            "missing required field `a`",
            "unknown field `x`",
            "stage `s` failed",
            "field `a`: no",
            "the record has 4 fields, more than the 3 expected",
            "the message key is not valid UTF-8",
            "skipped by operator",
            "expected { got [",
            "anything else",
        ];
        let classes: Vec<&str> = reasons.iter().map(|r| reason_class(r)).collect();
        assert_eq!(classes, REASON_CLASSES);
    }
}
