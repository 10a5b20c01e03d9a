//! The JSON text of `json`-typed fields, picked out of a record: its top-level object read
//! once, the wanted keys' values kept as text (a repeated key's last), every other value read
//! and dropped. (A map of every key held a record of two million distinct keys several times
//! over.) Values are checked as serde_json checks them, within its recursion limit.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The values of `keys` (field index, JSON key) in the JSON object `record`, in their order.
pub fn pick<'a>(
    record: &'a [u8],
    keys: &[(usize, String)],
) -> Result<Vec<Option<&'a RawValue>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(record);
    let mut values = Wanted(keys).deserialize(&mut de)?;
    de.end()?;
    // Fields reading one key (`source`) share its value: the first of them holds it.
    for i in 0..keys.len() {
        if let Some(first) = keys[..i].iter().position(|(_, k)| *k == keys[i].1) {
            values[i] = values[first];
        }
    }
    Ok(values)
}

/// Reads an object, keeping the wanted keys' values.
struct Wanted<'k>(&'k [(usize, String)]);

impl<'de> DeserializeSeed<'de> for Wanted<'_> {
    type Value = Vec<Option<&'de RawValue>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Wanted<'_> {
    type Value = Vec<Option<&'de RawValue>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = vec![None; self.0.len()];
        while let Some(at) = map.next_key_seed(KeyIndex(self.0))? {
            let value: &'de RawValue = map.next_value()?;
            if let Some(i) = at {
                out[i] = Some(value);
            }
        }
        Ok(out)
    }
}

/// A key's place among the wanted keys, read without keeping it.
struct KeyIndex<'k>(&'k [(usize, String)]);

impl<'de> DeserializeSeed<'de> for KeyIndex<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIndex<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(_, k)| k == v))
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn the_wanted_keys_values_are_picked_as_text_the_last_of_a_repeated_one() {
        let keys = vec![
            (0, "a".to_string()),
            (3, "b\u{e9}".to_string()),
            (4, "a".to_string()),
        ];
        let got = pick(
            br#"{"x":[1,{"a":2}],"a":{"k":[1, 2]},"b\u00e9":"s","a":[ 3 ]}"#,
            &keys,
        )
        .unwrap();
        let text: Vec<Option<&str>> = got.iter().map(|v| v.map(|v| v.get())).collect();
        assert_eq!(text, [Some("[ 3 ]"), Some("\"s\""), Some("[ 3 ]")]);
        assert_eq!(
            pick(br#"{"x":1}"#, &keys)
                .unwrap()
                .iter()
                .map(|v| v.is_none())
                .collect::<Vec<_>>(),
            [true, true, true]
        );
        for bad in [&b"[1]"[..], b"{\"a\":1} x", b"{\"a\":}", b"{\"a\":1"] {
            assert!(
                pick(bad, &keys).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
