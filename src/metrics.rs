//! Prometheus metrics of a task (prometheus-client; served at `GET /metrics` by `admin.rs`),
//! per repo and source partition: records in, rows out, dead letters, bytes and files
//! committed, commit latency, channel fill, sink retries, task state, consumer lag and
//! position, consumer group assignments and rejoins. Every series of a partition disappears
//! when a rebalance takes the partition away (its new owner reports it; with topics matched
//! by a pattern, partitions of topics that come and go would otherwise pile up). The repos of one job share one
//! registry ([`MetricSet`]), so one exposition holds every repo's series.

use std::sync::{Arc, Mutex};
use std::time::Instant;

mod freshness;
mod registry;
pub use freshness::Contact;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepoLabels {
    repo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabels {
    repo: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    repo: String,
    partition: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    repo: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    repo: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    repo: String,
    state: String,
}

/// What a commit adds to the counters.
#[derive(Debug, Clone, Default)]
pub struct CommitStats {
    pub rows: u64,
    /// Dead letters by reason class.
    pub dead_letters: Vec<(&'static str, u64)>,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// The metric families of a process, every repo's series in one registry.
pub struct MetricSet {
    registry: Registry,
    records_in: Family<PartLabels, Counter>,
    rows_out: Family<PartLabels, Counter>,
    dead_letters: Family<ReasonLabels, Counter>,
    dead_letters_found: Family<ReasonLabels, Counter>,
    offsets_skipped: Family<PartLabels, Counter>,
    bytes_written: Family<PartLabels, Counter>,
    files_committed: Family<PartLabels, Counter>,
    commit_seconds: Family<RepoLabels, Histogram>,
    channel_bytes: Family<RepoLabels, Gauge>,
    channel_batches: Family<RepoLabels, Gauge>,
    sink_retries: Family<RepoLabels, Counter>,
    task_state: Family<StateLabels, Gauge>,
    task_paused: Family<RepoLabels, Gauge>,
    partitions_without_leader: Family<RepoLabels, Gauge>,
    partitions_refused: Family<RepoLabels, Gauge>,
    partitions_lag_unknown: Family<RepoLabels, Gauge>,
    lag: Family<PartLabels, Gauge>,
    position: Family<PartLabels, Gauge>,
    push_requests: Family<CodeLabels, Counter>,
    push_rows: Family<RepoLabels, Counter>,
    push_in_flight: Family<RepoLabels, Gauge>,
    rows_filtered: Family<RepoLabels, Counter>,
    rows_dropped: Family<RepoLabels, Counter>,
    task_restarts: Family<RepoLabels, Counter>,
    group_assignments: Family<RepoLabels, Counter>,
    group_assignment_seconds: Family<RepoLabels, Histogram>,
    group_rejoins: Family<RepoLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    uncommitted_age: Family<PartLabels, Gauge>,
    source_silent: Family<RepoLabels, Gauge>,
    process_start: Gauge,
    /// What `uncommitted_age` and `source_silent` are computed from when read.
    pending: freshness::Pending,
    contacts: Mutex<std::collections::HashMap<String, Contact>>,
    /// The partitions with an `uncommitted_age` series.
    shown: Mutex<std::collections::HashSet<PartLabels>>,
}

/// The metrics of one repo's task: its series in a (possibly shared) [`MetricSet`].
pub struct Metrics {
    repo: String,
    set: Arc<MetricSet>,
    /// Partitions with a lag series (also in `seen`).
    lagging: Mutex<std::collections::BTreeSet<String>>,
    /// Partitions with any series (see [`Metrics::keep_only`]).
    seen: Mutex<std::collections::BTreeSet<String>>,
    /// The state shown as 1 (the others are 0).
    state: Mutex<String>,
    /// The last commits, newest last (the status page shows them).
    recent: Mutex<std::collections::VecDeque<Commit>>,
}

/// One commit as the status page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Commit {
    pub partition: String,
    pub rows: u64,
    pub dead_letters: u64,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// When it stood (ms since the epoch).
    pub at_ms: i64,
}

/// How many commits `Metrics::recent_commits` keeps.
const RECENT: usize = 20;

const STATES: [&str; 6] = [
    "new",
    "restoring",
    "running",
    "stopping",
    "stopped",
    "failed",
];

impl MetricSet {
    /// The OpenMetrics text exposition of every repo's series.
    pub fn encode(&self) -> String {
        self.refresh(Instant::now());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl MetricSet {
    /// The gauges measured when read (see [`freshness`]).
    fn refresh(&self, now: Instant) {
        let ages = self.pending.ages(now);
        let held: std::collections::HashSet<PartLabels> = ages
            .iter()
            .map(|((repo, partition), _)| PartLabels {
                repo: repo.clone(),
                partition: partition.clone(),
            })
            .collect();
        // Series of partitions whose records are all committed go (a family lists its
        // series only through encoding, so the ones shown before are kept beside the ages).
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        for gone in shown.difference(&held) {
            self.uncommitted_age.remove(gone);
        }
        for ((repo, partition), age) in ages {
            let l = PartLabels { repo, partition };
            self.uncommitted_age
                .get_or_create(&l)
                .set(age.as_secs() as i64);
        }
        *shown = held;
        drop(shown);
        let contacts = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        for (repo, c) in contacts.iter() {
            let l = RepoLabels { repo: repo.clone() };
            self.source_silent
                .get_or_create(&l)
                .set(c.silent_for().as_secs() as i64);
        }
    }
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics exposition, for clients that do
/// not ask for OpenMetrics (curl, `promtool check metrics`): a counter family's HELP and TYPE
/// take its samples' `_total` name, and `# UNIT` and `# EOF` lines go. Samples are the same.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {rest}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

impl Metrics {
    /// A repo's metrics in a registry of their own.
    pub fn new(repo: &str) -> Metrics {
        Self::in_set(Arc::new(MetricSet::default()), repo)
    }

    /// A repo's metrics in `set`, shared with other repos.
    pub fn in_set(set: Arc<MetricSet>, repo: &str) -> Metrics {
        let m = Metrics {
            repo: repo.to_string(),
            set,
            lagging: Mutex::default(),
            seen: Mutex::default(),
            state: Mutex::new("new".into()),
            recent: Mutex::default(),
        };
        m.set_state("new");
        // Series that alerts compare over a window exist from the start, at 0: a first commit,
        // retry or restart then counts as an increase (a series born at 1 would not).
        let repo = m.repo();
        drop(m.set.commit_seconds.get_or_create(&repo));
        drop(m.set.sink_retries.get_or_create(&repo));
        drop(m.set.task_restarts.get_or_create(&repo));
        drop(m.set.group_rejoins.get_or_create(&repo));
        for outcome in ["refused", "fell_back"] {
            drop(m.set.reloads.get_or_create(&ReloadLabels {
                repo: m.repo.clone(),
                outcome: outcome.to_string(),
            }));
        }
        m
    }

    pub fn repo_name(&self) -> &str {
        &self.repo
    }

    pub fn filtered(&self, n: u64) {
        if n > 0 {
            self.set.rows_filtered.get_or_create(&self.repo()).inc_by(n);
        }
    }

    pub fn dropped(&self, n: u64) {
        if n > 0 {
            self.set.rows_dropped.get_or_create(&self.repo()).inc_by(n);
        }
    }

    /// Push requests in progress reserved `delta` bytes more (or, negative, gave them back).
    pub fn push_in_flight(&self, delta: i64) {
        self.set
            .push_in_flight
            .get_or_create(&self.repo())
            .inc_by(delta);
    }

    /// A push request was answered with `code`; `rows` of it were accepted.
    pub fn pushed(&self, code: u16, rows: u64) {
        self.set
            .push_requests
            .get_or_create(&CodeLabels {
                repo: self.repo.clone(),
                code: code.to_string(),
            })
            .inc();
        if rows > 0 {
            self.set.push_rows.get_or_create(&self.repo()).inc_by(rows);
        }
    }

    fn part(&self, partition: &str) -> PartLabels {
        PartLabels {
            repo: self.repo.clone(),
            partition: partition.to_string(),
        }
    }

    fn repo(&self) -> RepoLabels {
        RepoLabels {
            repo: self.repo.clone(),
        }
    }

    /// `partition` has series now.
    fn saw(&self, partition: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains(partition) {
            seen.insert(partition.to_string());
        }
    }

    pub fn records_in(&self, partition: &str, n: u64) {
        self.saw(partition);
        self.set
            .records_in
            .get_or_create(&self.part(partition))
            .inc_by(n);
    }

    /// Records of `partition` up to position `end` (exclusive) were read now.
    pub fn read_up_to(&self, partition: &str, end: u64) {
        self.set
            .pending
            .read((&self.repo, partition), end, Instant::now());
    }

    /// `partition` is committed up to position `next` (exclusive).
    pub fn committed_up_to(&self, partition: &str, next: u64) {
        self.set.pending.committed((&self.repo, partition), next);
    }

    /// The task's source stamps `contact` when it hears from its brokers.
    pub fn source_contact(&self, contact: Contact) {
        let mut contacts = self.set.contacts.lock().unwrap_or_else(|p| p.into_inner());
        contacts.insert(self.repo.clone(), contact);
    }

    pub fn offsets_skipped(&self, partition: &str, n: u64) {
        self.saw(partition);
        self.set
            .offsets_skipped
            .get_or_create(&self.part(partition))
            .inc_by(n);
    }

    /// Dead letters found in one decoded item, by reason class.
    pub fn dead_letters_found(&self, partition: &str, dead: &[crate::decode::DeadLetter]) {
        if !dead.is_empty() {
            self.saw(partition);
        }
        for d in dead {
            self.set
                .dead_letters_found
                .get_or_create(&ReasonLabels {
                    repo: self.repo.clone(),
                    partition: partition.to_string(),
                    reason: d.class().to_string(),
                })
                .inc();
        }
    }

    pub fn committed(&self, partition: &str, s: CommitStats) {
        self.saw(partition);
        let l = self.part(partition);
        self.set.rows_out.get_or_create(&l).inc_by(s.rows);
        for (class, n) in &s.dead_letters {
            self.set
                .dead_letters
                .get_or_create(&ReasonLabels {
                    repo: self.repo.clone(),
                    partition: partition.to_string(),
                    reason: class.to_string(),
                })
                .inc_by(*n);
        }
        self.set.bytes_written.get_or_create(&l).inc_by(s.bytes);
        self.set.files_committed.get_or_create(&l).inc_by(s.files);
        self.set
            .commit_seconds
            .get_or_create(&self.repo())
            .observe(s.seconds);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(Commit {
            partition: partition.to_string(),
            rows: s.rows,
            dead_letters: s.dead_letters.iter().map(|(_, n)| n).sum(),
            files: s.files,
            bytes: s.bytes,
            seconds: s.seconds,
            at_ms: crate::commit::now_ms(),
        });
    }

    /// The last commits (at most 20), newest last.
    pub fn recent_commits(&self) -> Vec<Commit> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }

    pub fn restarted(&self) {
        self.set.task_restarts.get_or_create(&self.repo()).inc();
    }

    /// Whether the task is paused through the admin API (alerts tell a pause from a stall).
    pub fn paused(&self, paused: bool) {
        self.set
            .task_paused
            .get_or_create(&self.repo())
            .set(i64::from(paused));
    }

    /// Partitions handed to the task that it has not taken, their leader not answering.
    pub fn without_leader(&self, n: usize) {
        self.set
            .partitions_without_leader
            .get_or_create(&self.repo())
            .set(n as i64);
    }

    /// Partitions the task refused (at their assignment or while read), not read.
    pub fn refused(&self, n: usize) {
        self.set
            .partitions_refused
            .get_or_create(&self.repo())
            .set(n as i64);
    }

    /// Partitions read whose high watermark has not been fetched for a minute.
    pub fn lag_unknown(&self, n: usize) {
        self.set
            .partitions_lag_unknown
            .get_or_create(&self.repo())
            .set(n as i64);
    }

    /// One assignment of partitions, and how long its work in the destination took.
    pub fn assigned(&self, seconds: f64) {
        let l = self.repo();
        self.set.group_assignments.get_or_create(&l).inc();
        self.set
            .group_assignment_seconds
            .get_or_create(&l)
            .observe(seconds);
    }

    /// The member joined its group again (a fenced partition stayed assigned).
    pub fn rejoined(&self) {
        self.set.group_rejoins.get_or_create(&self.repo()).inc();
    }

    /// A SIGHUP's reload ended so: `applied`, `refused` (the check failed: the task runs on
    /// unchanged) or `fell_back` (the reloaded job failed at once: the previous one runs).
    pub fn reloaded(&self, outcome: &str) {
        self.set
            .reloads
            .get_or_create(&ReloadLabels {
                repo: self.repo.clone(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn retry(&self) {
        self.set.sink_retries.get_or_create(&self.repo()).inc();
    }

    pub fn channel(&self, bytes: usize, batches: usize) {
        self.set
            .channel_bytes
            .get_or_create(&self.repo())
            .set(bytes as i64);
        self.set
            .channel_batches
            .get_or_create(&self.repo())
            .set(batches as i64);
    }

    pub fn set_state(&self, state: &str) {
        *self.state.lock().expect("state lock") = state.to_string();
        for s in STATES {
            self.set
                .task_state
                .get_or_create(&StateLabels {
                    repo: self.repo.clone(),
                    state: s.to_string(),
                })
                .set(i64::from(s == state));
        }
    }

    pub fn state(&self) -> String {
        self.state.lock().expect("state lock").clone()
    }

    /// A partition's lag and the next offset it reads.
    pub fn lag(&self, partition: &str, lag: i64, next: i64) {
        self.saw(partition);
        let labels = self.part(partition);
        // At 0 before any skip, so that `increase()` sees the first one.
        let _ = self.set.offsets_skipped.get_or_create(&labels);
        self.set.lag.get_or_create(&labels).set(lag);
        self.set.position.get_or_create(&labels).set(next);
        self.lagging
            .lock()
            .expect("lag lock")
            .insert(partition.to_string());
    }

    pub fn lag_of(&self, partition: &str) -> Option<i64> {
        self.set.lag.get(&self.part(partition)).map(|g| g.get())
    }

    /// The partition is no longer this process's: its series are someone else's to report.
    pub fn forget(&self, partition: &str) {
        let l = self.part(partition);
        let set = &self.set;
        set.lag.remove(&l);
        set.position.remove(&l);
        set.records_in.remove(&l);
        set.rows_out.remove(&l);
        // Not `offsets_skipped`: records this process skipped stay counted here, or an alert
        // on them would lose the skip at the partition's next rebalance.
        set.bytes_written.remove(&l);
        set.files_committed.remove(&l);
        for reason in crate::decode::REASON_CLASSES {
            let r = ReasonLabels {
                repo: self.repo.clone(),
                partition: partition.to_string(),
                reason: reason.to_string(),
            };
            set.dead_letters.remove(&r);
            set.dead_letters_found.remove(&r);
        }
        self.lagging.lock().expect("lag lock").remove(partition);
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(partition);
        self.set.pending.forget(&self.repo, Some(partition));
    }

    /// Of the partitions with series, those not in `held` are forgotten: a group member's
    /// after each rebalance, so that series made again by what ended after a revocation
    /// (a commit past the deadline, the reader's last counts) or left by an earlier task of
    /// the repo (which held other partitions) do not stay for the life of the process.
    pub fn keep_only(&self, held: &std::collections::HashSet<String>) {
        let gone: Vec<String> = {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.iter()
                .filter(|p| !held.contains(*p))
                .cloned()
                .collect()
        };
        for p in gone {
            self.forget(&p);
        }
    }

    /// The task ended: none of its partitions' lag is reported any more.
    pub fn forget_all(&self) {
        let parts = std::mem::take(&mut *self.lagging.lock().expect("lag lock"));
        for p in parts {
            self.set.lag.remove(&self.part(&p));
            self.set.position.remove(&self.part(&p));
        }
        // Nothing of the task is held or read any more: no age, silence or pause to report
        // (a pause left at 1 would page about a repo stopped on purpose), no channel.
        self.set.pending.forget(&self.repo, None);
        let mut contacts = self.set.contacts.lock().unwrap_or_else(|p| p.into_inner());
        contacts.remove(&self.repo);
        drop(contacts);
        let repo = self.repo();
        self.set.source_silent.remove(&repo);
        self.set.task_paused.remove(&repo);
        self.set.partitions_without_leader.remove(&repo);
        self.set.partitions_refused.remove(&repo);
        self.set.partitions_lag_unknown.remove(&repo);
        self.set.channel_bytes.remove(&repo);
        self.set.channel_batches.remove(&repo);
    }

    /// The OpenMetrics text exposition of the whole set.
    pub fn encode(&self) -> String {
        self.set.encode()
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
