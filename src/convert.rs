//! `sluice convert`: one input file (or stdin) → one output file, streamed.
//!
//! The input is read in chunks of whole records and decoded in parallel by the shared decode
//! pipeline (`pipeline.rs`); this thread encodes the results in input order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deadletter::DeadLetterWriter;
use crate::decode::cost::LineCost;
use crate::decode::{Chunk, DecodeError, DecodeOptions, Decoded, RecordDecoder};
use crate::format::{create_writer, FormatError, FormatKind, FormatOptions};
use crate::input::{ChunkReader, InputError, InputSource};
use crate::pipeline::{self, Produced};
use crate::schema::RepoSchema;
use crate::store::{Destination, StoreError};

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
    Sink(#[from] StoreError),
    #[error(transparent)]
    Stage(#[from] crate::stage::StageError),
    #[error("{0}")]
    Usage(String),
    #[error("stopped (a signal) before the end of the input: nothing was written")]
    Stopped,
    #[error(
        "the {count} dead letters of {output} could not be written, so neither was it: {source}"
    )]
    DeadLetters {
        output: String,
        count: u64,
        source: Box<StoreError>,
    },
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
    /// Filter and transform stages, and what happens to rows they fail on.
    pub stages: Vec<crate::stage::StageSpec>,
    pub on_error: crate::stage::OnError,
    /// Decoder threads.
    pub threads: usize,
    /// Called with progress now and then (raw bytes read, rows written).
    pub progress: Option<Box<dyn FnMut(Progress) + Send>>,
    /// Set by a signal: the conversion stops before its next chunk, removing what it wrote
    /// (its temporary files), and fails with [`ConvertError::Stopped`].
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
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
    /// Rows removed by filter stages; rows stages failed on, dropped (`on_error = drop`).
    pub filtered: u64,
    pub dropped: u64,
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
        let mut stages = String::new();
        if self.filtered > 0 {
            stages.push_str(&format!(", {} filtered out", self.filtered));
        }
        if self.dropped > 0 {
            stages.push_str(&format!(", {} dropped by a stage", self.dropped));
        }
        let mut s = format!(
            "{} records: {} rows, {} dead letters{stages}; {} in, {} out; {:.2} s, {:.0} rows/s → {}",
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

/// Runs a conversion to the end.
pub fn run(mut job: ConvertJob) -> Result<ConvertSummary, ConvertError> {
    let started = Instant::now();
    if job.format.kind == FormatKind::Text {
        job.decode.keep_raw = true;
    }
    if !job.overwrite && job.output.exists(&job.output_rel)? {
        return Err(StoreError::Exists {
            path: job.output.display(&job.output_rel),
        }
        .into());
    }
    if !job.overwrite && job.dead_letters.exists(&job.dead_letters_rel)? {
        return Err(dead_letters_alone(&job));
    }
    let mut reader = ChunkReader::open(&job.input, job.decode.kind.quoting())?
        .with_cost(LineCost::of(&job.schema, &job.decode.kind));
    let header = match job.decode.kind {
        crate::decode::InputKind::Csv { header: true, .. } => reader.take_header()?,
        _ => None,
    };
    let decoder = RecordDecoder::new(job.schema.clone(), job.decode.clone(), header.as_deref())?;
    if !decoder.meta().is_empty() {
        return Err(ConvertError::Usage(format!(
            "schema {}: fields {:?} are Kafka message metadata; a file has none",
            job.schema.path.display(),
            decoder.meta().names(&job.schema)
        )));
    }
    let decoder = if job.stages.is_empty() {
        decoder
    } else {
        if job.format.kind == FormatKind::Text {
            return Err(ConvertError::Usage(
                "text output writes the input lines as they are: stages do not apply to it".into(),
            ));
        }
        let stages =
            crate::stage::Stages::plan(&job.stages, decoder.decoded_schema(), job.on_error)?;
        decoder.with_stages(stages)
    };
    let on_error = job.on_error;
    let out_schema = decoder.output_schema();
    job.format.validate(&out_schema)?;

    // Known before the work, not at its end: a file system without hard links cannot take
    // a create-only commit, and the output's name is then only checked, as above.
    let create_only = !job.overwrite && job.output.commits_create_only(&job.output_rel);
    if !job.overwrite && !create_only {
        tracing::warn!(
            output = %job.output.display(&job.output_rel),
            "this file system makes no hard links: the output's name was checked before the conversion, not reserved, so a conversion to the same name finishing meanwhile would be replaced"
        );
    }
    let file = job.output.create(&job.output_rel)?;
    let writer = create_writer(&job.format, out_schema, file.clone())?;
    let dead = DeadLetterWriter::new(
        job.dead_letters.clone(),
        job.dead_letters_rel.clone(),
        job.input.name(),
    );
    let raw_bytes = reader.raw_bytes.clone();
    let raw_len = reader.raw_len;
    let mut progress = job.progress.take();
    let stop = job.stop.take();
    let mut tally = Tally {
        writer: Some(writer),
        dead: Some(dead),
        records: 0,
        rows: 0,
        filtered: 0,
        dropped: 0,
        last_report: Instant::now(),
    };
    let result = pipeline::run(
        &decoder,
        job.threads,
        |chunk: &mut Chunk| -> Result<Produced<()>, ConvertError> {
            crate::fault::hold_while("hold_convert_read");
            if stop.as_ref().is_some_and(|s| s.load(Ordering::Acquire)) {
                return Err(ConvertError::Stopped);
            }
            Ok(if reader.next_chunk(chunk)? {
                Produced::Chunk(())
            } else {
                Produced::End
            })
        },
        |(), _chunk, mut decoded| {
            tally.dropped +=
                crate::stage::enforce(on_error, &mut decoded.dead).map_err(ConvertError::Usage)?;
            tally.add(decoded)?;
            if let Some(p) = progress.as_mut() {
                if tally.last_report.elapsed() > Duration::from_millis(100) {
                    tally.last_report = Instant::now();
                    p(Progress {
                        raw_bytes: raw_bytes.load(Ordering::Relaxed),
                        raw_len,
                        rows: tally.rows,
                    });
                }
            }
            Ok(())
        },
    )
    .and_then(|()| {
        let w = tally.writer.take().expect("writer until finish");
        w.finish().map_err(ConvertError::from)
    });
    let (filtered, dropped) = (tally.filtered, tally.dropped);
    let result = match result {
        Ok(()) => Ok((
            tally.records,
            tally.rows,
            tally.dead.take().expect("dead letters"),
        )),
        Err(e) => {
            if let Some(d) = tally.dead.take() {
                let _ = d.abort();
            }
            Err(e)
        }
    };

    let (records, rows, dead) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = file.abort();
            return Err(e);
        }
    };
    let bytes_out = file.bytes_written();
    let dead_count = dead.count();
    let output = file.location().to_string();
    // The dead letters first: a kill between the two commits leaves dead letters without
    // their output (with --overwrite, the earlier output is removed before), which the next conversion refuses to pair with its own (above), not an
    // output without its dead letters, which looked finished with the dead letters lost.
    // Without --overwrite both commits are create-only: of two conversions to one name, the
    // one whose dead letters lose stops before its output.
    crate::fault::hold_while("hold_convert_commit");
    // With --overwrite, the earlier output goes first: a stop between the two commits then
    // leaves this run's dead letters without an output (which the next conversion says),
    // never beside the earlier run's output as if they were its own.
    // An earlier run's dead letters go first too when this run has none (with some, they
    // are replaced by the commit).
    if job.overwrite {
        if job.output.exists(&job.output_rel)? {
            job.output.delete(&job.output_rel)?;
        }
        if !dead.has_file() && job.dead_letters.exists(&job.dead_letters_rel)? {
            job.dead_letters.delete(&job.dead_letters_rel)?;
        }
    }
    // Create-only where its own file system can (the dead letters may be on another); looked
    // at only when there are dead letters (the look makes their folder).
    let dead_create_only = !job.overwrite
        && dead.has_file()
        && job.dead_letters.commits_create_only(&job.dead_letters_rel);
    let dead_commit = if dead_create_only {
        dead.commit_new()
    } else {
        dead.commit()
    };
    let dead_letter_file = match dead_commit {
        Ok(f) => f,
        Err(StoreError::Exists { .. }) => {
            let _ = file.abort();
            // Another conversion to the name committed first (or stopped half-way).
            if job.output.exists(&job.output_rel)? {
                return Err(StoreError::Exists {
                    path: job.output.display(&job.output_rel),
                }
                .into());
            }
            return Err(dead_letters_alone(&job));
        }
        Err(source) => {
            let _ = file.abort();
            return Err(ConvertError::DeadLetters {
                output: output.clone(),
                count: dead_count,
                source: Box::new(source),
            });
        }
    };
    // With none of its own, another conversion's may have been committed since the check at
    // the start (it stopped before its output, or runs): this output must not stand beside
    // them as if they were its.
    if dead_letter_file.is_none()
        && create_only
        && job.dead_letters.exists(&job.dead_letters_rel)?
    {
        let _ = file.abort();
        return Err(dead_letters_alone(&job));
    }
    crate::fault::hold_while("hold_convert_output");
    let committed = if create_only {
        file.commit_new()
    } else {
        file.commit()
    };
    if let Err(e) = committed {
        // Whether the output landed cannot always be told (a refused create-only upload whose
        // object could not be read back, a store call that succeeds after reporting failure):
        // its dead letters stay, and if it did not land, the next conversion to the name says
        // they stand alone.
        return Err(match &dead_letter_file {
            Some(d) => ConvertError::Usage(format!(
                "{e} (its dead letters stand at {d}: if no output of this conversion stands, remove them)"
            )),
            None => e.into(),
        });
    }
    Ok(ConvertSummary {
        records,
        rows,
        dead_letters: dead_count,
        filtered,
        dropped,
        bytes_in: raw_bytes.load(Ordering::Relaxed),
        bytes_out,
        seconds: started.elapsed().as_secs_f64(),
        output,
        dead_letter_file,
    })
}

