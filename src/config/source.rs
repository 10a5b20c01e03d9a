//! The `[source]` section of a job file: files, Kafka topics, or HTTP pushes; and the input
//! kind each one implies.

use std::path::PathBuf;

use serde::Deserialize;

use super::{parse_bytes, positive};
use crate::decode::InputKind;

/// What a push repo's acknowledgement promises (see `source::push`).
pub use crate::source::push::Durability;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum SourceSection {
    /// Files: each file is one partition; offsets are byte positions.
    File {
        /// Input files (plain or gzip), relative to the job file.
        paths: Vec<PathBuf>,
        /// Input format: `json` (one object per line), `csv`, `tsv` or `text`.
        #[serde(default = "default_input_format")]
        format: String,
        /// `csv`: the field delimiter, one ASCII character (default `,`; `;` for many European
        /// locales' CSV). `text`: split each line on this string into the schema's fields.
        #[serde(default)]
        delimiter: Option<String>,
        /// CSV/TSV: each file starts with a header row (columns matched by name).
        #[serde(default = "default_true")]
        header: bool,
        /// Input read per chunk (at most 1GiB): files roll and commit at chunk boundaries.
        #[serde(default = "default_chunk")]
        chunk_bytes: String,
        /// A file's last line without a line break: `record` takes it as a record (a file that
        /// ends without one); `leave` leaves it for the next run (files still being written, whose
        /// last line may be cut short, and gzip ones cut short inside a member; the next run
        /// reads it whole).
        #[serde(default = "default_partial_last_line")]
        partial_last_line: String,
        /// A new input file that begins as a file this job exported did (its first 4 KiB, or
        /// all of that file's start recorded when shorter, holding two line ends at least), or
        /// as another new file does: `refuse` stops the run (a file renamed or copied would be
        /// exported twice); `read` exports it (files that begin alike are distinct, e.g. with a
        /// long common header, or daily full dumps sorted alike).
        #[serde(default = "default_on_same_start")]
        on_same_start: String,
    },
    /// Kafka topics: every partition of the topics, one JSON record per message.
    Kafka {
        /// Bootstrap brokers, `host:port[,host:port...]`.
        brokers: String,
        /// Topic names, or regexes starting with `^`: POSIX extended regular expressions, as
        /// librdkafka matches them (`[0-9]`, not `\d`); a live job also takes topics that
        /// begin to match while it runs (librdkafka matches again as its metadata refreshes).
        topics: Vec<String>,
        /// Consumer group the committed offsets are reported to (default `sluice-<job>`).
        #[serde(default)]
        group: Option<String>,
        /// Message format: `json` (one record per message).
        #[serde(default = "default_format_json")]
        format: String,
        /// Where a partition without checkpoint or group offset starts: earliest or latest
        /// (`latest` once: a partition the job started before and never committed continues
        /// where it started, and one created after the job's first start, a new topic or
        /// partition whose first record is stamped since, starts at that record).
        #[serde(default = "default_reset")]
        auto_offset_reset: String,
        /// Messages per chunk, in bytes (at most 1GiB): files roll and commit at chunk boundaries.
        #[serde(default = "default_chunk")]
        chunk_bytes: String,
        /// librdkafka properties, passed through (e.g. `"fetch.wait.max.ms" = "10"`).
        #[serde(default)]
        options: super::PassThrough,
        /// A checkpoint (or, for a partition without one, the consumer group's offset, or a
        /// backfill's explicit offset) outside the offsets the broker holds (retention ran,
        /// the topic was re-created): `fail` (default) refuses the partition, naming the
        /// range (`run` refuses it, when the group hands it over or when met while reading,
        /// reads the member's other partitions, and counts it in
        /// `sluice_partitions_refused`; a backfill stops);
        /// `skip` goes on from the log's start past retention, logging and counting the range
        /// (a re-created log is always refused).
        #[serde(default = "default_on_gap")]
        on_gap: String,
        /// A message without a value (a tombstone: how a compacted topic deletes a key, and
        /// what Debezium sends after each delete): `dead_letter` (default) makes it a dead
        /// letter saying so; `skip` passes over it, counted with the rows filter stages
        /// remove (`sluice_rows_filtered`). An empty value is not a tombstone: a dead letter.
        #[serde(default = "default_tombstones")]
        tombstones: String,
    },
    /// Records pushed over HTTP to `POST /v1/repos/{repo}/data` on the `[admin]` listener.
    Push {
        /// Body format: `json` (one object per line), `csv`, `tsv` or `text` (no header line).
        #[serde(default = "default_input_format")]
        format: String,
        /// `csv`: the field delimiter, one ASCII character (default `,`; `;` for many European
        /// locales' CSV). `text`: split each line on this string into the schema's fields.
        #[serde(default)]
        delimiter: Option<String>,
        /// `wal` (a 200 survives a crash) or `memory` (a 200 survives a graceful restart).
        #[serde(default = "default_durability")]
        durability: String,
        /// The WAL's folder (default `<job.state_dir>/wal`).
        #[serde(default)]
        wal_dir: Option<PathBuf>,
        /// Size of one WAL segment file; released segments are deleted whole.
        #[serde(default = "default_segment_bytes")]
        wal_segment_bytes: String,
        /// Largest request body, compressed or decompressed (413 beyond); less than 1GiB.
        #[serde(default = "default_max_body")]
        max_body: String,
        /// The longest a request's body may take to arrive (408 beyond): a slow or stalled
        /// client must not hold its connection, and the memory its body holds, for ever.
        #[serde(default = "default_body_timeout")]
        body_timeout: String,
        /// Requests decoded and appended at once, their bodies read (503 beyond).
        #[serde(default = "default_max_concurrent")]
        max_concurrent: usize,
        /// Memory the requests in progress may hold in all (503 beyond): each reserves its
        /// body as it arrives (doubling from 64 KiB, up to its `Content-Length` or
        /// `max_body`; plus `max_body` once it is read, when gzip), then, in its place, while it is decoded, three times its text or twice its text plus 256 B
        /// a line (more for schemas over 12 columns: 64 B + 16 B a column), the larger. At
        /// least 4 × `max_body`; default the larger of 256MiB and that. A request whose lines
        /// could never fit is refused (413): with the defaults, a 16 MiB body of lines
        /// shorter than about 18 B.
        #[serde(default)]
        max_in_flight: Option<String>,
        /// Acknowledged bytes waiting for room in the channel (503 beyond).
        #[serde(default = "default_max_pending")]
        max_pending: String,
        /// Acknowledged bytes not yet in committed files (503 beyond; past half, open files
        /// are committed early); in memory each request counts 96 bytes more, its fixed
        /// cost. Default 256MiB in memory, 4GiB in the WAL.
        #[serde(default)]
        max_retained: Option<String>,
        /// Log read per chunk (at most 1GiB): files roll and commit at chunk boundaries.
        #[serde(default = "default_chunk")]
        chunk_bytes: String,
    },
}

