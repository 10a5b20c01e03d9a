//! `sluice convert`: one input file (or stdin) → one output file, streamed.
//!
//! A reader thread cuts the input into chunks of whole records, decoder threads turn chunks
//! into batches in parallel, and the calling thread puts results back in input order and
//! encodes them. A fixed number of chunk permits bounds what is in flight, so memory stays
//! flat whatever the input size; chunk buffers are recycled.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::deadletter::DeadLetterWriter;
use crate::decode::{Chunk, DecodeError, DecodeOptions, Decoded, RecordDecoder};
use crate::format::{create_writer, FormatError, FormatKind, FormatOptions};
use crate::input::{ChunkReader, InputError, InputSource};
use crate::schema::RepoSchema;
use crate::sink::{Destination, SinkError};

/// Errors that stop a conversion. Nothing is left visible at the output when one occurs.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("{0}")]
    Usage(String),
}

/// What to convert and how.
pub struct ConvertJob {
    pub schema: Arc<RepoSchema>,
    pub input: InputSource,
    pub decode: DecodeOptions,
    pub format: FormatOptions,
    /// Where the data file goes and its path under that destination.
    pub output: Destination,
    pub output_rel: String,
    /// Where the dead-letter file goes and its path under that destination.
    pub dead_letters: Destination,
    pub dead_letters_rel: String,
    /// Replace an existing output file.
    pub overwrite: bool,
    /// Decoder threads.
    pub threads: usize,
    /// Called with progress now and then (raw bytes read, rows written).
    pub progress: Option<Box<dyn FnMut(Progress) + Send>>,
}

/// A progress report.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub raw_bytes: u64,
    pub raw_len: Option<u64>,
    pub rows: u64,
}

/// The outcome of a conversion.
#[derive(Debug, Clone)]
pub struct ConvertSummary {
    pub records: u64,
    pub rows: u64,
    pub dead_letters: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    pub output: String,
    pub dead_letter_file: Option<String>,
}

