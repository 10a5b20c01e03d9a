//! One repo as the admin routes see it, for the life of the process ([`RepoSlot`]): its
//! metrics, the task running now ([`Live`], attached while it runs), its last error, whether
//! it was stopped or paused through the API, and a push repo's request limits, which outlive
//! its tasks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::channel::Channel;
use crate::metrics::Metrics;
use crate::sink::control::Control;
use crate::source::push::http::PushApi;
use crate::source::push::limits::PushLimits;

/// What the routes act on while a repo's task runs.
pub struct Live {
    pub control: Arc<Control>,
    pub channel: Arc<Channel>,
    /// Stops this repo's task.
    pub stop: Arc<AtomicBool>,
    /// The push route of a push repo.
    pub push: Option<Arc<PushApi>>,
}

/// One repo as the admin routes see it, for the life of the process.
pub struct RepoSlot {
    /// The job name of the repo's task (`<job>.<repo>` in a job with several repos).
    pub job: String,
    pub metrics: Arc<Metrics>,
    pub(super) live: Mutex<Option<Live>>,
    /// Why the task last failed; cleared when it runs again.
    pub(super) error: Mutex<Option<String>>,
    /// Stopped through the API: the repo's task is not started again (by a reload or after a
    /// failure).
    pub(super) stopped: AtomicBool,
    /// Paused through the API: a task started again (reload, restart) starts paused.
    pub(super) paused: AtomicBool,
    /// A push repo's request slots and memory budget, kept from task to task.
    push_limits: Mutex<Option<Arc<PushLimits>>>,
}

impl std::fmt::Debug for RepoSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoSlot")
            .field("job", &self.job)
            .field("repo", &self.metrics.repo_name())
            .finish_non_exhaustive()
    }
}

impl RepoSlot {
    pub(super) fn new(job: String, metrics: Arc<Metrics>) -> RepoSlot {
        RepoSlot {
            job,
            metrics,
            live: Mutex::new(None),
            error: Mutex::new(None),
            stopped: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            push_limits: Mutex::new(None),
        }
    }

    /// The push limits of these settings: the ones the repo's earlier tasks used while the
    /// settings stay the same (their requests still in progress hold them too), else new ones.
    pub fn push_limits(&self, max_concurrent: usize, max_in_flight: u64) -> Arc<PushLimits> {
        let mut kept = self.push_limits.lock().unwrap_or_else(|p| p.into_inner());
        match kept.as_ref() {
            Some(l) if l.fits(max_concurrent, max_in_flight) => l.clone(),
            _ => kept
                .insert(Arc::new(PushLimits::new(max_concurrent, max_in_flight)))
                .clone(),
        }
    }

    /// The task runs: the routes act on `live` until [`RepoSlot::detach`]. A pause or stop
    /// asked for before is applied to it.
    pub fn attach(&self, live: Live) {
        // Read under the lock a request takes to reach the task: one that found no task had
        // set its flag before, so it is read here; one after finds this task.
        let mut slot = lock(&self.live);
        live.control
            .paused
            .store(self.paused.load(Ordering::Acquire), Ordering::Release);
        if self.stopped() {
            live.stop.store(true, Ordering::Release);
        }
        *slot = Some(live);
        drop(slot);
        *lock(&self.error) = None;
    }

    /// The task ended; its partitions' lag is no longer this process's to report.
    pub fn detach(&self) {
        *lock(&self.live) = None;
        self.metrics.forget_all();
    }

    /// The repo was stopped through the API.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The task failed with `error` (shown by `/v1/tasks` with URL queries removed: a store's
    /// error may carry a presigned URL).
    pub fn failed(&self, error: String) {
        *lock(&self.error) = Some(super::shown::error(&error));
    }

    /// A pause, resume or stop asked through the API: kept in the slot (a task started again
    /// inherits it; a stop also keeps a failed repo from being started again) and applied to
    /// the running task, under the lock a task attaches under: two requests at once leave the
    /// slot and the task alike (a pause and a resume interleaved left the task paused while
    /// the slot said running). A pause shows at once in the metrics, and a task ending
    /// meanwhile (which forgets its series) is not given it back.
    pub(super) fn act(&self, action: &str) {
        let live = lock(&self.live);
        match action {
            "pause" | "resume" => {
                let on = action == "pause";
                self.paused.store(on, Ordering::Release);
                if let Some(l) = live.as_ref() {
                    l.control.paused.store(on, Ordering::Release);
                    self.metrics.paused(on);
                }
            }
            _ => {
                self.stopped.store(true, Ordering::Release);
                if let Some(l) = live.as_ref() {
                    l.stop.store(true, Ordering::Release);
                }
            }
        }
    }

    pub(super) fn with_live<T>(&self, f: impl FnOnce(&Live) -> T) -> Option<T> {
        lock(&self.live).as_ref().map(f)
    }
}

/// A slot's lock, whatever panicked while it was held: the slot outlives its tasks, and a
/// panic under it (a route reading a task's channel whose lock a worker's panic poisoned)
/// made every later push, attach and detach of the repo panic until the process ended. What
/// it guards is whole at every step (an assignment of a value).
pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repo's next task takes the limits its earlier one used (whose slow bodies may still
    /// hold them), unless the settings changed. Before, each task made its own: every restart
    /// or reload added a whole `max_in_flight`.
    #[test]
    fn a_repos_tasks_share_its_push_limits() {
        let slot = RepoSlot::new("j".into(), Arc::new(Metrics::new("r")));
        let first = slot.push_limits(2, 1 << 20);
        let next = slot.push_limits(2, 1 << 20);
        assert!(Arc::ptr_eq(&first, &next));
        let changed = slot.push_limits(2, 2 << 20);
        assert!(!Arc::ptr_eq(&first, &changed));
        assert!(Arc::ptr_eq(&changed, &slot.push_limits(2, 2 << 20)));
    }

    /// A panic while the slot's lock is held (a route's read of a task) leaves the slot
    /// usable: before, every later failure report, attach and push of the repo panicked on
    /// the poisoned lock until the process ended.
    #[test]
    fn a_panic_under_the_slots_lock_leaves_it_usable() {
        let slot = Arc::new(RepoSlot::new("j".into(), Arc::new(Metrics::new("r"))));
        let s = slot.clone();
        let panicked = std::thread::spawn(move || {
            s.with_live(|_| ());
            let _held = s.error.lock().unwrap();
            panic!("a route panicked");
        })
        .join();
        assert!(panicked.is_err() && slot.error.is_poisoned());
        slot.failed("the task failed".into());
        assert!(lock(&slot.error).is_some());
        slot.detach();
        assert!(slot.with_live(|_| ()).is_none());
    }
}