fn default_format_json() -> String {
    "json".into()
}

fn default_reset() -> String {
    "earliest".into()
}

fn default_chunk() -> String {
    "1MiB".into()
}

fn default_input_format() -> String {
    "json".into()
}

fn default_true() -> bool {
    true
}

/// librdkafka settings that exactly-once depends on: not passed through; what to use instead.
fn owned_option(key: &str) -> Option<&'static str> {
    Some(match key {
        "bootstrap.servers" | "metadata.broker.list" => "use source.brokers",
        "group.id" => "use source.group",
        "auto.offset.reset" => {
            "use source.auto_offset_reset; a position the broker no longer holds is source.on_gap's"
        }
        "enable.auto.commit" | "auto.commit.enable" | "enable.auto.offset.store" => {
            "offsets are committed to the group after each commit of files"
        }
        "enable.partition.eof" => "sluice reads to the end by watermarks and end events",
        "partition.assignment.strategy" => {
            "partitions are handed over with the cooperative protocol (cooperative-sticky)"
        }
        // `read_uncommitted` would export aborted transactions' records and those of
        // transactions still open, and move the end the gap checks read.
        "isolation.level" => {
            "only committed transactions' records are read (read_committed, librdkafka's default)"
        }
        _ => return None,
    })
}

fn default_partial_last_line() -> String {
    "record".into()
}

