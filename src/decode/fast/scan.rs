//! The byte-level reader of the JSON fast path: whitespace, literals, number tokens (as
//! arrow-json's tape cuts them), strings and their escapes (decoded as arrow-json decodes them;
//! the next quote or backslash found eight bytes at a time, then with `memchr`), and skipping a whole value with nesting
//! kept on a list, never by recursion. Every function answers a hand-back when the bytes are
//! not what it reads, and never reads past the end of the record.

use super::{HandBack, Step};

/// Skips the value at `i` (any JSON value, checked as strictly as a read one); returns
/// where it ends. Nesting is tracked on a list, not by recursion.
pub fn skip_value(stack: &mut Vec<u8>, b: &[u8], mut i: usize) -> Step<usize> {
    stack.clear();
    loop {
        i = ws(b, i);
        match at(b, i) {
            open @ (b'{' | b'[') => {
                // Deeper than a record may nest, empty or not (the value sits in the record's
                // object, level 1): the slow path makes it a dead letter.
                if stack.len() + 2 > crate::decode::depth::MAX_NESTING {
                    return Err(HandBack);
                }
                let close = if open == b'{' { b'}' } else { b']' };
                i = ws(b, i + 1);
                if at(b, i) == close {
                    i += 1;
                } else {
                    stack.push(close);
                    if close == b'}' {
                        i = key_colon(b, i)?;
                    }
                    continue;
                }
            }
            b'"' => i = unescape(b, i + 1, None)?,
            b'-' | b'0'..=b'9' => i = number_end(b, i),
            b'n' => i = literal(b, i, b"null")?,
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            _ => return Err(HandBack),
        }
        // After a value: close what it ends, or go on to the next one.
        loop {
            let Some(&close) = stack.last() else {
                return Ok(i);
            };
            i = ws(b, i);
            match at(b, i) {
                b',' => {
                    i += 1;
                    if close == b'}' {
                        i = key_colon(b, ws(b, i))?;
                    }
                    break;
                }
                c if c == close => {
                    stack.pop();
                    i += 1;
                }
                _ => return Err(HandBack),
            }
        }
    }
}

/// The byte at `i`, or 0 past the end (0 starts no token, so it ends every state).
#[inline]
pub fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The first position at or after `i` that is not JSON whitespace.
#[inline]
pub fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(at(b, i), b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// Where a number that starts at `i` ends: arrow-json's token (digits, signs, dots, exponents).
#[inline]
pub fn number_end(b: &[u8], mut i: usize) -> usize {
    while matches!(at(b, i), b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
        i += 1;
    }
    i
}

/// The end of `word` at `i`, or a hand-back.
pub fn literal(b: &[u8], i: usize, word: &[u8]) -> Step<usize> {
    if b.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        Err(HandBack)
    }
}

/// A key name, with its first 16 bytes kept as two words, so that finding it at a place in a
/// record is two loads and compares rather than a call to `memcmp`.
#[derive(Clone)]
pub struct Name {
    bytes: Box<[u8]>,
    words: [u64; 2],
    masks: [u64; 2],
}

