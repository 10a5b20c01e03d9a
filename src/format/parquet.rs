//! Parquet via parquet-rs's `ArrowWriter`.
//!
//! Column encodings matter more than the codec level: timestamps use DELTA_BINARY_PACKED, and
//! with `Dictionary::Auto` dictionary encoding is kept only for columns whose first batch shows
//! few distinct values (hosts, methods, status codes) — high-cardinality columns (ids, IPs)
//! skip the dictionary attempt that would fall back anyway. Timestamps keep their unit (ms/us)
//! and UTC flag, so DuckDB, Spark and Athena read them as timestamps.

use std::collections::HashSet;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use super::{encode_err, Codec, Dictionary, FormatError, FormatOptions, FormatWriter};
use crate::store::OutputFile;

/// Upper bound of one row group's encoded size held in memory.
const MAX_ROW_GROUP_BYTES: usize = 128 * 1024 * 1024;

pub(crate) struct ParquetFormat {
    file: OutputFile,
    schema: SchemaRef,
    opts: FormatOptions,
    writer: Option<ArrowWriter<OutputFile>>,
    /// What the open writer holds besides its data, before and after its columns compress a
    /// first page: see [`fixed_cost`].
    fixed: (usize, usize),
    rows: u64,
}

/// A column compresses its first page at 20,000 rows (parquet's page row limit) or 1 MiB.
const FIRST_PAGE_ROWS: u64 = 20_000;

/// What an open Parquet writer holds besides what its `memory_size` counts (parquet 59),
/// before and after its columns compress a first page. `memory_size` counts the column
/// buffers (about 100 KiB a column from the start). Each leaf column also has its own codec:
/// with zstd it keeps a decompression context from the start (about 64 KiB) and, from its
/// first compressed page on, a compression context (measured at about 450 KiB at level 1;
/// higher levels keep larger ones: estimated). Other codecs keep nothing that lasts.
fn fixed_cost(schema: &SchemaRef, codec: Codec) -> (usize, usize) {
    let columns = leaf_columns(schema);
    match codec {
        Codec::Zstd(level) => {
            let context = match level {
                ..=3 => 448 * 1024,
                4..=9 => 2 << 20,
                _ => 8 << 20,
            };
            (columns * 64 * 1024, columns * (64 * 1024 + context))
        }
        _ => (0, 0),
    }
}

/// Leaf columns of `schema` (what Parquet stores), walked with a work list.
pub(crate) fn leaf_columns(schema: &SchemaRef) -> usize {
    use arrow::datatypes::DataType;
    let mut todo: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    let mut leaves = 0;
    while let Some(t) = todo.pop() {
        match t {
            DataType::Struct(fields) => todo.extend(fields.iter().map(|f| f.data_type())),
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                todo.push(f.data_type())
            }
            DataType::Map(f, _) => todo.push(f.data_type()),
            _ => leaves += 1,
        }
    }
    leaves
}

impl ParquetFormat {
    pub fn new(
        opts: &FormatOptions,
        schema: SchemaRef,
        file: OutputFile,
    ) -> Result<Self, FormatError> {
        compression(opts.codec())?;
        Ok(ParquetFormat {
            file,
            fixed: fixed_cost(&schema, opts.codec()),
            rows: 0,
            schema,
            opts: opts.clone(),
            writer: None,
        })
    }

    fn open(&mut self, first: &RecordBatch) -> Result<(), FormatError> {
        let props = properties(&self.opts, &self.schema, Some(first))?;
        let w = ArrowWriter::try_new(self.file.clone(), self.schema.clone(), Some(props))
            .map_err(|e| encode_err(&self.file, e))?;
        self.writer = Some(w);
        Ok(())
    }
}

fn compression(codec: Codec) -> Result<Compression, FormatError> {
    let bad = |e: parquet::errors::ParquetError| FormatError::Option(e.to_string());
    Ok(match codec {
        Codec::None => Compression::UNCOMPRESSED,
        Codec::Zstd(l) => Compression::ZSTD(ZstdLevel::try_new(l).map_err(bad)?),
        Codec::Snappy => Compression::SNAPPY,
        Codec::Gzip(l) => Compression::GZIP(GzipLevel::try_new(l).map_err(bad)?),
        Codec::Lz4 => Compression::LZ4_RAW,
        Codec::Zlib(_) => {
            return Err(FormatError::Option(
                "parquet has no zlib codec (use gzip)".into(),
            ))
        }
    })
}

