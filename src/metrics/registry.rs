//! The metric families of a process, registered once under the `sluice` prefix with their
//! help texts.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

use super::{freshness, MetricSet};

impl Default for MetricSet {
    fn default() -> Self {
        let mut m = MetricSet {
            records_in: Family::default(),
            rows_out: Family::default(),
            dead_letters: Family::default(),
            dead_letters_found: Family::default(),
            offsets_skipped: Family::default(),
            bytes_written: Family::default(),
            files_committed: Family::default(),
            commit_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            channel_bytes: Family::default(),
            channel_batches: Family::default(),
            sink_retries: Family::default(),
            task_state: Family::default(),
            task_paused: Family::default(),
            partitions_without_leader: Family::default(),
            partitions_refused: Family::default(),
            partitions_lag_unknown: Family::default(),
            lag: Family::default(),
            position: Family::default(),
            push_requests: Family::default(),
            push_rows: Family::default(),
            push_in_flight: Family::default(),
            rows_filtered: Family::default(),
            rows_dropped: Family::default(),
            task_restarts: Family::default(),
            group_assignments: Family::default(),
            group_assignment_seconds: Family::new_with_constructor(|| {
                // 5 ms to 655 s: past the group's rebalance timeout (`max.poll.interval.ms`,
                // 300 s by default), after which the member is dropped.
                Histogram::new(exponential_buckets(0.005, 2.0, 18))
            }),
            group_rejoins: Family::default(),
            reloads: Family::default(),
            uncommitted_age: Family::default(),
            source_silent: Family::default(),
            process_start: Gauge::default(),
            pending: freshness::Pending::default(),
            contacts: Mutex::default(),
            shown: Mutex::default(),
            registry: Registry::with_prefix("sluice"),
        };
        // The process's, once: a set made again (a task of its own, a reload) keeps it.
        static STARTED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
        m.process_start.set(*STARTED.get_or_init(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        }));
        m.registry.register(
            "records_in",
            "Records read and decoded (rows and dead letters), before commit",
            m.records_in.clone(),
        );
        m.registry
            .register("rows_out", "Rows in committed files", m.rows_out.clone());
        m.registry.register(
            "dead_letters",
            "Records committed as dead letters, by reason class (malformed, type, missing, shape, metadata, other)",
            m.dead_letters.clone(),
        );
        m.registry.register(
            "dead_letters_found",
            "Dead letters as decoding and stages find them, before commit, by reason class (a record replayed after a failed commit or a crash counts again)",
            m.dead_letters_found.clone(),
        );
        m.registry.register(
            "offsets_skipped",
            "Kafka offsets never exported because the broker no longer held them when the partition resumed (source.on_gap = \"skip\")",
            m.offsets_skipped.clone(),
        );
        m.registry.register(
            "bytes_written",
            "Bytes of committed data files",
            m.bytes_written.clone(),
        );
        m.registry.register(
            "files_committed",
            "Data files committed",
            m.files_committed.clone(),
        );
        m.registry.register(
            "commit_seconds",
            "Time to commit one source partition (files, then checkpoint)",
            m.commit_seconds.clone(),
        );
        m.registry.register(
            "channel_bytes",
            "Bytes held by the channel",
            m.channel_bytes.clone(),
        );
        m.registry.register(
            "channel_batches",
            "Batches held by the channel",
            m.channel_batches.clone(),
        );
        m.registry.register(
            "sink_retries",
            "Attempts to write again after a failed write or commit (each replay from the checkpoint, and each retry while the destination stays unavailable)",
            m.sink_retries.clone(),
        );
        m.registry.register(
            "task_state",
            "1 for the task's current state",
            m.task_state.clone(),
        );
        m.registry.register(
            "task_paused",
            "1 while the task is paused through the admin API",
            m.task_paused.clone(),
        );
        m.registry.register(
            "partitions_without_leader",
            "Kafka partitions handed to the task and not taken yet: their leader (or the group's offset) does not answer",
            m.partitions_without_leader.clone(),
        );
        m.registry.register(
            "partitions_refused",
            "Kafka partitions the task refused, at their assignment or while read (a gap under on_gap = fail, a re-created log): not read until handed over again or the job reloads",
            m.partitions_refused.clone(),
        );
        m.registry.register(
            "partitions_lag_unknown",
            "Kafka partitions read whose high watermark has not been fetched for a minute: their lag shows its last value",
            m.partitions_lag_unknown.clone(),
        );
        m.registry.register(
            "consumer_lag",
            "Records not yet read: high watermark (a bounded run's end, if lower) minus next offset",
            m.lag.clone(),
        );
        m.registry.register(
            "consumer_position",
            "The next offset to read (unchanged while records wait: a stalled partition)",
            m.position.clone(),
        );
        m.registry.register(
            "push_requests",
            "Push requests answered, by HTTP status (503: refused for room)",
            m.push_requests.clone(),
        );
        m.registry.register(
            "push_rows",
            "Rows of acknowledged push requests",
            m.push_rows.clone(),
        );
        m.registry.register(
            "push_in_flight_bytes",
            "Memory reserved by push requests in progress (at most source.max_in_flight)",
            m.push_in_flight.clone(),
        );
        m.registry.register(
            "rows_filtered",
            "Rows removed by filter stages, and Kafka tombstones passed over (source.tombstones = \"skip\"); counted when decoded",
            m.rows_filtered.clone(),
        );
        m.registry.register(
            "rows_dropped",
            "Rows a stage failed on, dropped by on_error = drop (counted when decoded)",
            m.rows_dropped.clone(),
        );
        m.registry.register(
            "task_restarts",
            "Times a failed task was started again (a job with several repos restarts a failed repo's task)",
            m.task_restarts.clone(),
        );
        m.registry.register(
            "group_assignments",
            "Assignments of partitions to this member by its consumer group (one per rebalance that gave it any)",
            m.group_assignments.clone(),
        );
        m.registry.register(
            "group_assignment_seconds",
            "Time an assignment took in the destination (claims, start records, the look at backfills), while the group waits on this member",
            m.group_assignment_seconds.clone(),
        );
        m.registry.register(
            "group_rejoins",
            "Times this member joined its group again because a partition another owner fenced stayed assigned to it",
            m.group_rejoins.clone(),
        );
        m.registry.register(
            "reloads",
            "SIGHUP reloads by outcome: applied (the task restarted with the reloaded job), refused (the task runs on unchanged) or fell_back (an applied one failed at once; the previous job runs again)",
            m.reloads.clone(),
        );
        m.registry.register(
            "uncommitted_age_seconds",
            "Per partition, how long ago its oldest record read and not yet committed was read (to within 30 s; no series when everything read is committed)",
            m.uncommitted_age.clone(),
        );
        m.registry.register(
            "source_silent_seconds",
            "How long since the source last heard from its brokers (Kafka: watermarks or metadata fetched; no series for other sources)",
            m.source_silent.clone(),
        );
        m.registry.register(
            "process_start_time_seconds",
            "When this process started (seconds since the epoch); a change is a restart",
            m.process_start.clone(),
        );
        m
    }
}