impl Name {
    pub fn new(name: &[u8]) -> Name {
        let mut padded = [0u8; 16];
        let mut mask = [0u8; 16];
        for (k, &c) in name.iter().take(16).enumerate() {
            padded[k] = c;
            mask[k] = 0xff;
        }
        let word = |a: &[u8; 16], k: usize| u64::from_le_bytes(a[k..k + 8].try_into().expect("8"));
        Name {
            bytes: name.into(),
            words: [word(&padded, 0), word(&padded, 8)],
            masks: [word(&mask, 0), word(&mask, 8)],
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when `b` holds this name's bytes at `i`.
    #[inline]
    pub fn is_at(&self, b: &[u8], i: usize) -> bool {
        let n = self.bytes.len();
        match b.get(i..i + 16) {
            Some(w) if n <= 16 => {
                let word = |k: usize| u64::from_le_bytes(w[k..k + 8].try_into().expect("8"));
                word(0) & self.masks[0] == self.words[0] && word(8) & self.masks[1] == self.words[1]
            }
            _ => b.get(i..i + n) == Some(&self.bytes[..]),
        }
    }
}

/// Where the first `"` or `\\` at or after `i` (at most `b.len()`) stands. Most strings in a
/// record are short: their first 16 bytes are tested eight at a time in registers (no call; a
/// match's byte is exact, as a false one only stands above a true one), the rest by `memchr`.
#[inline]
pub fn quote_or_backslash(b: &[u8], i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let found = |w: u64| {
        let (q, s) = (w ^ (ONES * b'"' as u64), w ^ (ONES * b'\\' as u64));
        (q.wrapping_sub(ONES) & !q | s.wrapping_sub(ONES) & !s) & HIGH
    };
    let mut j = i;
    if let Some(w) = b.get(i..i + 16) {
        let (lo, hi) = w.split_at(8);
        let lo = found(u64::from_le_bytes(lo.try_into().expect("8 bytes")));
        if lo != 0 {
            return Some(i + (lo.trailing_zeros() / 8) as usize);
        }
        let hi = found(u64::from_le_bytes(hi.try_into().expect("8 bytes")));
        if hi != 0 {
            return Some(i + 8 + (hi.trailing_zeros() / 8) as usize);
        }
        j += 16;
    }
    memchr::memchr2(b'"', b'\\', &b[j..]).map(|k| j + k)
}

/// True when `name` is spelled in a record as its bytes: no quote, backslash or control byte.
#[inline]
pub fn plain(name: &[u8]) -> bool {
    !name.iter().any(|&c| c == b'"' || c == b'\\' || c < 0x20)
}

/// A key without escapes whose contents start at `i`: (start, end of contents).
pub fn plain_string(b: &[u8], i: usize) -> Step<(usize, usize)> {
    let stop = quote_or_backslash(b, i).ok_or(HandBack)?;
    if b[stop] == b'"' {
        Ok((i, stop))
    } else {
        Err(HandBack)
    }
}

/// Skips `"key" :` at `i`; returns the position after the colon.
fn key_colon(b: &[u8], i: usize) -> Step<usize> {
    if at(b, i) != b'"' {
        return Err(HandBack);
    }
    let after = unescape(b, i + 1, None)?;
    let i = ws(b, after);
    if at(b, i) != b':' {
        return Err(HandBack);
    }
    Ok(i + 1)
}

/// Reads the string whose contents start at `i` (escapes as arrow-json decodes them), into
/// `out` when given; returns the position after the closing quote.
pub fn unescape(b: &[u8], mut i: usize, mut out: Option<&mut Vec<u8>>) -> Step<usize> {
    loop {
        let stop = quote_or_backslash(b, i).ok_or(HandBack)?;
        if let Some(o) = out.as_deref_mut() {
            o.extend_from_slice(&b[i..stop]);
        }
        if b[stop] == b'"' {
            return Ok(stop + 1);
        }
        let (c, next) = match at(b, stop + 1) {
            b'"' => ('"', stop + 2),
            b'\\' => ('\\', stop + 2),
            b'/' => ('/', stop + 2),
            b'b' => ('\u{8}', stop + 2),
            b'f' => ('\u{c}', stop + 2),
            b'n' => ('\n', stop + 2),
            b'r' => ('\r', stop + 2),
            b't' => ('\t', stop + 2),
            b'u' => {
                let high = hex4(b, stop + 2)?;
                match char::from_u32(high as u32) {
                    Some(c) => (c, stop + 6),
                    None => {
                        // A surrogate: only a high one followed by `\u` and a low one is a char.
                        if b.get(stop + 6..stop + 8) != Some(b"\\u") {
                            return Err(HandBack);
                        }
                        let low = hex4(b, stop + 8)?;
                        if !(0xD800..=0xDBFF).contains(&high) || !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(HandBack);
                        }
                        let n =
                            (((high - 0xD800) as u32) << 10) | ((low - 0xDC00) as u32 + 0x1_0000);
                        (char::from_u32(n).ok_or(HandBack)?, stop + 12)
                    }
                }
            }
            _ => return Err(HandBack),
        };
        if let Some(o) = out.as_deref_mut() {
            let mut t = [0; 4];
            o.extend_from_slice(c.encode_utf8(&mut t).as_bytes());
        }
        i = next;
    }
}

/// Four hex digits at `i`.
fn hex4(b: &[u8], i: usize) -> Step<u16> {
    let digits = b.get(i..i + 4).ok_or(HandBack)?;
    let mut v = 0u16;
    for &d in digits {
        v = (v << 4) | (d as char).to_digit(16).ok_or(HandBack)? as u16;
    }
    Ok(v)
}

/// An integer from a JSON number as arrow-json reads it (date and raw epoch columns, not
/// integer fields): the integer, else a float that fits, cut toward zero.
pub fn json_int<T>(n: &[u8]) -> Step<T>
where
    T: lexical_core::FromLexical + num_traits::NumCast,
{
    match lexical_core::parse::<T>(n) {
        Ok(v) => Ok(v),
        Err(_) => lexical_core::parse::<f64>(n)
            .ok()
            .and_then(num_traits::NumCast::from)
            .ok_or(HandBack),
    }
}

/// The string whose contents start at `i` (at most `b.len()`) in `b`, decoded as arrow-json
/// decodes it, and the position after its closing quote; `None` when arrow-json would refuse it.
pub fn decode_string(b: &[u8], i: usize) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let after = unescape(b, i, Some(&mut out)).ok()?;
    Some((String::from_utf8(out).ok()?, after))
}

#[cfg(test)]
mod tests {
    use super::{quote_or_backslash, Name};
    use proptest::prelude::*;

    proptest! {
        /// The word-at-a-time search finds what `memchr2` finds, from any start, in bytes
        /// rich in quotes, backslashes and their neighbours (0x21, 0x5b, 0xa2, 0xdc).
        #[test]
        fn quote_or_backslash_is_memchr2(
            b in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(0x21u8), Just(0x5bu8), Just(0xa2u8),
                    Just(0xdcu8), Just(0u8), any::<u8>()],
                0..80,
            ),
            frac in 0.0f64..=1.0,
        ) {
            let i = ((b.len() as f64) * frac) as usize;
            let want = memchr::memchr2(b'"', b'\\', &b[i..]).map(|k| i + k);
            prop_assert_eq!(quote_or_backslash(&b, i), want);
        }
    }

    /// A name is found exactly where its bytes are, whatever its length and however near the
    /// end of the record.
    #[test]
    fn names_are_found_only_where_their_bytes_are() {
        for name in [
            "a",
            "status",
            "eightchr",
            "sixteen_chars_ab",
            "seventeen_chars_a",
            "",
        ] {
            let n = Name::new(name.as_bytes());
            for pad in [0usize, 3, 20] {
                let tail = "x".repeat(pad);
                let rec = format!("{{\"{name}\":1,{tail}");
                assert!(n.is_at(rec.as_bytes(), 2), "{name} in {rec}");
                let mut other = name.as_bytes().to_vec();
                if let Some(last) = other.last_mut() {
                    *last ^= 1;
                    let rec = [b"{\"".as_slice(), &other, b"\":1,", tail.as_bytes()].concat();
                    assert!(!n.is_at(&rec, 2), "{name} against {other:?}");
                }
                assert!(!n.is_at(rec.as_bytes(), rec.len()) || name.is_empty());
            }
        }
    }
}
