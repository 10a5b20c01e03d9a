//! How deeply a record nests. arrow-json reads any depth without recursion, but the message
//! of a type error serializes the offending value recursively: a value nested 50,000 deep
//! where a field expects a string overflowed the decoding thread's stack and aborted the
//! process (a 356-byte gzip push did it). Records nested deeper than [`MAX_NESTING`] are
//! therefore dead letters before arrow-json sees them (measured with their width, by
//! [`super::width::measure`]); the fast path hands such records back rather than read them,
//! so both paths decide alike.

/// The deepest nesting of arrays and objects a record may have (its own object is level 1).
pub const MAX_NESTING: usize = 1000;

/// The reason a record nested deeper than [`MAX_NESTING`] is a dead letter.
pub fn reason() -> String {
    format!("JSON nested deeper than {MAX_NESTING} levels of arrays and objects")
}
