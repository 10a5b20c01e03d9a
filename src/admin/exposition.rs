//! The metrics exposition as the listener serves it, encoded again only when the last one is
//! older than nineteen times what encoding it took (capped at [`MAX_AGE`]). `GET /metrics`
//! needs no token and encodes every repo's series (thousands of partitions make a
//! megabyte); without this, a client asking for it back to back kept an admin thread
//! encoding and slowed pushes and probes. Now encoding takes at most about a twentieth of one
//! core however often it is asked for, and an answer is at most that old: 1.9 ms after an
//! encoding of 0.1 ms, never more than a second (or than an encoding in progress). One
//! encoding runs at a time; a request that comes meanwhile is answered with the last one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The oldest exposition served.
pub(super) const MAX_AGE: Duration = Duration::from_secs(1);
/// An exposition is served for this many times what encoding it took.
const REUSE: u32 = 19;

/// One encoding: OpenMetrics text, and the classic text format made from it when first asked.
pub(super) struct Encoded {
    /// The generation of [`Recent`] it was encoded in.
    generation: u64,
    at: Instant,
    took: Duration,
    open: String,
    classic: OnceLock<String>,
}

impl Encoded {
    /// The OpenMetrics text.
    pub(super) fn open(&self) -> &str {
        &self.open
    }

    /// The classic Prometheus text format (converted once per encoding).
    pub(super) fn classic(&self) -> &str {
        self.classic
            .get_or_init(|| crate::metrics::classic_text(&self.open))
    }

    /// Whether it may still be served at `now`.
    fn fresh(&self, now: Instant) -> bool {
        let reuse = self.took.saturating_mul(REUSE).min(MAX_AGE);
        now.saturating_duration_since(self.at) < reuse
    }
}

/// The last encoding, the lock an encoding runs under, and the generation: an encoding of
/// an earlier one is not served (see [`Recent::invalidate`]).
#[derive(Default)]
pub(super) struct Recent {
    last: Mutex<Option<Arc<Encoded>>>,
    encoding: Mutex<()>,
    generation: AtomicU64,
}

impl Recent {
    /// The last exposition if still fresh, else a new one from `encode`.
    pub(super) fn get(&self, encode: impl FnOnce() -> String) -> Arc<Encoded> {
        self.get_with(Instant::now, encode)
    }

    /// What changed before this call shows in every answer after it (an action of the API:
    /// a pause is shown as soon as it is answered), not only once the last one is stale.
    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// [`Recent::get`] with the clock given (read before and after encoding).
    fn get_with(
        &self,
        clock: impl Fn() -> Instant,
        encode: impl FnOnce() -> String,
    ) -> Arc<Encoded> {
        let now = || self.generation.load(Ordering::SeqCst);
        let last = || {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
            last.filter(|e| e.generation == now())
        };
        if let Some(e) = last().filter(|e| e.fresh(clock())) {
            return e;
        }
        // One encoding at a time. A request that comes while one runs takes the last answer
        // rather than wait for it: waiting would hold one of the listener's two threads.
        let _encoding = match self.encoding.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => match last() {
                Some(e) => return e,
                None => self.encoding.lock().unwrap_or_else(|p| p.into_inner()),
            },
        };
        // Another request may have encoded since this one looked.
        let start = clock();
        if let Some(e) = last().filter(|e| e.fresh(start)) {
            return e;
        }
        let generation = now();
        let open = encode();
        let end = clock();
        let e = Arc::new(Encoded {
            generation,
            at: end,
            took: end.saturating_duration_since(start),
            open,
            classic: OnceLock::new(),
        });
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    /// A clock that moves only when told: each reading returns the time set last.
    struct Clock {
        base: Instant,
        now: Cell<Duration>,
    }

    impl Clock {
        fn read(&self) -> Instant {
            self.base + self.now.get()
        }
    }

    #[test]
    fn an_exposition_is_reused_for_nineteen_times_what_it_took_and_at_most_a_second() {
        let clock = Clock {
            base: Instant::now(),
            now: Cell::new(Duration::ZERO),
        };
        let recent = Recent::default();
        let encodings = RefCell::new(0);
        // An encoding that takes `took` on the clock.
        let get = |took: Duration| {
            recent.get_with(
                || clock.read(),
                || {
                    *encodings.borrow_mut() += 1;
                    clock.now.set(clock.now.get() + took);
                    format!("n {}\n", encodings.borrow())
                },
            )
        };
        let ms = Duration::from_millis;
        assert_eq!(get(ms(2)).open(), "n 1\n");
        // Asked for again and again within 38 ms of its end: the same answer.
        for _ in 0..100 {
            clock.now.set(clock.now.get() + Duration::from_micros(370));
            assert_eq!(get(ms(2)).open(), "n 1\n", "re-encoded within 19 × 2 ms");
        }
        assert_eq!(*encodings.borrow(), 1);
        clock.now.set(ms(2) + ms(38));
        assert_eq!(get(ms(2)).open(), "n 2\n", "38 ms after it: encoded again");
        // A slow encoding (a huge registry) is reused for a second at most, not 19.
        assert_eq!(get(ms(0)).open(), "n 2\n");
        clock.now.set(clock.now.get() + ms(100));
        let slow = get(ms(500));
        assert_eq!(slow.open(), "n 3\n");
        clock.now.set(clock.now.get() + ms(999));
        assert_eq!(get(ms(500)).open(), "n 3\n");
        clock.now.set(clock.now.get() + ms(1));
        assert_eq!(get(ms(500)).open(), "n 4\n", "a second old: encoded again");
    }

    #[test]
    fn an_invalidated_exposition_is_not_served_again() {
        let at = Instant::now();
        let clock = Cell::new(at);
        let recent = Recent::default();
        let n = Cell::new(0);
        let get = || {
            recent.get_with(
                || clock.get(),
                || {
                    n.set(n.get() + 1);
                    clock.set(clock.get() + Duration::from_millis(10));
                    format!("{}", n.get())
                },
            )
        };
        assert_eq!(get().open(), "1");
        assert_eq!(get().open(), "1", "fresh for 190 ms");
        recent.invalidate();
        assert_eq!(get().open(), "2", "invalidated: encoded again");
        assert_eq!(get().open(), "2");
    }

    #[test]
    fn the_classic_text_is_made_once_per_encoding() {
        let at = Instant::now();
        let recent = Recent::default();
        let text = || "# TYPE x counter\nx_total 1\n# EOF\n".to_string();
        // The clock stands still: an encoding that took no time is fresh for none.
        let e = recent.get_with(|| at, text);
        assert!(!e.classic().contains("# EOF"));
        let a: *const str = e.classic();
        let b: *const str = e.classic();
        assert_eq!(a, b, "converted once");
        let again = recent.get_with(|| at, text);
        assert!(
            !Arc::ptr_eq(&e, &again),
            "an encoding that took no time is not reused"
        );
    }
}
