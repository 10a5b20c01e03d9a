//! The sections of a job file as it is written (`JobFile`): every key with its default and,
//! in its doc comment, its meaning (the generated reference `docs/CONFIG.md` prints them).
//! Values stay as written here; `Job::parse` checks and types them.

use std::path::PathBuf;

use serde::Deserialize;

use super::{PassThrough, SourceSection};

/// A job file: one source, one repo schema (or several repos, `[[repos]]`), the channel
/// between them, and a sink.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// The job's name and local state.
    pub job: JobSection,
    /// Where records come from: files, Kafka topics or HTTP pushes (`kind`).
    pub source: SourceSection,
    /// The repo: its schema file, stages, and what a failing stage does.
    pub repo: RepoSection,
    /// The bounded channel of decoded batches between the source and the sink workers.
    #[serde(default)]
    pub channel: ChannelSection,
    /// Where and how files are written.
    pub sink: SinkSection,
    /// Where records that cannot be written go.
    #[serde(default)]
    pub dead_letters: DeadLetterSection,
    /// The admin listener (metrics, health, tasks); none when absent.
    #[serde(default)]
    pub admin: Option<AdminSection>,
}

#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address to listen on, e.g. `127.0.0.1:9464` (port 0: any free port, logged).
    pub listen: String,
    /// When set, the `/v1/` routes require `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<String>,
    /// Serve an address other than loopback without a token (anyone who reaches it can stop
    /// the job and push data). Refused unless set.
    #[serde(default)]
    pub insecure: bool,
}

impl std::fmt::Debug for AdminSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSection")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("insecure", &self.insecure)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// Names the job's checkpoints (`_sluice/<name>/`): letters, digits, `-` or `_`, at
    /// most 100 bytes.
    pub name: String,
    /// Local folder for the spill and other task state.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How long a graceful stop may take before the process exits anyway.
    #[serde(default = "default_stop_deadline")]
    pub stop_deadline: String,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("./sluice-state")
}

