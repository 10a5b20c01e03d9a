//! Everything a job needs before data moves, checked without a destination: the repo schema,
//! the source (opened, or not when `validate` runs offline), the decoder with its stages and
//! every input's CSV header, the path template, and a push repo's HTTP route.

use std::sync::Arc;

use crate::config::{Job, SourceSection};
use crate::decode::cost::LineCost;
use crate::decode::meta::MetaColumns;
use crate::decode::{DecodeOptions, RecordDecoder};
use crate::metrics::Metrics;
use crate::schema::RepoSchema;
use crate::sink::paths::PathTemplate;
use crate::source::file::FileSource;
use crate::source::kafka::{KafkaSettings, KafkaSource};
use crate::source::push::http::PushApi;
use crate::source::push::{Durability, Intake, PushSettings, PushSource};
use crate::source::Source;

use super::TaskError;

/// Everything prepared from a job before data moves; `sluice validate` stops here.
pub struct Prepared {
    pub schema: Arc<RepoSchema>,
    /// None when the source was not contacted (`validate` of a Kafka job).
    pub source: Option<Box<dyn Source>>,
    pub decoder: RecordDecoder,
    pub template: PathTemplate,
    /// Where a push source takes its requests.
    pub intake: Option<Arc<Intake>>,
}

/// Loads the schema (the one the job pinned, if it did), opens the source and builds the decoder and path template: every check
/// that needs no destination.
/// `connect`: open sources that need a server (Kafka); `validate` checks the rest offline.
pub fn prepare(job: &Job, connect: bool) -> Result<Prepared, TaskError> {
    let schema = match &job.schema {
        Some(pinned) => pinned.clone(),
        None => Arc::new(RepoSchema::load(&job.resolve(&job.file.repo.schema))?),
    };
    let meta = MetaColumns::new(&schema)?;
    if !meta.is_empty() && !matches!(job.file.source, SourceSection::Kafka { .. }) {
        return Err(TaskError::Job {
            job: job.file.job.name.clone(),
            reason: format!(
                "schema {}: fields {:?} are Kafka message metadata, but this job does not read \
                 Kafka",
                schema.path.display(),
                meta.names(&schema)
            ),
        });
    }
    // Every problem found is reported, not the first: a missing input does not hide a stage
    // or a template that cannot work (`validate` lists them all).
    let mut problems: Vec<TaskError> = Vec::new();
    let mut source = open_source(job, &schema, &meta, connect).unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let intake = source.as_ref().and_then(|s| s.intake());
    let header = match source.as_mut() {
        Some(s) => s.header()?,
        None => None,
    };
    let decoder = RecordDecoder::new(
        schema.clone(),
        DecodeOptions {
            kind: job.input.clone(),
            batch_size: job.file.channel.batch_rows,
            keep_raw: false,
            orc: job.format.kind == crate::format::FormatKind::Orc,
            partition_columns: Vec::new(),
        },
        header.as_deref(),
    )
    .map_err(|e| several(problems.drain(..), e.into()))?;
    if let Some(s) = source.as_mut() {
        for (name, h) in s.headers()? {
            if let Err(e) = decoder.check_header(&name, &h) {
                problems.push(e.into());
            }
        }
    }
    // What the stages make is what the format and the template are checked against: not
    // checked when the stages cannot be planned (they would name columns the stages make).
    let decoder = if job.file.repo.stages.is_empty() {
        decoder
    } else {
        let on_error = crate::stage::OnError::parse(&job.file.repo.on_error).unwrap_or_default();
        match crate::stage::Stages::plan(&job.file.repo.stages, decoder.decoded_schema(), on_error)
        {
            Ok(stages) => decoder.with_stages(stages),
            Err(e) => return Err(several(problems.drain(..), e.into())),
        }
    };
    if let Err(e) = job.format.validate(&decoder.output_schema()) {
        problems.push(e.into());
    }
    let template = PathTemplate::compile(
        &job.file.sink.partition.template,
        &decoder.output_schema(),
        job.repo.as_deref().unwrap_or(&schema.name),
        job.file.sink.partition.hive.unwrap_or(true),
    )
    .map_err(|e| several(problems.drain(..), e.into()))?;
    if !problems.is_empty() {
        let last = problems.pop().expect("not empty");
        return Err(several(problems.drain(..), last));
    }
    Ok(Prepared {
        schema,
        source,
        decoder,
        template,
        intake,
    })
}

/// `last` after the problems found before it: itself when there were none, else all of them.
fn several(before: impl Iterator<Item = TaskError>, last: TaskError) -> TaskError {
    let mut all: Vec<TaskError> = before.collect();
    if all.is_empty() {
        return last;
    }
    all.push(last);
    TaskError::Several(all)
}