impl ConvertSummary {
    /// One line for humans.
    pub fn line(&self) -> String {
        let rate = if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        };
        let mut s = format!(
            "{} records: {} rows, {} dead letters; {} in, {} out; {:.2} s, {:.0} rows/s → {}",
            self.records,
            self.rows,
            self.dead_letters,
            human_bytes(self.bytes_in),
            human_bytes(self.bytes_out),
            self.seconds,
            rate,
            self.output
        );
        if let Some(dl) = &self.dead_letter_file {
            s.push_str(&format!(" (dead letters: {dl})"));
        }
        s
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

type WorkItem = (u64, Chunk);
type Done = (u64, Chunk, Decoded);

/// Runs a conversion to the end.
pub fn run(mut job: ConvertJob) -> Result<ConvertSummary, ConvertError> {
    let started = Instant::now();
    if job.format.kind == FormatKind::Text {
        job.decode.keep_raw = true;
    }
    if !job.overwrite && job.output.exists(&job.output_rel)? {
        return Err(SinkError::Exists {
            path: job.output.display(&job.output_rel),
        }
        .into());
    }
    let mut reader = ChunkReader::open(&job.input, job.decode.kind.quoted())?;
    let header = match job.decode.kind {
        crate::decode::InputKind::Csv { header: true, .. } => reader.take_header()?,
        _ => None,
    };
    let decoder = RecordDecoder::new(job.schema.clone(), job.decode.clone(), header.as_deref())?;
    let out_schema = decoder.output_schema();
    job.format.validate(&out_schema)?;

    let file = job.output.create(&job.output_rel)?;
    let writer = create_writer(&job.format, out_schema, file.clone())?;
    let dead = DeadLetterWriter::new(
        job.dead_letters.clone(),
        job.dead_letters_rel.clone(),
        job.input.name(),
    );
    let raw_bytes = reader.raw_bytes.clone();
    let raw_len = reader.raw_len;

    let threads = job.threads.max(1);
    let permits = 2 * threads + 2;
    let (work_tx, work_rx) = bounded::<WorkItem>(permits);
    let (done_tx, done_rx) = bounded::<Result<Done, InputError>>(permits);
    let (free_tx, free_rx) = bounded::<Chunk>(permits);
    for _ in 0..permits {
        free_tx
            .send(Chunk::default())
            .expect("room for every permit");
    }

    let result = std::thread::scope(|scope| {
        let reader_done = done_tx.clone();
        scope.spawn(move || read_loop(reader, free_rx, work_tx, reader_done));
        for _ in 0..threads {
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            let mut dec = decoder.clone();
            scope.spawn(move || {
                for (seq, chunk) in rx {
                    let decoded = dec.decode(&chunk);
                    if tx.send(Ok((seq, chunk, decoded))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(work_rx);
        drop(done_tx);
        let progress = job.progress.take();
        write_loop(
            done_rx,
            free_tx,
            writer,
            dead,
            progress,
            raw_bytes.clone(),
            raw_len,
        )
    });

    let (records, rows, dead) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = file.abort();
            return Err(e);
        }
    };
    let bytes_out = file.bytes_written();
    let dead_count = dead.count();
    let dead_letter_file = match dead.commit() {
        Ok(f) => f,
        Err(e) => {
            let _ = file.abort();
            return Err(e.into());
        }
    };
    let output = file.location().to_string();
    file.commit()?;
    if dead_letter_file.is_none()
        && job.overwrite
        && job.dead_letters.exists(&job.dead_letters_rel)?
    {
        // A dead-letter file from an earlier run of the same conversion no longer applies.
        job.dead_letters.delete(&job.dead_letters_rel)?;
    }
    Ok(ConvertSummary {
        records,
        rows,
        dead_letters: dead_count,
        bytes_in: raw_bytes.load(Ordering::Relaxed),
        bytes_out,
        seconds: started.elapsed().as_secs_f64(),
        output,
        dead_letter_file,
    })
}

fn read_loop(
    mut reader: ChunkReader,
    free: Receiver<Chunk>,
    work: Sender<WorkItem>,
    done: Sender<Result<Done, InputError>>,
) {
    let mut seq = 0u64;
    for mut chunk in free.iter() {
        match reader.next_chunk(&mut chunk) {
            Ok(true) => {
                if work.send((seq, chunk)).is_err() {
                    return;
                }
                seq += 1;
            }
            Ok(false) => return,
            Err(e) => {
                let _ = done.send(Err(e));
                return;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_loop(
    done: Receiver<Result<Done, InputError>>,
    free: Sender<Chunk>,
    mut writer: Box<dyn crate::format::FormatWriter>,
    mut dead: DeadLetterWriter,
    mut progress: Option<Box<dyn FnMut(Progress) + Send>>,
    raw_bytes: Arc<std::sync::atomic::AtomicU64>,
    raw_len: Option<u64>,
) -> Result<(u64, u64, DeadLetterWriter), ConvertError> {
    let mut pending: BTreeMap<u64, (Chunk, Decoded)> = BTreeMap::new();
    let mut next = 0u64;
    let (mut records, mut rows) = (0u64, 0u64);
    let mut last_report = Instant::now();
    let fail = |dead: DeadLetterWriter, e: ConvertError| {
        let _ = dead.abort();
        Err(e)
    };
    for item in done.iter() {
        let (seq, chunk, decoded) = match item {
            Ok(v) => v,
            Err(e) => return fail(dead, e.into()),
        };
        pending.insert(seq, (chunk, decoded));
        while let Some((chunk, decoded)) = pending.remove(&next) {
            next += 1;
            for b in &decoded.batches {
                if let Err(e) = writer.write(b) {
                    return fail(dead, e.into());
                }
            }
            if let Err(e) = dead.write(&decoded.dead) {
                return fail(dead, e.into());
            }
            records += decoded.records;
            rows += decoded.rows();
            // The receiver is gone only when the reader has finished.
            let _ = free.send(chunk);
        }
        if let Some(p) = progress.as_mut() {
            if last_report.elapsed() > Duration::from_millis(100) {
                last_report = Instant::now();
                p(Progress {
                    raw_bytes: raw_bytes.load(Ordering::Relaxed),
                    raw_len,
                    rows,
                });
            }
        }
    }
    if let Err(e) = writer.finish() {
        return fail(dead, e.into());
    }
    Ok((records, rows, dead))
}
