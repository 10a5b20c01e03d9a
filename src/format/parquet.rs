//! Parquet via parquet-rs's column writers, a row group's columns encoded in parallel when
//! asked (`FormatOptions::parallel`, set by `convert`).
//!
//! `ArrowWriter` encodes a file's columns one after the other on the caller's thread, so one
//! big file used one core. Here the schema and properties are `ArrowWriter`'s; with
//! `parallel` batches wait until [`PENDING_ROWS`] rows have come, and each such round of at
//! least [`PARALLEL_ROWS`] rows is written into the column writers on the rayon pool
//! (`encode-N`, `convert --threads` of them), one task per top-level field writing the
//! round's batches in order (each writer encodes and compresses its pages as they fill), and a
//! full row group's writers are closed (the last pages compressed) in parallel too. The chunks
//! are appended in order on the caller's thread. The bytes are what `ArrowWriter` writes for the same batches and row
//! group limits, in parallel or not, except where [`MAX_ROW_GROUP_BYTES`] ends a row group:
//! the bytes per row are estimated once a round (`ArrowWriter`: once a batch), so a row group
//! may pass the limit by up to one round. A job's sink workers leave it off: they encode many files
//! at once on their own threads, and on Kafka partitions' small batches the pool cost CPU
//! (measured: same wall time, 4 % more CPU, more system time).
//!
//! Column encodings matter more than the codec level: timestamps use DELTA_BINARY_PACKED,
//! strings without a dictionary DELTA_LENGTH_BYTE_ARRAY (on web-log data 6 % smaller files and
//! 8 % less CPU than PLAIN: zstd reads the text without a length before each value; both
//! left out with `ParquetEncodings::Plain`, for readers without them), and
//! with `Dictionary::Auto` dictionary encoding is kept only for columns whose first batch shows
//! few distinct values (hosts, methods, status codes) — high-cardinality columns (ids, IPs)
//! skip the dictionary attempt that would fall back anyway. Timestamps keep their unit (ms/us)
//! and UTC flag, so DuckDB, Spark and Athena read them as timestamps (a Delta table's in
//! microseconds, see `units`).

use std::collections::HashSet;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

use super::{
    encode_err, Codec, Dictionary, FormatError, FormatOptions, FormatWriter, ParquetEncodings,
};
use crate::store::OutputFile;

/// Upper bound of one row group's encoded size held in memory.
const MAX_ROW_GROUP_BYTES: usize = 128 * 1024 * 1024;

pub(crate) struct ParquetFormat {
    file: OutputFile,
    schema: SchemaRef,
    opts: FormatOptions,
    writer: Option<Open>,
    /// What the open writer holds besides its data, before and after its columns compress a
    /// first page: see [`fixed_cost`].
    fixed: (usize, usize),
    /// After the last write: the row group's encoded size so far, and what the writer holds
    /// besides the file's buffers. They change only when a batch is written, and reading
    /// them walks every column's pages: the sink asks for them per item for every open file.
    sizes: (usize, usize),
    /// With `micros`: the file's schema where it differs from the batches' (see
    /// [`super::units`]), each batch cast to it.
    micros: Option<SchemaRef>,
}

/// Batches of fewer rows are encoded on the caller's thread even with `parallel`:
/// handing a few thousand values per column to the pool costs more than it saves.
const PARALLEL_ROWS: usize = 4096;

/// With `parallel`, batches are held until this many rows (or [`PENDING_BYTES`]) are waiting,
/// then each field writes all of them in one task on the pool: the decoder's batches are small
/// (a 1 MiB chunk, about 3,000 web-log rows, decodes within the core's cache), and the pool is
/// worth its hand-off only for larger rounds.
const PENDING_ROWS: usize = 16 * 1024;
const PENDING_BYTES: usize = 16 * 1024 * 1024;

/// One field of a round's batches and the column writers of its leaves.
type Task<'a> = (&'a Field, Vec<&'a ArrayRef>, &'a mut [ArrowColumnWriter]);

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