/// The push route of a push repo, with the request slots and memory budget its repo keeps
/// for the life of the process (`slot`'s; a run without a listener has no route to share).
pub(super) fn push_api(
    job: &Job,
    intake: Option<&Arc<Intake>>,
    decoder: &RecordDecoder,
    metrics: &Arc<Metrics>,
    slot: &crate::admin::RepoSlot,
) -> Option<Arc<PushApi>> {
    let SourceSection::Push {
        max_body,
        body_timeout,
        max_concurrent,
        max_in_flight,
        ..
    } = &job.file.source
    else {
        return None;
    };
    let max_body = crate::config::parse_bytes(max_body).unwrap_or(16 << 20);
    let max_in_flight =
        crate::config::max_in_flight(max_in_flight.as_deref(), max_body).unwrap_or(256 << 20);
    Some(Arc::new(PushApi::new(
        intake?.clone(),
        decoder.clone(),
        metrics.clone(),
        max_body as usize,
        crate::config::parse_duration(body_timeout).unwrap_or(std::time::Duration::from_secs(30)),
        slot.push_limits(*max_concurrent, max_in_flight),
    )))
}

pub use crate::config::wal_folder;

/// The job's source: opened (a file job's files checked), or None when `connect` is off and
/// the source needs a server or its own folder (Kafka, push).
fn open_source(
    job: &Job,
    schema: &Arc<RepoSchema>,
    meta: &MetaColumns,
    connect: bool,
) -> Result<Option<Box<dyn Source>>, TaskError> {
    Ok(match &job.file.source {
        SourceSection::File {
            paths,
            header,
            chunk_bytes,
            partial_last_line,
            ..
        } => {
            let paths: Vec<_> = paths.iter().map(|p| job.resolve(p)).collect();
            // Files roll at chunk boundaries: the chunk size bounds how far a file can run past
            // `max_rows` / `max_bytes`.
            let chunk = crate::config::parse_bytes(chunk_bytes).unwrap_or(1 << 20) as usize;
            Some(Box::new(
                FileSource::new(
                    &paths,
                    job.input.quoting(),
                    job.input.quoting().is_some() && *header,
                )?
                .with_block_size(chunk)
                .with_cost(LineCost::of(schema, &job.input))
                .leaving_partial_tails(partial_last_line == "leave"),
            ))
        }
        SourceSection::Push {
            durability,
            wal_dir,
            wal_segment_bytes,
            max_pending,
            max_retained,
            chunk_bytes,
            ..
        } => {
            let durability = Durability::parse(durability).unwrap_or(Durability::Wal);
            let bytes = |s: &str| crate::config::parse_bytes(s).unwrap_or(1 << 20);
            let default_retained = match durability {
                Durability::Memory => 256 << 20,
                Durability::Wal => 4 << 30,
            };
            let settings = PushSettings {
                durability,
                wal_dir: wal_folder(job, wal_dir.as_deref()),
                segment_bytes: bytes(wal_segment_bytes),
                max_pending: bytes(max_pending),
                max_retained: max_retained.as_deref().map_or(default_retained, bytes),
                chunk_bytes: bytes(chunk_bytes) as usize,
                drain_timeout: job.stop_deadline / 2,
                move_wal_damage: job.move_wal_damage,
                job: job.file.job.name.clone(),
                quote: job.input.quoting(),
                cost: LineCost::of(schema, &job.input),
                replay_alone: !job.file.repo.stages.is_empty(),
            };
            if connect {
                Some(Box::new(PushSource::open("push", settings)?))
            } else {
                None
            }
        }
        SourceSection::Kafka { .. } if !connect => None,
        SourceSection::Kafka {
            brokers,
            topics,
            auto_offset_reset,
            chunk_bytes,
            options,
            on_gap,
            tombstones,
            ..
        } => Some(Box::new(KafkaSource::new(&KafkaSettings {
            brokers: brokers.clone(),
            topics: topics.clone(),
            group: job.kafka_group().expect("a Kafka job has a group"),
            auto_offset_reset: auto_offset_reset.clone(),
            options: options.clone(),
            chunk_bytes: crate::config::parse_bytes(chunk_bytes).unwrap_or(1 << 20) as usize,
            range: job.range.clone(),
            queue_kbytes: job.channel_bytes / 1024,
            meta: crate::decode::meta::MetaNeeds {
                skip_tombstones: tombstones == "skip",
                ..meta.needs()
            },
            skip_gaps: on_gap == "skip",
            cost: LineCost::of(schema, &job.input),
        })?)),
    })
}
