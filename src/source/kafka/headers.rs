//! A Kafka message's headers as the JSON object a `_kafka_headers` field holds.
//!
//! Header values are bytes. One that is UTF-8 is a JSON string; any other is the object
//! `{"base64": "<standard base64>"}`, so no byte is lost and a reader tells the two apart by
//! the JSON type. Names arrive from librdkafka as C strings and are read as UTF-8, lossily:
//! the protocol defines them as UTF-8 strings, and a JSON object's keys can only be text.

use base64::Engine;
use serde_json::Value;

/// Message headers as one JSON object: a name that appears once maps to its value (a string,
/// a base64 object or null), a name that repeats to the array of its values in order (none
/// is dropped).
pub(super) fn json<'a>(headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) -> String {
    let mut obj = serde_json::Map::new();
    for (key, value) in headers {
        let v = value.map_or(Value::Null, value_json);
        match obj.get_mut(key) {
            None => {
                obj.insert(key.to_string(), v);
            }
            // A single value is never an array: an array means the name repeated before.
            Some(Value::Array(vs)) => vs.push(v),
            Some(first) => {
                let first = first.take();
                obj.insert(key.to_string(), Value::Array(vec![first, v]));
            }
        }
    }
    Value::Object(obj).to_string()
}

/// One header value: its text when it is UTF-8, else its bytes in base64.
fn value_json(v: &[u8]) -> Value {
    match std::str::from_utf8(v) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => {
            let mut o = serde_json::Map::new();
            let b64 = base64::engine::general_purpose::STANDARD.encode(v);
            o.insert("base64".into(), Value::String(b64));
            Value::Object(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_header_names_keep_every_value() {
        let hs = [
            ("a", Some(&b"1"[..])),
            ("b", None),
            ("a", Some(&b"2"[..])),
            ("a", None),
        ];
        let v: Value = serde_json::from_str(&json(hs.into_iter())).unwrap();
        assert_eq!(v, serde_json::json!({"a": ["1", "2", null], "b": null}));
    }

    #[test]
    fn a_value_that_is_not_utf8_keeps_its_bytes_in_base64() {
        let hs = [
            ("bin", Some(&b"\x00\xff\xfe"[..])),
            ("text", Some("é\u{0}".as_bytes())),
            ("bin", Some(&b"\xc3"[..])),
            ("empty", Some(&b""[..])),
        ];
        let v: Value = serde_json::from_str(&json(hs.into_iter())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "bin": [{"base64": "AP/+"}, {"base64": "ww=="}],
                "text": "é\u{0}",
                "empty": "",
            })
        );
    }
}
