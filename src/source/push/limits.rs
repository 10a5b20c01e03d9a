//! What a push repo's requests in progress may hold at once: `max_concurrent` requests and
//! `max_in_flight` bytes. One set per repo for the life of the process, shared by the routes of
//! its tasks one after another: a request of an ended task still reading its body holds the
//! same budget as the next task's. (A set made per task let every restart after a failure, and
//! every reload, add a whole budget while the earlier task's slow bodies still held theirs.)

use std::sync::Arc;

use tokio::sync::Semaphore;

/// A repo's request slots and memory budget (in KiB).
#[derive(Debug)]
pub struct PushLimits {
    pub(super) permits: Arc<Semaphore>,
    pub(super) budget: Arc<Semaphore>,
    max_concurrent: usize,
    pub(super) max_in_flight: u64,
}

impl PushLimits {
    pub fn new(max_concurrent: usize, max_in_flight: u64) -> PushLimits {
        PushLimits {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            budget: Arc::new(Semaphore::new(kib(max_in_flight) as usize)),
            max_concurrent,
            max_in_flight,
        }
    }

    /// Whether these are the limits of these settings (a reload may change them: the next
    /// task then starts a set of its own).
    pub fn fits(&self, max_concurrent: usize, max_in_flight: u64) -> bool {
        (self.max_concurrent, self.max_in_flight) == (max_concurrent, max_in_flight)
    }
}

/// Bytes in KiB, rounded up, capped to what one semaphore call takes.
pub(super) fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as u64 >> 3) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_shared_until_their_settings_change() {
        let a = PushLimits::new(4, 1 << 20);
        assert!(a.fits(4, 1 << 20));
        assert!(!a.fits(4, 2 << 20) && !a.fits(5, 1 << 20));
        assert_eq!(a.budget.available_permits(), 1024);
        assert_eq!(a.permits.available_permits(), 4);
    }
}