fn default_on_same_start() -> String {
    "refuse".into()
}

fn default_tombstones() -> String {
    "dead_letter".into()
}

fn default_on_gap() -> String {
    "fail".into()
}

fn default_durability() -> String {
    "wal".into()
}

fn default_segment_bytes() -> String {
    "64MiB".into()
}

fn default_max_body() -> String {
    "16MiB".into()
}

fn default_body_timeout() -> String {
    "30s".into()
}

fn default_max_concurrent() -> usize {
    64
}

/// `source.max_in_flight` as set, else the larger of 256 MiB and 4 × `max_body`.
pub fn max_in_flight(set: Option<&str>, max_body: u64) -> Result<u64, String> {
    match set {
        Some(v) => parse_bytes(v),
        None => Ok((256u64 << 20).max(max_body.saturating_mul(4))),
    }
}

fn default_max_pending() -> String {
    "64MiB".into()
}

impl Durability {
    pub fn parse(s: &str) -> Result<Durability, String> {
        match s {
            "wal" => Ok(Durability::Wal),
            "memory" => Ok(Durability::Memory),
            other => Err(format!("`{other}` (expected wal or memory)")),
        }
    }
}

fn input_kind(
    format: &str,
    delimiter: Option<&String>,
    header: bool,
    check: &mut impl FnMut(&str, Result<(), String>),
) -> InputKind {
    let kind = crate::decode::input_kind(format, delimiter.map(String::as_str), header);
    let key = if delimiter.is_some()
        && kind.is_err()
        && matches!(format, "csv" | "text" | "json" | "tsv")
    {
        "source.delimiter"
    } else {
        "source.format"
    };
    check(key, kind.as_ref().map(|_| ()).map_err(Clone::clone));
    kind.unwrap_or(InputKind::Json)
}