/// Leaf columns of `schema` (what Parquet stores).
pub(crate) fn leaf_columns(schema: &SchemaRef) -> usize {
    schema
        .fields()
        .iter()
        .map(|f| leaves_of(f.data_type()))
        .sum()
}

/// Leaf columns of one field of type `t`, walked with a work list.
fn leaves_of(t: &DataType) -> usize {
    let mut todo: Vec<&DataType> = vec![t];
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
        let micros = opts
            .micros
            .then(|| super::units::micros_schema(&schema))
            .flatten();
        let schema = micros.clone().unwrap_or(schema);
        Ok(ParquetFormat {
            file,
            fixed: fixed_cost(&schema, opts.codec()),
            sizes: (0, 0),
            micros,
            schema,
            opts: opts.clone(),
            writer: None,
        })
    }

    fn open(&mut self, first: Option<&RecordBatch>) -> Result<&mut Open, FormatError> {
        if self.writer.is_none() {
            let props = properties(&self.opts, &self.schema, first)?;
            let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
            let w = ArrowWriter::try_new(self.file.clone(), self.schema.clone(), Some(props))
                .and_then(|w| w.into_serialized_writer())
                .map_err(|e| encode_err(&self.file, e))?;
            self.writer = Some(Open {
                factory: ArrowRowGroupWriterFactory::new(&w.0, self.schema.clone()),
                file: w.0,
                group: None,
                pending: Vec::new(),
                pending_rows: 0,
                pending_bytes: 0,
                max_rows,
                parallel: self.opts.parallel,
                schema: self.schema.clone(),
                field_leaves: self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| leaves_of(f.data_type()))
                    .collect(),
            });
        }
        Ok(self.writer.as_mut().expect("opened above"))
    }
}

/// An open file: the file writer, and the row group in progress.
struct Open {
    file: SerializedFileWriter<OutputFile>,
    factory: ArrowRowGroupWriterFactory,
    group: Option<Group>,
    /// With `parallel`: batches not yet written, their rows and memory.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    pending_bytes: usize,
    /// Rows per row group (`row_group_rows`).
    max_rows: usize,
    /// Encode on the rayon pool (`parallel`).
    parallel: bool,
    /// The file's schema, and how many leaf columns (column writers) each field has.
    schema: SchemaRef,
    field_leaves: Vec<usize>,
}

/// A row group in progress: one writer per leaf column.
struct Group {
    writers: Vec<ArrowColumnWriter>,
    rows: usize,
}

impl Group {
    /// The encoded size the row group would have if closed now.
    fn estimated_bytes(&self) -> usize {
        self.writers
            .iter()
            .map(|w| w.get_estimated_total_bytes())
            .sum()
    }
}

