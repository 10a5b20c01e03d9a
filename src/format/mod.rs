//! Output formats behind one [`FormatWriter`] trait: Parquet, ORC, JSON lines (gzip by default)
//! and text (CSV, TSV, or the raw message line).
//!
//! Writers stream: encoded bytes go to the [`OutputFile`] as the format allows (Parquet per row
//! group, ORC per stripe, JSON/text per batch), so memory does not grow with file size.

mod blocks;
mod gzip;
#[cfg(feature = "isal")]
mod isal;
mod json;
mod jsonl;
mod orc;
mod parquet;
mod text;
mod types;
pub mod units;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::store::OutputFile;
pub(crate) use gzip::MaybeGzip;
pub(crate) use types::find as find_type;

/// Errors from encoding. Each names the output file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A format setting that cannot be (its message names the setting and what it takes).
    #[error("{0}")]
    Option(String),
    #[error("{format} cannot write field `{field}` of type {ty}: {reason}")]
    Unsupported {
        format: &'static str,
        field: String,
        ty: String,
        reason: String,
    },
    #[error("encoding {file}: {message}")]
    Encode { file: String, message: String },
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatKind {
    Parquet,
    Orc,
    /// JSON lines.
    Json,
    Csv,
    Tsv,
    /// The original message line of each record.
    Text,
}

impl std::str::FromStr for FormatKind {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "parquet" => FormatKind::Parquet,
            "orc" => FormatKind::Orc,
            "json" | "jsonl" | "ndjson" => FormatKind::Json,
            "csv" => FormatKind::Csv,
            "tsv" => FormatKind::Tsv,
            "text" | "txt" | "raw" => FormatKind::Text,
            other => {
                return Err(FormatError::Option(format!(
                    "unknown format `{other}` (expected parquet, orc, json, csv, tsv or text)"
                )))
            }
        })
    }
}

impl FormatKind {
    pub fn name(self) -> &'static str {
        match self {
            FormatKind::Parquet => "parquet",
            FormatKind::Orc => "orc",
            FormatKind::Json => "json",
            FormatKind::Csv => "csv",
            FormatKind::Tsv => "tsv",
            FormatKind::Text => "text",
        }
    }
}

/// A compression codec and its level, as chosen by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Zstd(i32),
    Snappy,
    Gzip(u32),
    Lz4,
    Zlib(u32),
}

/// As a job file or `--compression` spells it (`gzip:1`).
impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Codec::None => write!(f, "none"),
            Codec::Zstd(l) => write!(f, "zstd:{l}"),
            Codec::Snappy => write!(f, "snappy"),
            Codec::Gzip(l) => write!(f, "gzip:{l}"),
            Codec::Lz4 => write!(f, "lz4"),
            Codec::Zlib(l) => write!(f, "zlib:{l}"),
        }
    }
}

impl Codec {
    /// Parses `zstd`, `zstd:3`, `gzip:6`, `snappy`, `lz4`, `zlib`, `none`.
    pub fn parse(s: &str) -> Result<Codec, FormatError> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let level_num = |default: i64, min: i64, max: i64| -> Result<i64, FormatError> {
            match level {
                None => Ok(default),
                Some(l) => match l.parse::<i64>() {
                    Ok(v) if (min..=max).contains(&v) => Ok(v),
                    _ => Err(FormatError::Option(format!(
                        "compression level `{l}` for {name} must be {min} to {max}"
                    ))),
                },
            }
        };
        let no_level = |c: Codec| -> Result<Codec, FormatError> {
            match level {
                None => Ok(c),
                Some(_) => Err(FormatError::Option(format!("{name} takes no level"))),
            }
        };
        match name.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => no_level(Codec::None),
            "zstd" => Ok(Codec::Zstd(level_num(1, 1, 22)? as i32)),
            "snappy" => no_level(Codec::Snappy),
            "gzip" | "gz" => Ok(Codec::Gzip(level_num(1, 0, 9)? as u32)),
            "lz4" => no_level(Codec::Lz4),
            "zlib" => Ok(Codec::Zlib(level_num(6, 0, 9)? as u32)),
            other => Err(FormatError::Option(format!(
                "unknown compression `{other}` (expected zstd[:level], snappy, gzip[:level], \
                 lz4, zlib[:level] or none)"
            ))),
        }
    }
}

