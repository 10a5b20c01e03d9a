//! What a caught panic said: the text of its payload (`panic!` gives a `&str` or a `String`).
//! Panics unwind (see docs/OPERATIONS.md, "Failures"), and the places that catch them report this.

/// The message of a panic payload, or "a panic" when it carries none.
pub fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}
