//! Unknown-field refusal for JSON records: the first top-level key the schema does not name.
//!
//! Strict JSON is read with serde. A record serde refuses but arrow-json may still read (a
//! leading zero, a raw tab in a string, doubled commas) is scanned leniently once arrow-json has
//! read it, so no such record slips an unknown key past the check, and a record arrow-json
//! refuses keeps arrow-json's reason.

use std::collections::HashSet;

/// What a strict reading of a record says about its keys.
pub enum Reading {
    /// Every top-level key is known (or the record is not an object: the decoder says so).
    Known,
    /// The first key the schema does not name.
    Unknown(String),
    /// Not strict JSON: look again with [`lenient`] if arrow-json reads it.
    NotStrict,
}

/// Reads `record` as strict JSON and finds its first key not in `known`.
pub fn strict(record: &[u8], known: &HashSet<String>) -> Reading {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys<'k>(&'k HashSet<String>);
    impl<'de> Visitor<'de> for Keys<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut unknown = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if unknown.is_none() && !self.0.contains(key.as_ref()) {
                    unknown = Some(key.into_owned());
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(unknown)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(record);
    let keys = de.deserialize_map(Keys(known));
    // Anything after the object (a second value) makes the record malformed, not strict JSON.
    match (keys, de.end()) {
        (Ok(Some(key)), Ok(())) => Reading::Unknown(key),
        (Ok(None), Ok(())) => Reading::Known,
        _ => Reading::NotStrict,
    }
}

/// The first key of the outer object not in `known`, for a record arrow-json has read but
/// strict JSON refuses: a key is a string inside the outer braces, outside any other bracket,
/// followed by a colon (in every record arrow-json reads, only keys are), decoded as arrow-json
/// decodes it. Nesting is a counter, never recursion; any bytes are safe.
pub fn lenient(b: &[u8], known: &HashSet<String>) -> Option<String> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let (name, after) = super::fast::decode_string(b, i + 1)?;
                i = after;
                let colon = i + b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_whitespace())
                    .count();
                if depth == 1 && b.get(colon) == Some(&b':') && !known.contains(&name) {
                    return Some(name);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}