/// The error of a dead-letter file standing without its output.
fn dead_letters_alone(job: &ConvertJob) -> ConvertError {
    ConvertError::Usage(format!(
        "the dead letters {} of {} stand without it: a conversion to that name was stopped \
         between its two commits, or runs now, or one into another folder writes its dead \
         letters there too (a --dead-letters folder shared by outputs of one name: give each \
         its own, or a file name). Remove them, or convert with --overwrite",
        job.dead_letters.display(&job.dead_letters_rel),
        job.output.display(&job.output_rel)
    ))
}

/// Running totals of the writing side.
struct Tally {
    writer: Option<Box<dyn crate::format::FormatWriter>>,
    dead: Option<DeadLetterWriter>,
    records: u64,
    rows: u64,
    /// Rows removed by filter stages, and rows stages failed on that `on_error` dropped.
    filtered: u64,
    dropped: u64,
    last_report: Instant,
}

impl Tally {
    fn add(&mut self, decoded: Decoded) -> Result<(), ConvertError> {
        let w = self.writer.as_mut().expect("writer until finish");
        for b in &decoded.batches {
            w.write(b)?;
        }
        self.dead
            .as_mut()
            .expect("dead letters until commit")
            .write(&decoded.dead)?;
        self.records += decoded.records;
        self.rows += decoded.rows();
        self.filtered += decoded.filtered;
        Ok(())
    }
}