impl Open {
    /// Appends `batch` (with `parallel`, once enough batches wait: [`PENDING_ROWS`]).
    fn write(&mut self, batch: &RecordBatch) -> parquet::errors::Result<()> {
        if !self.parallel {
            return self.write_round(vec![batch.clone()]);
        }
        self.pending_rows += batch.num_rows();
        self.pending_bytes += batch.get_array_memory_size();
        self.pending.push(batch.clone());
        if self.pending_rows >= PENDING_ROWS || self.pending_bytes >= PENDING_BYTES {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Writes the batches held back by [`Open::write`].
    fn write_pending(&mut self) -> parquet::errors::Result<()> {
        self.pending_rows = 0;
        self.pending_bytes = 0;
        let batches = std::mem::take(&mut self.pending);
        self.write_round(batches)
    }

    /// Appends `batches` in order, closing row groups at `max_rows` rows or
    /// [`MAX_ROW_GROUP_BYTES`]. The column writers see each batch (or its slices at a row
    /// group's end) as one write, as `ArrowWriter` does.
    fn write_round(&mut self, batches: Vec<RecordBatch>) -> parquet::errors::Result<()> {
        let mut queue: std::collections::VecDeque<RecordBatch> =
            batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        while !queue.is_empty() {
            if self.group.is_none() {
                let index = self.file.flushed_row_groups().len();
                self.group = Some(Group {
                    writers: self.factory.create_column_writers(index)?,
                    rows: 0,
                });
            }
            let group = self.group.as_mut().expect("set above");
            let mut room = self.max_rows - group.rows;
            // Past the first rows, the measured bytes per row say how many more fit.
            let bytes = group.estimated_bytes();
            if let Some(per_row) = bytes.checked_div(group.rows).filter(|b| *b > 0) {
                room = room.min(MAX_ROW_GROUP_BYTES.saturating_sub(bytes) / per_row);
            }
            let mut parts = Vec::new();
            let mut take = 0;
            while take < room {
                let Some(b) = queue.pop_front() else { break };
                let n = (room - take).min(b.num_rows());
                if n < b.num_rows() {
                    queue.push_front(b.slice(n, b.num_rows() - n));
                    parts.push(b.slice(0, n));
                } else {
                    parts.push(b);
                }
                take += n;
            }
            if take > 0 {
                // One task per field: its leaves are computed and written there, so the
                // levels of only the fields being written are held at once.
                let mut tasks = Vec::with_capacity(self.field_leaves.len());
                let mut rest = group.writers.as_mut_slice();
                for (i, n) in self.field_leaves.iter().enumerate() {
                    let (writers, tail) = std::mem::take(&mut rest).split_at_mut(*n);
                    rest = tail;
                    let columns = parts.iter().map(|p| p.column(i)).collect();
                    tasks.push((self.schema.field(i), columns, writers));
                }
                let write = |(field, columns, writers): Task| {
                    columns.into_iter().try_for_each(|column| {
                        let leaves = compute_leaves(field, column)?;
                        if leaves.len() != writers.len() {
                            return Err(parquet::errors::ParquetError::General(format!(
                                "field `{}` has {} leaf columns, the file's schema {}",
                                field.name(),
                                leaves.len(),
                                writers.len()
                            )));
                        }
                        writers
                            .iter_mut()
                            .zip(&leaves)
                            .try_for_each(|(w, leaf)| w.write(leaf))
                    })
                };
                if self.parallel && take >= PARALLEL_ROWS {
                    tasks.into_par_iter().try_for_each(write)?;
                } else {
                    tasks.into_iter().try_for_each(write)?;
                }
                group.rows += take;
            }
            if group.rows >= self.max_rows
                || take == 0
                || group.estimated_bytes() >= MAX_ROW_GROUP_BYTES
            {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Closes the row group in progress (its columns in parallel) and appends it to the file.
    fn flush(&mut self) -> parquet::errors::Result<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        if group.rows == 0 {
            return Ok(());
        }
        let chunks = if self.parallel {
            group
                .writers
                .into_par_iter()
                .map(ArrowColumnWriter::close)
                .collect::<parquet::errors::Result<Vec<ArrowColumnChunk>>>()?
        } else {
            group
                .writers
                .into_iter()
                .map(ArrowColumnWriter::close)
                .collect::<parquet::errors::Result<Vec<ArrowColumnChunk>>>()?
        };
        let mut rg = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut rg)?;
        }
        rg.close()?;
        Ok(())
    }

    /// The encoded size of the row group in progress.
    fn in_progress_size(&self) -> usize {
        self.group.as_ref().map_or(0, Group::estimated_bytes)
    }

    /// What the row group in progress and the batches not yet written hold in memory.
    fn memory_size(&self) -> usize {
        self.pending_bytes
            + self.group.as_ref().map_or(0, |g| {
                g.writers.iter().map(ArrowColumnWriter::memory_size).sum()
            })
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
    let delta = opts.parquet_encodings == ParquetEncodings::Delta;
    if !delta {
        // Page version 2 would otherwise choose delta encodings of its own.
        b = b.set_encoding(Encoding::PLAIN);
    }
    for (i, field) in schema.fields().iter().enumerate() {
        let path = ColumnPath::from(field.name().as_str());
        match field.data_type() {
            DataType::Timestamp(..) => {
                b = b.set_column_dictionary_enabled(path.clone(), false);
                if delta {
                    b = b.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
                }
            }
            DataType::Float32 | DataType::Float64 if opts.dictionary == Dictionary::Auto => {
                b = b.set_column_dictionary_enabled(path, false);
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary => {
                // Values without a dictionary (and a dictionary's fallback) are written as
                // their bytes end to end after their lengths: zstd sees the text alone, and
                // the file is smaller and cheaper to compress than with a length before each.
                if delta {
                    b = b.set_column_encoding(path.clone(), Encoding::DELTA_LENGTH_BYTE_ARRAY);
                }
                if opts.dictionary == Dictionary::Auto {
                    if let Some(batch) = first {
                        b = b.set_column_dictionary_enabled(path, low_cardinality(batch.column(i)));
                    }
                }
            }
            DataType::Int32 | DataType::Int64 if opts.dictionary == Dictionary::Auto => {
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

impl ParquetFormat {
    /// The row group's encoded size so far, and what the open writer holds besides the file's
    /// buffers: `memory_size` (the row group in progress, encoded pages and values not yet
    /// encoded) and the codecs' state.
    fn measure(&self) -> (usize, usize) {
        let Some(w) = &self.writer else {
            return (0, 0);
        };
        let in_progress = w.in_progress_size();
        // The codecs belong to the row group in progress's column writers, and go with them
        // when it is closed. A page is compressed at 20,000 rows or 1 MiB encoded
        // (`memory_size` starts near 100 KiB a column: it counts the column buffers' capacity).
        let fixed = match &w.group {
            // Batches waiting for the pool (`parallel`) get writers when written.
            None if w.pending.is_empty() => 0,
            None => self.fixed.0,
            Some(g) if g.rows as u64 >= FIRST_PAGE_ROWS || in_progress >= 1 << 20 => self.fixed.1,
            Some(_) => self.fixed.0,
        };
        (in_progress, w.memory_size() + fixed)
    }
}

impl FormatWriter for ParquetFormat {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        let file = self.file.clone();
        let cast;
        // (The sink and compaction cast first: cast here only what comes otherwise.)
        let batch = match &self.micros {
            Some(to) if batch.schema().fields() != to.fields() => {
                cast = super::units::to_micros(batch, to).map_err(|e| encode_err(&file, e))?;
                &cast
            }
            _ => batch,
        };
        let w = self.open(Some(batch))?;
        w.write(batch).map_err(|e| encode_err(&file, e))?;
        self.sizes = self.measure();
        Ok(())
    }

    fn bytes_written(&self) -> u64 {
        self.file.bytes_written()
    }

    fn buffered_bytes(&self) -> usize {
        self.sizes.0
    }

    fn memory_bytes(&self) -> usize {
        self.sizes.1 + self.file.held_bytes() as usize
    }

    fn release(&mut self) -> Result<bool, FormatError> {
        let file = self.file.clone();
        let Some(w) = self.writer.as_mut() else {
            return Ok(false);
        };
        if w.pending.is_empty() && w.group.as_ref().is_none_or(|g| g.rows == 0) {
            return Ok(false);
        }
        w.write_pending().map_err(|e| encode_err(&file, e))?;
        w.flush().map_err(|e| encode_err(&file, e))?;
        self.sizes = self.measure();
        Ok(true)
    }

    fn finish(mut self: Box<Self>) -> Result<(), FormatError> {
        // An empty file still carries the schema.
        let file = self.file.clone();
        let w = self.open(None)?;
        w.write_pending().map_err(|e| encode_err(&file, e))?;
        w.flush().map_err(|e| encode_err(&file, e))?;
        let w = self.writer.take().expect("opened above");
        let mut inner = w.file.into_inner().map_err(|e| encode_err(&file, e))?;
        std::io::Write::flush(&mut inner).map_err(|e| encode_err(&self.file, e))
    }
}
