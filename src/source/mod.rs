//! Sources: where records come from, as chunks of whole records per source partition, and
//! where reading resumes. Every source is replayable from an offset: that, with the commit
//! protocol, is what makes output exactly-once.

pub mod file;
pub mod kafka;
pub mod push;

use std::time::Instant;

use crate::decode::Chunk;

/// Errors of sources. Each names the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    #[error("source {name}: {reason}")]
    Other { name: String, reason: String },
    /// A start an operator must decide on (a roll-back that cannot be made): starting again
    /// changes nothing, so a supervised repo is not started again.
    #[error("source {name}: {reason}")]
    Refused { name: String, reason: String },
}

/// One partition of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The task's handle for the partition (dense, per process).
    pub id: u32,
    /// The topic, or the file's stem for the file source.
    pub topic: String,
    /// The source's own partition number (Kafka's partition; 0 for a file, whose stem is
    /// unique in its job, so its key does not depend on its place in `paths`).
    pub number: u32,
}

impl PartitionInfo {
    /// The key that names the partition in checkpoints and file names: `<topic>-<number>`.
    pub fn key(&self) -> String {
        format!("{}-{}", self.topic, self.number)
    }
}

/// What a source produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// `chunk` holds records of this partition.
    Chunk(u32),
    /// Nothing available now.
    Idle,
    /// A bounded source has read everything.
    End,
}

/// A partition newly assigned to a group member, as the source found it.
pub struct Assigned {
    pub info: PartitionInfo,
    /// Where the source would start by itself: the group's offset, else `auto.offset.reset`.
    pub start: u64,
    /// `start` is `auto.offset.reset`'s: the group holds no offset of the partition.
    pub reset: bool,
    /// The offsets the broker holds, `[low, high]`.
    pub held: (u64, u64),
}

/// Where a partition newly assigned to a group member starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub id: u32,
    pub offset: u64,
    /// `offset` is a checkpoint's (its checkpoint in the destination wins over the source's
    /// start).
    pub checkpointed: bool,
    /// The checkpoint's mark of its last message, which the source compares with the one it
    /// holds there before reading on ([`crate::decode::meta::RecordMark`]).
    pub mark: Option<crate::decode::meta::RecordMark>,
    /// Why the task refuses to have it read (claimed and registered, it is to be released
    /// by [`Membership::released`]): a backfill would still write what this job writes from
    /// its start.
    pub refused: Option<TaskRefusal>,
}

/// Why the task refuses a partition it registered ([`Resumed::refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRefusal {
    /// The reason, naming the remedy.
    pub why: String,
    /// The cause may go by itself (a backfill that has not committed yet): the source judges
    /// the partition again after a pause.
    pub retry: bool,
}

/// What a source with changing partitions (a Kafka consumer-group member) calls, from inside
/// its own `next` or `tick`, when partitions are assigned to it or taken away. The task
/// registers or releases the partitions there, before the source reads on.
pub trait Membership: Send {
    /// Newly assigned partitions. Returns where each one starts.
    fn assigned(&mut self, parts: &[Assigned]) -> Result<Vec<Resumed>, SourceError>;
    /// Partitions being taken away: what is held for them is committed (or aborted, past the
    /// deadline) before this returns. Returns each one's committed next offset.
    fn revoked(&mut self, parts: &[u32]) -> Vec<(u32, u64)>;
    /// Partitions just assigned and claimed whose start the source refused: let go at once,
    /// nothing of them having been read (no flush or commit to wait for).
    fn released(&mut self, parts: &[u32]);
    /// When the job first took partitions that start at the log's end, in ms since the
    /// epoch (recorded in the destination by the first call ever); `None` from that first
    /// call, whose partitions start at the end.
    fn first_started(&mut self) -> Result<Option<i64>, SourceError>;
}

/// Why a partition handed to a source is not read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotReadState {
    /// Its leader does not answer (its watermarks or the group's offset cannot be read): it
    /// is asked again between polls and taken once it answers.
    WithoutLeader,
    /// Refused (a gap, a re-created log, another last message): not read until handed over
    /// again or the job restarts or reloads.
    Refused,
}

