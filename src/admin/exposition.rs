//! The metrics exposition as the listener serves it, encoded again only when the last one is
//! older than nineteen times what encoding it took (capped at [`MAX_AGE`]). `GET /metrics`
//! needs no token and encodes every repo's series (thousands of partitions make a
//! megabyte); without this, a client asking for it back to back kept an admin thread
//! encoding and slowed pushes and probes. Now encoding takes at most about a twentieth of one
//! core however often it is asked for, and an answer is at most that old: 1.9 ms after an
//! encoding of 0.1 ms, never more than a second. Requests that come while an encoding runs
//! wait for it and share it.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The oldest exposition served.
pub(super) const MAX_AGE: Duration = Duration::from_secs(1);
/// An exposition is served for this many times what encoding it took.
const REUSE: u32 = 19;

/// One encoding: OpenMetrics text, and the classic text format made from it when first asked.
pub(super) struct Encoded {
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

/// The last encoding.
#[derive(Default)]
pub(super) struct Recent(Mutex<Option<Arc<Encoded>>>);

impl Recent {
    /// The last exposition if still fresh, else a new one from `encode`.
    pub(super) fn get(&self, encode: impl FnOnce() -> String) -> Arc<Encoded> {
        self.get_with(Instant::now, encode)
    }

    /// [`Recent::get`] with the clock given (read before and after encoding).
    fn get_with(
        &self,
        clock: impl Fn() -> Instant,
        encode: impl FnOnce() -> String,
    ) -> Arc<Encoded> {
        // Held while encoding: a request that comes meanwhile waits and shares the result
        // instead of encoding beside it.
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let start = clock();
        if let Some(e) = last.as_ref().filter(|e| e.fresh(start)) {
            return e.clone();
        }
        let open = encode();
        let end = clock();
        let e = Arc::new(Encoded {
            at: end,
            took: end.saturating_duration_since(start),
            open,
            classic: OnceLock::new(),
        });
        *last = Some(e.clone());
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