impl SourceSection {
    /// The source's kind, as the job file names it.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSection::Kafka { .. } => "kafka",
            SourceSection::File { .. } => "file",
            SourceSection::Push { .. } => "push",
        }
    }

    /// Checks the section (each problem goes to `check` with its key) and returns the input
    /// kind of its records.
    pub(super) fn validate(
        &self,
        has_admin: bool,
        check: &mut impl FnMut(&str, Result<(), String>),
    ) -> InputKind {
        match self {
            SourceSection::File {
                paths,
                format,
                delimiter,
                header,
                chunk_bytes,
                partial_last_line,
                on_same_start,
            } => {
                check("source.chunk_bytes", super::chunk_bytes(chunk_bytes));
                check(
                    "source.on_same_start",
                    match on_same_start.as_str() {
                        "refuse" | "read" => Ok(()),
                        other => Err(format!("`{other}` (expected refuse or read)")),
                    },
                );
                check(
                    "source.partial_last_line",
                    match partial_last_line.as_str() {
                        "record" | "leave" => Ok(()),
                        other => Err(format!("`{other}` (expected record or leave)")),
                    },
                );
                check(
                    "source.paths",
                    if paths.is_empty() {
                        Err("at least one input file is needed".into())
                    } else {
                        Ok(())
                    },
                );
                input_kind(format, delimiter.as_ref(), *header, check)
            }
            SourceSection::Kafka {
                brokers,
                topics,
                format,
                auto_offset_reset,
                chunk_bytes,
                on_gap,
                tombstones,
                options,
                ..
            } => {
                check("source.chunk_bytes", super::chunk_bytes(chunk_bytes));
                for (key, value) in options.iter() {
                    // What sluice reads anyway may be said.
                    if key == "isolation.level" && value.as_str() == "read_committed" {
                        continue;
                    }
                    if let Some(instead) = owned_option(key) {
                        check(
                            "source.options",
                            Err(format!("`{key}` is sluice's to set ({instead})")),
                        );
                    }
                }
                check(
                    "source.on_gap",
                    match on_gap.as_str() {
                        "fail" | "skip" => Ok(()),
                        other => Err(format!("`{other}` (expected fail or skip)")),
                    },
                );
                check(
                    "source.tombstones",
                    match tombstones.as_str() {
                        "dead_letter" | "skip" => Ok(()),
                        other => Err(format!("`{other}` (expected dead_letter or skip)")),
                    },
                );
                check(
                    "source.brokers",
                    if brokers.trim().is_empty() {
                        Err("must name at least one broker (host:port)".into())
                    } else {
                        Ok(())
                    },
                );
                check(
                    "source.topics",
                    if topics.is_empty() || topics.iter().any(|t| t.is_empty()) {
                        Err("at least one topic name is needed".into())
                    } else {
                        Ok(())
                    },
                );
                check(
                    "source.format",
                    if format == "json" {
                        Ok(())
                    } else {
                        Err(format!(
                            "`{format}`: the Kafka source reads JSON messages only for now"
                        ))
                    },
                );
                check(
                    "source.auto_offset_reset",
                    match auto_offset_reset.as_str() {
                        "earliest" | "latest" => Ok(()),
                        other => Err(format!("`{other}` (expected earliest or latest)")),
                    },
                );
                InputKind::Json
            }
            SourceSection::Push {
                format,
                delimiter,
                durability,
                wal_segment_bytes,
                max_body,
                body_timeout,
                max_concurrent,
                max_in_flight: max_in_flight_set,
                max_pending,
                max_retained,
                chunk_bytes,
                ..
            } => {
                check(
                    "source.body_timeout",
                    super::parse_duration(body_timeout).map(|_| ()),
                );
                check("source.chunk_bytes", super::chunk_bytes(chunk_bytes));
                for (key, v) in [
                    ("source.wal_segment_bytes", Some(wal_segment_bytes)),
                    ("source.max_body", Some(max_body)),
                    ("source.max_in_flight", max_in_flight_set.as_ref()),
                    ("source.max_pending", Some(max_pending)),
                    ("source.max_retained", max_retained.as_ref()),
                ] {
                    if let Some(v) = v {
                        check(key, parse_bytes(v).and_then(positive));
                    }
                }
                check(
                    "source.max_body",
                    match parse_bytes(max_body) {
                        // A body and the line end added to one that lacks it are one
                        // record of the log, at most 1 GiB.
                        Ok(n) if n >= crate::wal::MAX_RECORD => Err(format!(
                            "`{max_body}` is not less than the limit of 1GiB (a body and its final line end are one record of the log)"
                        )),
                        _ => Ok(()),
                    },
                );
                check("source.max_concurrent", positive(*max_concurrent as u64));
                if let Ok(body) = parse_bytes(max_body) {
                    if let Ok(flight) = max_in_flight(max_in_flight_set.as_deref(), body) {
                        check(
                            "source.max_in_flight",
                            if flight >= body.saturating_mul(4) {
                                Ok(())
                            } else {
                                Err(format!(
                                    "{flight} bytes is less than 4 × max_body: a body of \
                                     max_body could never be decoded"
                                ))
                            },
                        );
                    }
                }
                check(
                    "source.durability",
                    Durability::parse(durability).map(|_| ()),
                );
                check(
                    "admin.listen",
                    if has_admin {
                        Ok(())
                    } else {
                        Err("a push source takes its data on the admin listener: add `[admin] listen = \"127.0.0.1:9464\"`".into())
                    },
                );
                input_kind(format, delimiter.as_ref(), false, check)
            }
        }
    }
}

/// Prefixes of librdkafka consumer properties, left out of the source's options where another
/// kind of client (a producer of dead letters, an admin client) is made with them (each
/// would be warned about).
const CONSUMER_ONLY: [&str; 13] = [
    "fetch.",
    "session.",
    "heartbeat.",
    "max.poll",
    "auto.",
    "group.",
    "partition.assignment",
    "enable.auto",
    "enable.partition.eof",
    "queued.",
    "isolation.level",
    "max.partition.fetch.bytes",
    "check.crcs",
];

/// Whether librdkafka property `key` is a consumer's only ([`CONSUMER_ONLY`]).
pub fn consumer_only(key: &str) -> bool {
    CONSUMER_ONLY.iter().any(|c| key.starts_with(c))
}