/// Which value encodings Parquet columns may use besides PLAIN and dictionaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetEncodings {
    /// Timestamps DELTA_BINARY_PACKED, top-level strings without a dictionary
    /// DELTA_LENGTH_BYTE_ARRAY:
    /// smaller files, less CPU; read by pyarrow, DuckDB, polars, Trino and Spark 3.4+.
    Delta,
    /// PLAIN and dictionaries only (with page version 2 too), which every Parquet reader
    /// reads (Spark's vectorized
    /// reader before 3.4, Velox before mid-2026 and Iceberg's vectorized reader before 2026
    /// refuse some delta encodings).
    Plain,
}

/// Dictionary encoding choice for Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dictionary {
    /// On for columns whose first batch shows few distinct values, off for the rest.
    Auto,
    On,
    Off,
}

/// Parquet rows per row group by default (DuckDB and polars write groups of about 120,000
/// rows; pyarrow 1M). A row group in progress is
/// what an open Parquet file holds in memory: at 1M rows a 10M-row conversion peaked 15 % above
/// a 1M-row one; at this size 5 %, with 1M-row peaks 17 % lower and files 0.1 % larger.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Options of all formats; each writer reads the ones it knows.
#[derive(Debug, Clone)]
pub struct FormatOptions {
    pub kind: FormatKind,
    /// None: the format's default (Parquet zstd:1, ORC zstd, JSON gzip:1, text none).
    pub codec: Option<Codec>,
    /// Parquet: rows per row group.
    pub row_group_rows: usize,
    pub dictionary: Dictionary,
    /// Parquet: the value encodings besides PLAIN and dictionaries.
    pub parquet_encodings: ParquetEncodings,
    /// Parquet: write column statistics.
    pub statistics: bool,
    /// Parquet: data page version 1 (widest reader support) or 2.
    pub parquet_page_version: u8,
    /// ORC: approximate stripe size in bytes.
    pub stripe_bytes: usize,
    /// CSV/TSV: write a header row.
    pub header: bool,
    /// Encode on the rayon pool (`convert`: one file at a time): Parquet a row group's columns
    /// in parallel; gzip JSON and text each batch as a block (a gzip member of its own) while
    /// the next ones encode; ORC a stripe's columns, and its string buffers kept from stripe
    /// to stripe (memory a job's bound would not count). A job's sink workers encode many
    /// files at once on their own threads, where handing small batches to the pool costs CPU
    /// and gains nothing.
    pub parallel: bool,
    /// Parquet: timestamps in seconds or nanoseconds written in microseconds, at any depth
    /// (a Delta table's files: see [`units`]).
    pub micros: bool,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            kind: FormatKind::Parquet,
            codec: None,
            row_group_rows: ROW_GROUP_ROWS,
            dictionary: Dictionary::Auto,
            parquet_encodings: ParquetEncodings::Delta,
            statistics: true,
            parquet_page_version: 1,
            stripe_bytes: 64 * 1024 * 1024,
            header: true,
            parallel: false,
            micros: false,
        }
    }
}

impl FormatOptions {
    /// Files whose readers find columns by position only: CSV or TSV without a header.
    pub fn positional(&self) -> bool {
        matches!(self.kind, FormatKind::Csv | FormatKind::Tsv) && !self.header
    }

    /// The codec in effect.
    pub fn codec(&self) -> Codec {
        self.codec.unwrap_or(match self.kind {
            FormatKind::Parquet | FormatKind::Orc => Codec::Zstd(1),
            FormatKind::Json => Codec::Gzip(1),
            FormatKind::Csv | FormatKind::Tsv | FormatKind::Text => Codec::None,
        })
    }

