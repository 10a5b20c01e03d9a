//! Consumer lag without blocking the poll loop. The high watermarks of the owned partitions
//! are fetched on a thread of its own, with a client of its own (the same brokers and
//! settings, no group), every few seconds; the reader only reads what that thread last found.
//! A fetch can wait seconds when a partition's leader is down: on the reader thread, many such
//! waits in a row would stop the member from polling until the group evicted it.
//!
//! The end of a run waits for nothing here: stopping wakes the thread at once (a condition
//! variable, not a sleep loop), the source asks for it before its own consumer is destroyed so
//! the two teardowns overlap, and the client has no group id, so it has no coordinator to leave
//! (with one, its teardown took about 0.1 s).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// How often the watermarks are fetched.
const EVERY: Duration = Duration::from_secs(5);
/// How often the brokers are asked for metadata when no partition is watched.
const QUIET_EVERY: Duration = Duration::from_secs(60);
/// The longest one fetch may wait.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// A watermark (none fetched yet) and since when it is known.
type Known = (Option<i64>, Instant);

#[derive(Default)]
struct Shared {
    /// (topic, partition) of the partitions to watch.
    wanted: Mutex<Vec<(String, i32)>>,
    /// Their high watermarks, as last fetched (none yet), and since when each is known: the
    /// last fetch that answered, or when it was first watched.
    highs: Mutex<HashMap<(String, i32), Known>>,
    /// Stamped at each answer of the brokers (a watermark, or metadata when no partition
    /// is watched).
    contact: crate::metrics::Contact,
    /// Set once, to stop the thread; `wake` tells it.
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn stopped(&self) -> MutexGuard<'_, bool> {
        self.stop.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The watermark thread; stopped when dropped.
pub(super) struct LagWatch {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LagWatch {
    /// Starts the thread with a client made from `cfg` (the consumer's settings; group
    /// settings and the group id are left out, since this client never joins). `None` if it cannot start: lag
    /// is then not reported.
    pub fn start(cfg: &ClientConfig) -> Option<LagWatch> {
        let mut own = ClientConfig::new();
        for (k, v) in cfg.config_map() {
            if !k.starts_with("group.") && k != "partition.assignment.strategy" {
                own.set(k, v);
            }
        }
        let client: BaseConsumer = match own.create() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the lag client; lag is not reported");
                return None;
            }
        };
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-lag".into())
            .spawn(move || watch(&client, &s))
            .ok()?;
        Some(LagWatch {
            shared,
            thread: Some(thread),
        })
    }

    /// The partitions to watch from now on.
    pub fn want(&self, partitions: Vec<(String, i32)>) {
        *self.shared.wanted.lock().unwrap_or_else(|p| p.into_inner()) = partitions;
    }

    /// Asks the thread to stop (and destroy its client) without waiting for it.
    pub fn stop(&self) {
        *self.shared.stopped() = true;
        self.shared.wake.notify_all();
    }

    /// When the brokers last answered this thread.
    pub fn contact(&self) -> crate::metrics::Contact {
        self.shared.contact.clone()
    }

    /// The last high watermark found for a partition.
    pub fn high(&self, topic: &str, partition: i32) -> Option<i64> {
        self.shared
            .highs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic.to_string(), partition))
            .and_then(|(high, _)| *high)
    }

    /// Whether a watched partition's high watermark has not been fetched for `longer`: its
    /// lag shows an old value (its leader unreachable from here, the topic's read permission
    /// taken away).
    pub fn stale(&self, topic: &str, partition: i32, longer: Duration) -> bool {
        self.shared
            .highs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic.to_string(), partition))
            .is_some_and(|(_, at)| at.elapsed() > longer)
    }
}

impl Drop for LagWatch {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(client: &BaseConsumer, s: &Shared) {
    loop {
        let stopped = s.stopped();
        let (stopped, _) = s
            .wake
            .wait_timeout_while(stopped, EVERY, |stop| !*stop)
            .unwrap_or_else(|p| p.into_inner());
        if *stopped {
            return;
        }
        drop(stopped);
        let wanted = s.wanted.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // A member without partitions still tells brokers that answer from ones that do not
        // (the cluster's metadata, at most once a minute: on a large cluster it is large).
        if wanted.is_empty()
            && s.contact.silent_for() >= QUIET_EVERY
            && client.fetch_metadata(None, FETCH_TIMEOUT).is_ok()
        {
            s.contact.heard();
        }
        // Partitions no longer watched go; one never fetched is unknown since it was first
        // watched.
        {
            let mut highs = s.highs.lock().unwrap_or_else(|p| p.into_inner());
            highs.retain(|key, _| wanted.contains(key));
            for key in &wanted {
                highs.entry(key.clone()).or_insert((None, Instant::now()));
            }
        }
        // Each watermark is kept as it is fetched (partitions whose leader does not answer
        // take the fetch's timeout each, and must not age the others' meanwhile); one that
        // could not be fetched keeps its last value and age: a partition must not drop out of
        // the lag (and of `task::stall`'s watch) for one slow answer.
        for (topic, partition) in &wanted {
            if *s.stopped() {
                return;
            }
            if let Ok((_, high)) = client.fetch_watermarks(topic, *partition, FETCH_TIMEOUT) {
                s.contact.heard();
                s.highs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((topic.clone(), *partition), (Some(high), Instant::now()));
            }
        }
    }
}
