//! The table's log store (the Delta kernel's, over the destination's object store) and the log
//! checkpoints written on it: every `checkpoint_every` versions, on a thread of their own, the
//! entries past the log's retention cleaned up after, as Delta writers do.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use delta_kernel::snapshot::Snapshot;
use delta_kernel::Engine;
use deltalake_core::logstore::{default_logstore, LogStoreRef, StorageConfig};

use super::DeltaTable;
use crate::commit::now_ms;
use crate::store::Destination;
use crate::table::TableError;

impl DeltaTable {
    /// After version `v` landed: a log checkpoint every `checkpoint_every` versions, on a
    /// thread of its own (a reader that finds none replays the JSON entries).
    pub(super) fn after(&self, v: u64) {
        if !v.is_multiple_of(self.checkpoint_every)
            || self.checkpointing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (log, engine, busy, url, runtime) = (
            self.log.clone(),
            self.engine.clone(),
            self.checkpointing.clone(),
            self.url.clone(),
            self.runtime.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("delta-checkpoint".into())
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let s = Snapshot::builder_for(log.root_url().as_str())
                        .at_version(v)
                        .build(engine.as_ref())
                        .map_err(|e| e.to_string())?;
                    s.checkpoint(engine.as_ref(), None)
                        .map_err(|e| e.to_string())?;
                    // Entries older than the table's log retention (30 days unless set) and
                    // than a checkpoint go, as Delta writers do, so the log stays bounded.
                    let props = s.table_properties();
                    if props.enable_expired_log_cleanup.unwrap_or(true) {
                        let keep = props
                            .log_retention_duration
                            .unwrap_or(Duration::from_secs(30 * 24 * 3600));
                        let cutoff = now_ms() - keep.as_millis() as i64;
                        let removed = runtime
                            .block_on(deltalake_core::checkpoints::cleanup_expired_logs_for(
                                v,
                                log.as_ref(),
                                cutoff,
                                None,
                            ))
                            .map_err(|e| e.to_string())?;
                        if removed > 0 {
                            tracing::info!(table = %url, removed, "removed log entries past the table's log retention");
                        }
                    }
                    Ok::<_, String>(())
                }))
                .unwrap_or_else(|p| Err(format!("panicked: {}", crate::panics::message(&p))));
                match r {
                    Ok(_) => tracing::info!(table = %url, version = v, "wrote a Delta log checkpoint"),
                    Err(e) => {
                        tracing::warn!(table = %url, version = v, error = %e, "could not write a Delta log checkpoint")
                    }
                }
                busy.store(false, Ordering::Release);
            });
        match spawned {
            Ok(h) => {
                *self
                    .checkpointer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(h)
            }
            Err(_) => self.checkpointing.store(false, Ordering::Release),
        }
    }

    /// Waits for a log checkpoint being written (a short-lived process, such as `compact`,
    /// would otherwise end before it).
    pub fn close(&self) {
        let h = self
            .checkpointer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }
}

/// The table's log store at `dest`, its engine, and its URL.
pub(super) fn log_of(
    dest: &Destination,
    runtime: &tokio::runtime::Handle,
) -> Result<(LogStoreRef, Arc<dyn Engine>, url::Url), TableError> {
    let (store, location) = dest.object_store()?;
    let prefix = object_store::path::Path::from_url_path(location.path()).map_err(|e| {
        TableError::Delta {
            url: dest.url().to_string(),
            reason: e.to_string(),
        }
    })?;
    let prefixed: Arc<dyn object_store::ObjectStore> = Arc::new(
        object_store::prefix::PrefixStore::new(store.clone(), prefix),
    );
    let log = default_logstore(prefixed, store, &location, &StorageConfig::default());
    let engine = {
        let _in = runtime.enter();
        log.engine(None)
    };
    Ok((log, engine, location))
}

/// Writes the Delta kernel's checkpoint of version `v` of the table at `dest`, as another
/// writer would (tests).
#[cfg(test)]
pub(crate) fn kernel_checkpoint(dest: &Destination, v: u64, runtime: &tokio::runtime::Handle) {
    let (_, engine, location) = log_of(dest, runtime).unwrap();
    Snapshot::builder_for(location.as_str())
        .at_version(v)
        .build(engine.as_ref())
        .unwrap()
        .checkpoint(engine.as_ref(), None)
        .unwrap();
}