    /// The file name extension, with compression suffix where the codec wraps the file.
    pub fn extension(&self) -> String {
        let base = match self.kind {
            FormatKind::Parquet => "parquet",
            FormatKind::Orc => "orc",
            FormatKind::Json => "jsonl",
            FormatKind::Csv => "csv",
            FormatKind::Tsv => "tsv",
            FormatKind::Text => "txt",
        };
        match (self.kind, self.codec()) {
            (FormatKind::Parquet | FormatKind::Orc, _) | (_, Codec::None) => base.to_string(),
            _ => format!("{base}.gz"),
        }
    }

    /// Checks the codec fits the format and the schema can be written, before any data moves.
    pub fn validate(&self, schema: &SchemaRef) -> Result<(), FormatError> {
        let codec = self.codec();
        let ok = match self.kind {
            FormatKind::Parquet => !matches!(codec, Codec::Zlib(_)),
            FormatKind::Orc => !matches!(codec, Codec::Gzip(_)),
            _ => matches!(codec, Codec::None | Codec::Gzip(_)),
        };
        if !ok {
            return Err(FormatError::Option(format!(
                "compression `{codec}` is not available for {} (parquet: zstd, snappy, gzip, lz4, \
                 none; orc: zstd, snappy, lz4, zlib, none; json/csv/tsv/text: gzip, none)",
                self.kind.name()
            )));
        }
        if self.row_group_rows == 0 || self.stripe_bytes == 0 {
            return Err(FormatError::Option(
                "row group rows and stripe bytes must be positive".into(),
            ));
        }
        types::check(schema, self.kind)?;
        match self.kind {
            FormatKind::Orc => orc::check_schema(schema),
            FormatKind::Csv | FormatKind::Tsv => text::check_schema(schema, self.kind),
            FormatKind::Text => text::check_raw(schema),
            _ => Ok(()),
        }
    }
}

/// Encodes batches into one file.
pub trait FormatWriter: Send {
    /// Appends a batch (its schema must be the writer's).
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError>;
    /// Bytes handed to the file so far, compressed as written.
    fn bytes_written(&self) -> u64;
    /// Encoded bytes held in memory and not yet written (a Parquet row group in progress):
    /// with [`FormatWriter::bytes_written`], the file's size so far, for rotation.
    fn buffered_bytes(&self) -> usize;
    /// The memory the writer holds: a row group or stripe in progress, its compressors'
    /// state, and the file's buffers and upload parts. Counted against
    /// `sink.max_buffered_bytes`.
    fn memory_bytes(&self) -> usize;
    /// Writes what is held in memory into the file while it stays open (a Parquet row group
    /// in progress is closed early, as a smaller row group); false when nothing was written
    /// (nothing held, or a format that cannot: the caller commits the file instead).
    fn release(&mut self) -> Result<bool, FormatError> {
        Ok(false)
    }
    /// Writes the rest and the footer. The caller then commits the [`OutputFile`].
    fn finish(self: Box<Self>) -> Result<(), FormatError>;
}

/// Creates the writer for `opts.kind` writing into `file`. `schema` is the batches' schema.
pub fn create_writer(
    opts: &FormatOptions,
    schema: SchemaRef,
    file: OutputFile,
) -> Result<Box<dyn FormatWriter>, FormatError> {
    opts.validate(&schema)?;
    Ok(match opts.kind {
        FormatKind::Parquet => Box::new(parquet::ParquetFormat::new(opts, schema, file)?),
        FormatKind::Orc => Box::new(orc::OrcFormat::new(opts, schema, file)?),
        FormatKind::Json => Box::new(json::JsonFormat::new(opts, schema, file)),
        FormatKind::Csv | FormatKind::Tsv | FormatKind::Text => {
            Box::new(text::TextFormat::new(opts, schema, file))
        }
    })
}

pub(crate) fn encode_err(file: &OutputFile, e: impl std::fmt::Display) -> FormatError {
    FormatError::Encode {
        file: file.location().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod codec_tests;
#[cfg(test)]
mod jsonl_tests;
#[cfg(test)]
mod parquet_tests;
#[cfg(test)]
mod tests;
