//! A source partition's records since its last commit, as a sink worker holds them: the open
//! files (one per partition path), files already whole that commit with them, dead letters,
//! the offsets they cover, and when the files roll.

use std::collections::BTreeMap;
use std::time::Instant;

use super::rotation::Rotation;
use crate::commit::checkpoint::FileEntry;
use crate::deadletter::DeadLetterWriter;
use crate::format::FormatWriter;
use crate::store::OutputFile;

pub(super) struct OpenFile {
    pub(super) rel: String,
    pub(super) file: OutputFile,
    pub(super) writer: Box<dyn FormatWriter>,
    pub(super) rows: u64,
    pub(super) first_offset: u64,
    pub(super) last_offset: u64,
    pub(super) min_ts: i64,
    pub(super) max_ts: i64,
    /// Its partition values in a table (from its first rows).
    pub(super) partition: BTreeMap<String, Option<String>>,
}

pub(super) struct OpenPartition {
    pub(super) files: BTreeMap<String, OpenFile>,
    /// Files already whole (their writers finished, their descriptors closed) that commit
    /// with the open ones: an item routing to more paths than `max_open_files` or the memory
    /// share allow parks files to stay under both.
    pub(super) parked: Vec<(String, OutputFile, FileEntry)>,
    pub(super) dead: Option<DeadLetterWriter>,
    /// Where the first of these records is: the checkpoint's next offset when they opened.
    pub(super) from_offset: u64,
    pub(super) next_offset: u64,
    pub(super) next_line: u64,
    pub(super) last_offset: u64,
    /// The last record's mark, as its item carried it (see `Provenance::mark`).
    pub(super) mark: Option<crate::decode::meta::RecordMark>,
    pub(super) rows: u64,
    /// Records consumed since the last commit (rows, dead letters, filtered).
    pub(super) records: u64,
    /// When the first of them was taken.
    pub(super) opened: Instant,
    pub(super) dead_count: u64,
    /// Dead letters by reason class (see `DeadLetter::class`).
    pub(super) dead_classes: BTreeMap<&'static str, u64>,
    pub(super) last_write: Instant,
    /// The partition's epoch when these files opened: a commit in a later epoch is refused.
    pub(super) epoch: u64,
    /// Ends this attempt's file names: no other attempt, here or in another process, can
    /// produce the same name.
    pub(super) tag: String,
}

impl OpenPartition {
    /// True when the files must roll (commit) now under `r`'s limits.
    pub(super) fn due(&self, r: &Rotation) -> bool {
        // Records consumed, not rows written: a partition whose records all become dead
        // letters or are filtered out still commits (its checkpoint, its dead letters).
        if self.records >= r.max_rows || self.opened.elapsed() >= r.max_age {
            return true;
        }
        if !self.parked.is_empty() {
            return true; // an item routed past max_open_files: commit before the next
        }
        // Dead letters as large as a data file may be (a backlog of bad records grew one
        // file past what an upload takes: 10,000 parts on S3 and GCS, at every replay).
        if self
            .dead
            .as_ref()
            .is_some_and(|d| d.bytes_written() >= r.max_bytes)
        {
            return true;
        }
        self.files.values().any(|f| {
            f.rows >= r.max_rows
                || f.writer.bytes_written() + f.writer.buffered_bytes() as u64 >= r.max_bytes
                || r.max_span.is_some_and(|s| {
                    // i128: record times may be anywhere in i64's range.
                    f.max_ts > f.min_ts
                        && (f.max_ts as i128 - f.min_ts as i128) >= s.as_micros() as i128
                })
        })
    }
}