fn default_stop_deadline() -> String {
    "30s".into()
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoSection {
    /// The repo schema file, relative to the job file.
    pub schema: PathBuf,
    /// Filter and transform stages, applied in order to every decoded batch.
    #[serde(default)]
    pub stages: Vec<crate::stage::StageSpec>,
    /// Rows a stage fails on: dead_letter (default), drop (counted) or fail (the task stops).
    #[serde(default = "default_on_error")]
    pub on_error: String,
}

fn default_on_error() -> String {
    "dead_letter".into()
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// Decoded data the channel holds at most (a size, e.g. `64MiB`); a full channel stops the
    /// source from reading. Kafka's prefetch queue is held to the same size, checked before
    /// each fetch (a fetch under way lands whole: see OPERATIONS, Sizing memory).
    #[serde(default = "default_channel_bytes")]
    pub max_bytes: String,
    /// Batches the channel holds at most.
    #[serde(default = "default_channel_batches")]
    pub max_batches: usize,
    /// Rows per decoded batch: at most a chunk's lines (16,384; a larger value reads as that).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

fn default_channel_bytes() -> String {
    "64MiB".into()
}
fn default_channel_batches() -> usize {
    256
}
fn default_batch_rows() -> usize {
    8192
}

impl Default for ChannelSection {
    fn default() -> Self {
        ChannelSection {
            max_bytes: default_channel_bytes(),
            max_batches: default_channel_batches(),
            batch_rows: default_batch_rows(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    /// Destination URL: `file:///data/out/`, a local path, `s3://bucket/prefix`, ...
    pub url: String,
    /// Sink worker threads; each source partition is written by one of them.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// File format: `parquet`, `orc`, `json` (JSON lines), `csv` or `tsv` (`text`, raw lines,
    /// is `sluice convert`'s only).
    #[serde(default = "default_format")]
    pub format: String,
    /// Codec, with an optional level: Parquet `zstd[:level]` (default `zstd:1`), `snappy`,
    /// `gzip[:level]`, `lz4`, `none`; ORC `zstd[:level]` (default `zstd:1`), `snappy`, `lz4`,
    /// `zlib[:level]` (default `zlib:6`), `none`; JSON lines `gzip[:level]` (default `gzip:1`)
    /// or `none`. JSON lines and text gzip at levels 1 to 3 go through ISA-L in a build with
    /// the `isal` feature (faster, smaller files), through zlib-rs otherwise.
    #[serde(default)]
    pub compression: Option<String>,
    /// Parquet: rows per row group (default 262,144).
    #[serde(default)]
    pub row_group_rows: Option<usize>,
    /// Parquet dictionary encoding: `auto` (default: low-cardinality columns only), `on`, `off`.
    #[serde(default)]
    pub dictionary: Option<String>,
    /// Parquet value encodings: `delta` (default: timestamps DELTA_BINARY_PACKED, top-level
    /// strings without a dictionary DELTA_LENGTH_BYTE_ARRAY; read by pyarrow, DuckDB, polars,
    /// Trino, Spark 3.4+) or `plain` (PLAIN and dictionaries only, for every Parquet reader).
    #[serde(default)]
    pub parquet_encodings: Option<String>,
    /// Parquet column statistics (default true).
    #[serde(default)]
    pub statistics: Option<bool>,
    /// ORC: the stripe size (default `64MiB`).
    #[serde(default)]
    pub stripe_bytes: Option<String>,
    /// CSV/TSV: write a header row (default true).
    #[serde(default)]
    pub header: Option<bool>,
    /// Cap on files open at once per worker (data files, and a partition's dead-letter file);
    /// at most 4096.
    #[serde(default = "default_max_open")]
    pub max_open_files: usize,
    /// Cap on encoded data held in memory by open files (Parquet row groups, ORC stripes in
    /// progress), for the whole task; a worker over its share first writes its biggest partition's
    /// row groups in progress into their files, and commits that partition when this frees nothing.
    #[serde(default = "default_max_buffered")]
    pub max_buffered_bytes: String,
    /// When a file is closed and committed.
    #[serde(default)]
    pub rotation: RotationSection,
    /// Partition folders from record values.
    #[serde(default)]
    pub partition: PartitionSection,
    /// The table the files make up: `none` (plain files in folders, the default) or `delta`
    /// (a Delta Lake table at `url`: each commit also enters the table's log, so readers of
    /// the table see it whole; Parquet only).
    #[serde(default = "default_table")]
    pub table: String,
    /// Delta table settings (`table = "delta"`).
    #[serde(default)]
    pub delta: DeltaSection,
    /// Object store settings (endpoint, region, credentials), passed to the store.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, serde_json::Value>")]
    pub storage: toml::Table,
}

fn default_workers() -> usize {
    2
}
fn default_format() -> String {
    "parquet".into()
}
/// The most `sink.max_open_files` may be: a commit names its files in its records, which
/// must stay within what is read back (see `commit::bounds`).
pub const MAX_OPEN_FILES: usize = 4096;

fn default_max_open() -> usize {
    64
}
fn default_max_buffered() -> String {
    "256MiB".into()
}

/// `[sink.delta]`: settings of a Delta table.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeltaSection {
    /// A log checkpoint every this many table versions (a new table's
    /// `delta.checkpointInterval`); readers then replay at most this many log entries.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
}

impl Default for DeltaSection {
    fn default() -> Self {
        DeltaSection {
            checkpoint_every: default_checkpoint_every(),
        }
    }
}

fn default_checkpoint_every() -> u64 {
    100
}

fn default_table() -> String {
    "none".into()
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationSection {
    /// Close a file once it holds this many rows. Files close between decoded batches, so
    /// one may hold up to `[channel] batch_rows` - 1 rows more.
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// Close a file at about this size (a size, e.g. `256MiB`). ORC files are measured as
    /// their stripes are written: one may pass it by up to a stripe (`stripe_bytes`). A
    /// partition's dead-letter file reaching it commits the partition too.
    #[serde(default = "default_max_file_bytes")]
    pub max_bytes: String,
    /// Close a file when its records span more than this much record time: the values of the
    /// output's first timestamp or date column (in schema order, so a `_kafka_timestamp` field
    /// placed before the event time is the one measured).
    #[serde(default)]
    pub max_span: Option<String>,
    /// Close a file after this long without new rows.
    #[serde(default = "default_idle")]
    pub idle: String,
    /// The longest a source partition's files stay open, however steadily records arrive
    /// (wall clock from the first record after a commit): a trickle, or records that all
    /// become dead letters or are filtered out, still commit and move the checkpoint.
    #[serde(default = "default_max_age")]
    pub max_age: String,
}

fn default_max_rows() -> u64 {
    1_000_000
}
fn default_max_file_bytes() -> String {
    "256MiB".into()
}
fn default_idle() -> String {
    "60s".into()
}

fn default_max_age() -> String {
    "15m".into()
}

impl Default for RotationSection {
    fn default() -> Self {
        RotationSection {
            max_rows: default_max_rows(),
            max_bytes: default_max_file_bytes(),
            max_span: None,
            idle: default_idle(),
            max_age: default_max_age(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionSection {
    /// Path template, e.g. `{repo}/dt={ts:%Y-%m-%d}/hr={ts:%H}/`. Empty: no partition folders.
    #[serde(default)]
    pub template: String,
    /// A bare `{field}` segment becomes `field=value` (Hive style) unless this is false.
    #[serde(default)]
    pub hive: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSection {
    /// Where dead-letter files go (default: `<sink url>/_dead_letters/`).
    #[serde(default)]
    pub url: Option<String>,
    /// Send dead letters to this Kafka topic instead of files (delivered at least once, before
    /// the commit whose records they are).
    #[serde(default)]
    pub topic: Option<String>,
    /// The topic's brokers (default: the Kafka source's, with its options).
    #[serde(default)]
    pub brokers: Option<String>,
    /// librdkafka producer properties, over the source's when its brokers are used.
    #[serde(default)]
    pub options: PassThrough,
    /// The longest wait for the topic's brokers (to check the topic, to deliver a commit's
    /// dead letters).
    #[serde(default = "default_dead_timeout")]
    pub timeout: String,
}

fn default_dead_timeout() -> String {
    "30s".into()
}

impl Default for DeadLetterSection {
    fn default() -> Self {
        DeadLetterSection {
            url: None,
            topic: None,
            brokers: None,
            options: Default::default(),
            timeout: default_dead_timeout(),
        }
    }
}
