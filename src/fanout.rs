//! Independent jobs that mostly wait (store or broker round trips), run side by side on a
//! few scoped threads, taken in the order of their list; once one fails no further one is
//! started.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Store round trips made side by side inside a consumer group's rebalance (the group waits
/// on them): partitions' claims, roll-back checks, start records.
pub const REBALANCE_CALLS: usize = 16;

/// Runs `job` for each item of `items` on this thread and up to `threads - 1` more (named
/// `<name>-N`; a thread that cannot be started leaves its share to the others). After a job
/// fails, no further one starts. Returns each started job's result with its index, in index
/// order. A panic in a job is passed on.
pub fn each<T: Sync, R: Send, E: Send>(
    items: &[T],
    threads: usize,
    name: &str,
    job: impl Fn(&T) -> Result<R, E> + Sync,
) -> Vec<(usize, Result<R, E>)> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done = Mutex::new(Vec::with_capacity(items.len()));
    let work = || {
        while !failed.load(Ordering::Acquire) {
            let i = next.fetch_add(1, Ordering::AcqRel);
            let Some(item) = items.get(i) else {
                break;
            };
            let r = job(item);
            if r.is_err() {
                failed.store(true, Ordering::Release);
            }
            done.lock().unwrap_or_else(|p| p.into_inner()).push((i, r));
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..items.len().clamp(1, threads.max(1)))
            .filter_map(|n| {
                std::thread::Builder::new()
                    .name(format!("{name}-{n}"))
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        work();
        for h in helpers {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once_in_order() {
        let items: Vec<u32> = (0..100).collect();
        let out = each(&items, 8, "t", |x| Ok::<_, ()>(x * 2));
        let got: Vec<(usize, u32)> = out.into_iter().map(|(i, r)| (i, r.unwrap())).collect();
        let want: Vec<(usize, u32)> = (0..100).map(|i| (i as usize, i * 2)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn nothing_starts_after_a_failure_on_one_thread() {
        let items: Vec<u32> = (0..100).collect();
        let out = each(&items, 1, "t", |x| if *x == 3 { Err(*x) } else { Ok(*x) });
        assert_eq!(out.len(), 4);
        assert_eq!(out[3], (3, Err(3)));
    }

    #[test]
    fn no_items_no_jobs() {
        let out = each(&Vec::<u32>::new(), 8, "t", |x| Ok::<_, ()>(*x));
        assert!(out.is_empty());
    }
}