/// Writer properties for `schema`; with `Dictionary::Auto` the first batch picks the columns
/// that get a dictionary.
pub(crate) fn properties(
    opts: &FormatOptions,
    schema: &SchemaRef,
    first: Option<&RecordBatch>,
) -> Result<WriterProperties, FormatError> {
    let version = match opts.parquet_page_version {
        1 => WriterVersion::PARQUET_1_0,
        2 => WriterVersion::PARQUET_2_0,
        v => {
            return Err(FormatError::Option(format!(
                "parquet page version must be 1 or 2, not {v}"
            )))
        }
    };
    let mut b = WriterProperties::builder()
        .set_writer_version(version)
        .set_compression(compression(opts.codec())?)
        .set_max_row_group_row_count(Some(opts.row_group_rows))
        .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES))
        .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
        .set_statistics_enabled(if opts.statistics {
            EnabledStatistics::Chunk
        } else {
            EnabledStatistics::None
        })
        .set_dictionary_enabled(opts.dictionary != Dictionary::Off);
    for (i, field) in schema.fields().iter().enumerate() {
        let path = ColumnPath::from(field.name().as_str());
        match field.data_type() {
            DataType::Timestamp(..) => {
                b = b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
            }
            DataType::Float32 | DataType::Float64 if opts.dictionary == Dictionary::Auto => {
                b = b.set_column_dictionary_enabled(path, false);
            }
            DataType::Utf8 | DataType::Int32 | DataType::Int64
                if opts.dictionary == Dictionary::Auto =>
            {
                if let Some(batch) = first {
                    b = b.set_column_dictionary_enabled(path, low_cardinality(batch.column(i)));
                }
            }
            _ => {}
        }
    }
    Ok(b.build())
}

/// True when at most a tenth of the (first 8192) values are distinct.
fn low_cardinality(col: &dyn Array) -> bool {
    let n = col.len().min(8192);
    if n < 64 {
        return true;
    }
    let limit = n / 10;
    macro_rules! count {
        ($iter:expr) => {{
            let mut seen = HashSet::with_capacity(limit + 1);
            for v in $iter.take(n).flatten() {
                seen.insert(v);
                if seen.len() > limit {
                    return false;
                }
            }
            true
        }};
    }
    match col.data_type() {
        DataType::Utf8 => count!(col.as_string::<i32>().iter()),
        DataType::Int32 => count!(col.as_primitive::<Int32Type>().iter()),
        DataType::Int64 => count!(col.as_primitive::<Int64Type>().iter()),
        _ => true,
    }
}

impl FormatWriter for ParquetFormat {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        if self.writer.is_none() {
            self.open(batch)?;
        }
        let w = self.writer.as_mut().expect("opened above");
        self.rows += batch.num_rows() as u64;
        w.write(batch).map_err(|e| encode_err(&self.file, e))
    }

    fn bytes_written(&self) -> u64 {
        self.file.bytes_written()
    }

    fn buffered_bytes(&self) -> usize {
        self.writer.as_ref().map_or(0, |w| w.in_progress_size())
    }

    fn memory_bytes(&self) -> usize {
        // `memory_size`: the row group in progress, encoded pages and values not yet encoded.
        let Some(w) = &self.writer else {
            return self.file.held_bytes() as usize;
        };
        let data = w.memory_size();
        // A page is compressed at 20,000 rows or 1 MiB encoded (`memory_size` starts near
        // 100 KiB a column: it counts the column buffers' capacity).
        let compressing = self.rows >= FIRST_PAGE_ROWS
            || w.in_progress_size() >= 1 << 20
            || !w.flushed_row_groups().is_empty();
        let fixed = if compressing {
            self.fixed.1
        } else {
            self.fixed.0
        };
        data + fixed + self.file.held_bytes() as usize
    }

    fn finish(mut self: Box<Self>) -> Result<(), FormatError> {
        if self.writer.is_none() {
            // An empty file still carries the schema.
            let props = properties(&self.opts, &self.schema, None)?;
            let w = ArrowWriter::try_new(self.file.clone(), self.schema.clone(), Some(props))
                .map_err(|e| encode_err(&self.file, e))?;
            self.writer = Some(w);
        }
        let w = self.writer.take().expect("set above");
        let mut inner = w.into_inner().map_err(|e| encode_err(&self.file, e))?;
        std::io::Write::flush(&mut inner).map_err(|e| encode_err(&self.file, e))
    }
}