/// A partition handed to a source that it does not read now: shown by `GET /v1/tasks` and
/// the status page, counted in `sluice_partitions_without_leader` and
/// `sluice_partitions_refused`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotRead {
    /// Its key (`topic-partition`).
    pub partition: String,
    pub state: NotReadState,
    /// Why, as logged (a refusal's reason names its remedy).
    pub error: String,
    /// Since when (ms since the epoch).
    pub since_ms: i64,
}

impl NotRead {
    /// `partition`, not read since `since` (a monotonic instant) for `error`.
    pub fn new(partition: String, state: NotReadState, error: String, since: Instant) -> Self {
        let ago = i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX);
        NotRead {
            partition,
            state,
            error,
            since_ms: crate::commit::now_ms().saturating_sub(ago),
        }
    }
}

/// A replayable, partitioned source of raw records.
pub trait Source: Send {
    /// The partitions this process reads now (for a group member, what is assigned so far).
    fn partitions(&self) -> Vec<PartitionInfo>;
    /// The partitions change while running (group membership); `set_membership` is then
    /// called before the first `next`.
    fn dynamic(&self) -> bool {
        false
    }
    fn set_membership(&mut self, _membership: Box<dyn Membership>) {}
    /// Joins the group, once the start's checks have passed (after `set_membership`): a
    /// member that joined and then left, its start refused, made every live member give up
    /// its partitions for nothing. Nothing for a source without a group.
    fn join(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
    /// A group member leaves its group and joins it again, so that the group assigns afresh
    /// (every partition is revoked through the membership first). False when the source has
    /// no group.
    fn rejoin(&mut self) -> Result<bool, SourceError> {
        Ok(false)
    }
    /// Stop (or restart) fetching: the channel is full. The source keeps serving its protocol
    /// in `tick`.
    fn pause(&mut self, _paused: bool) -> Result<(), SourceError> {
        Ok(())
    }
    /// Called instead of `next` while paused: serve the protocol (heartbeats, rebalances)
    /// for a short while without producing.
    fn tick(&mut self) -> Result<(), SourceError> {
        std::thread::sleep(std::time::Duration::from_millis(20));
        Ok(())
    }
    /// Resume a partition at `offset` (and the line number there, when known).
    fn seek(&mut self, partition: u32, offset: u64, line: u64) -> Result<(), SourceError>;
    /// The identity of the log whose positions are this source's offsets, when they are
    /// local to it (push: the WAL's); checkpoints record it, and one counted in another
    /// log's positions is not resumed from blindly.
    fn log_id(&self) -> Option<String> {
        None
    }
    /// The last runs of the log's folder, this process's last (a WAL's, see
    /// [`crate::wal::Runs::tail`]), recorded in each checkpoint beside [`Source::log_id`].
    fn log_runs(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// Up to which position this log holds the same records as the log whose runs a
    /// checkpoint of its identity names (see [`crate::wal::Runs::shares`]; `None`: none).
    fn log_shares(&self, _partition: u32, _runs: &[(String, u64)]) -> Option<u64> {
        Some(u64::MAX)
    }
    /// The other log's checkpoint (its log, position) this source's log last continued
    /// from, as recorded by [`Source::continue_log`].
    fn log_base(&self, _partition: u32) -> Option<(String, u64)> {
        None
    }
    /// Records, durably, that the log continues from position `pos` of log `theirs` (a
    /// checkpoint another process wrote); the seek to `pos` follows.
    fn continue_log(
        &mut self,
        _partition: u32,
        _theirs: &str,
        _pos: u64,
    ) -> Result<(), SourceError> {
        Ok(())
    }
    /// Fills `chunk` (its buffer is reused) with the next records of some partition.
    fn next(&mut self, chunk: &mut Chunk) -> Result<Next, SourceError>;
    /// The topics whose records are compacted away (Kafka's `cleanup.policy` holding
    /// `compact`), with their policy: a replay there cannot write again what was exported.
    /// And why some topics' policies are not known, where the source cannot tell.
    fn compacted(&mut self) -> (Vec<(String, String)>, Option<String>) {
        (Vec::new(), None)
    }
    /// The positions `[first, last]` the source can still read a partition from (a replay
    /// from a position outside cannot happen); `None` when it cannot tell.
    fn replayable(&mut self, _partition: u32) -> Result<Option<(u64, u64)>, SourceError> {
        Ok(None)
    }
    /// Positions a partition that has no checkpoint where the source says (files: the start;
    /// Kafka: the group's committed offset, else `auto.offset.reset`). Returns (offset, line).
    fn resume_default(&mut self, partition: u32) -> Result<(u64, u64), SourceError> {
        self.seek(partition, 0, 1)?;
        Ok((0, 1))
    }
    /// Records before `next_offset` of `partition` are durably committed downstream.
    fn committed(&mut self, _partition: u32, _next_offset: u64) {}
    /// The run is over: flush what must reach the source's side (Kafka: a synchronous commit of
    /// the last committed offsets).
    fn close(&mut self) {}
    /// Bounded runs: each partition's (handle, start, end) offsets, for progress.
    fn bounds(&self) -> Vec<(u32, u64, u64)> {
        Vec::new()
    }
    /// Per partition key, when the source can tell: the lag (records not yet read) and the
    /// next offset to read.
    fn lag(&self) -> Vec<(String, i64, i64)> {
        Vec::new()
    }
    /// Partitions handed to this source that it does not read now, and why (a Kafka group
    /// member's: waiting for a leader, see `kafka::leaderless`, or refused, see
    /// `kafka::refused`).
    fn not_read(&self) -> Vec<NotRead> {
        Vec::new()
    }
    /// Partitions read whose lag is not known now: their high watermark not fetched for a
    /// minute (a Kafka source's; its lag shows the last value found).
    fn lag_unknown(&self) -> usize {
        0
    }
    /// A stop was asked: take no new input. Returns true once everything the source has
    /// acknowledged to its producers is handed over (a push source in memory drains its log
    /// into the channel first); until then the task keeps reading.
    fn finish(&mut self) -> bool {
        true
    }
    /// What a stop makes `finish` hand over is the records' only copy (a push memory log): it
    /// goes into the channel past its bound, to be spilled.
    fn only_copy(&self) -> bool {
        false
    }
    /// Partitions whose open files should be committed now (a push log running out of room
    /// is released by commits).
    fn flush_wanted(&mut self) -> Vec<u32> {
        Vec::new()
    }
    /// A bounded run that ended: per partition, the offset just past the last record the
    /// source handed out, which the run must have committed before it reports success.
    /// A partition whose last skipped gap (`on_gap = "skip"`) reached its end owes what was
    /// read before the gap.
    fn handed_to(&self) -> Vec<(u32, u64)> {
        Vec::new()
    }
    /// Offsets skipped since the last call (Kafka, `on_gap = "skip"`): (partition key, count).
    fn take_skipped(&mut self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// When the source last heard from its brokers, stamped by a thread of its own (`None`:
    /// a source without brokers).
    fn contact(&self) -> Option<crate::metrics::Contact> {
        None
    }
    /// A push source's intake (where HTTP requests append).
    fn intake(&self) -> Option<std::sync::Arc<push::Intake>> {
        None
    }
    /// The CSV header the decoder needs, if the input kind has one.
    fn header(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        Ok(None)
    }
    /// Every input's own CSV header, with the input's name, when inputs may differ in column
    /// order (files); their chunks carry it in `Chunk::header`.
    fn headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
        Ok(Vec::new())
    }
    /// A file partition's file must begin as the start checked it did (`len` bytes, decompressed,
    /// of CRC-32 `crc`) when it is first opened: its checkpoints name that file (files).
    fn expect_start(&mut self, _partition: u32, _len: usize, _crc: u32) {}
    /// A partition resumed at `offset` from a checkpoint that marks its last message: the
    /// source compares that message with the one it holds there before reading on (Kafka: a
    /// topic re-created since holds another).
    fn expect_record(
        &mut self,
        _partition: u32,
        _offset: u64,
        _mark: crate::decode::meta::RecordMark,
    ) {
    }
    /// How each file partition's file begins, as far as it was read (files): what its
    /// checkpoints record.
    fn read_starts(&self) -> Option<ReadStarts> {
        None
    }
}

/// Each file partition's file start (by partition key): its length (up to 4 KiB, decompressed,
/// at least as far as the file was read) and CRC-32.
pub type ReadStarts =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (usize, u32)>>>;
