//! How deeply a record nests. arrow-json reads any depth without recursion, but the message
//! of a type error serializes the offending value recursively: a value nested 50,000 deep
//! where a field expects a string overflowed the decoding thread's stack and aborted the
//! process (a 356-byte gzip push did it). Records nested deeper than [`MAX_NESTING`] are
//! therefore dead letters before arrow-json sees them; the fast path hands such records back
//! rather than read them, so both paths decide alike.

/// The deepest nesting of arrays and objects a record may have (its own object is level 1).
pub const MAX_NESTING: usize = 1000;

/// The reason a record nested deeper than [`MAX_NESTING`] is a dead letter.
pub fn reason() -> String {
    format!("JSON nested deeper than {MAX_NESTING} levels of arrays and objects")
}

/// Whether the JSON text `b` nests deeper than [`MAX_NESTING`] arrays and objects. Strings
/// are skipped (escapes honoured); malformed text is measured as far as it goes.
pub fn too_deep(b: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' => {
                // To the closing quote: the next quote or backslash, past each escape.
                i += 1;
                loop {
                    let Some(k) = b.get(i..).and_then(|s| memchr::memchr2(b'"', b'\\', s)) else {
                        return false;
                    };
                    i += k;
                    if b[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1))
    }

    #[test]
    fn nesting_is_measured_outside_strings_only() {
        assert!(!too_deep(nested(MAX_NESTING).as_bytes()));
        assert!(too_deep(nested(MAX_NESTING + 1).as_bytes()));
        // Brackets inside strings, escaped quotes and backslashes do not count.
        let inside = format!(
            "{{\"a\":\"{}\\\"{}\\\\\"}}",
            "[".repeat(5000),
            "{".repeat(5000)
        );
        assert!(!too_deep(inside.as_bytes()));
        let after_escape = format!("{{\"a\":\"x\\\\\",\"b\":{}", "[".repeat(MAX_NESTING));
        assert!(too_deep(after_escape.as_bytes()));
        // Cut short anywhere: no panic.
        for cut in ["", "\"", "\"\\", "{\"a\":\"\\", "[[[", "]]]}}"] {
            assert!(!too_deep(cut.as_bytes()), "{cut}");
        }
    }
}
