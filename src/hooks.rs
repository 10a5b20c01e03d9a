//! Named points inside protocol steps where a unit test runs other writers, as if the thread
//! were paused there (tests only): `set` a point's closure, and the next time this thread
//! reaches the point it runs, once. The closure runs with the hook already taken, so steps it
//! makes do not run it again.

use std::cell::RefCell;
use std::collections::HashMap;

type Hook = Box<dyn FnOnce()>;

thread_local! {
    static HOOKS: RefCell<HashMap<&'static str, Hook>> = RefCell::new(HashMap::new());
}

/// Runs `f` once, the next time this thread reaches point `name`.
pub fn set(name: &'static str, f: impl FnOnce() + 'static) {
    HOOKS.with(|h| h.borrow_mut().insert(name, Box::new(f)));
}

/// Forgets point `name`'s closure if it did not run.
pub fn clear(name: &'static str) {
    HOOKS.with(|h| h.borrow_mut().remove(name));
}

/// Point `name`: its closure, if one is set.
pub fn at(name: &'static str) {
    if let Some(f) = HOOKS.with(|h| h.borrow_mut().remove(name)) {
        f();
    }
}

/// Point `name` as a choice: runs its closure and answers true if one is set (a step the test
/// asks for there, as a write that lands before the one that reports), else false.
pub fn taken(name: &'static str) -> bool {
    match HOOKS.with(|h| h.borrow_mut().remove(name)) {
        Some(f) => {
            f();
            true
        }
        None => false,
    }
}
