//! One export task per repo and its state machine:
//! New → (Restoring) → Running → Stopping → Stopped, or Failed.
//!
//! A task owns one channel, N sink workers (one channel lane each), one spill, and the source
//! side: source → decode pipeline → channel. On start every partition resumes from its
//! checkpoint in the destination (after removing files of a commit that died half-way); a spill
//! left by a graceful stop is restored into the channel first. A stop request (SIGINT/SIGTERM)
//! stops the source, lets the workers commit what they hold, and spills the rest of the channel
//! to disk, all within the stop deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::DataType;

use crate::admin::{Live, RepoSlot};
use crate::channel::Channel;
use crate::commit::checkpoint::Checkpoints;
use crate::config::Job;
use crate::metrics::Metrics;
use crate::schema::RepoSchema;
use crate::sink::control::Control;
use crate::sink::worker::{self, Rotation, WorkerContext};
use crate::source::push::Intake;
use crate::store::Destination;

mod admin_listener;
mod below_log;
mod claims;
mod destinations;
mod ended;
mod error;
mod feed;
mod fenced;
mod file_identity;
mod foreign_log;
pub mod groups;
mod left_wal;
pub mod many;
mod membership;
mod prepare;
mod progress;
pub mod reload;
mod respill;
mod restored;
mod roll_backs;
mod spill_move;
mod spilling;
mod stall;
mod unclaimed;

pub use admin_listener::{start_admin, AdminServer};
pub use destinations::{dead_letters_at, destination, destination_at};
pub use error::TaskError;
use prepare::push_api;
pub use prepare::{prepare, wal_folder, Prepared};

use ended::{check_committed, shortfall};
use feed::source_loop;
use membership::TaskMembership;
pub use roll_backs::{
    already_rolled_back, compacted, refuse_compacted, roll_backs, FromCheckpoint,
};
use spilling::{graceful_stop, restore_spill, spill_owner};

/// The states of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    New,
    Restoring,
    Running,
    Stopping,
    Stopped,
    Failed,
}

/// Removes, on a thread of its own, local temporary files that no live write can still own:
/// older than a file may stay open (`max_age`) plus the stop deadline, with an hour to spare.
fn sweep_in_background(job: &Job, dest: &Destination, dead: &Destination) {
    let older_than = job.max_age + job.stop_deadline + std::time::Duration::from_secs(3600);
    let mut dests = vec![dest.clone()];
    if dead.url() != dest.url() {
        dests.push(dead.clone());
    }
    let spawned = std::thread::Builder::new()
        .name("sweep".into())
        .spawn(move || {
            for d in dests {
                match d.sweep_temp_files(older_than) {
                    Ok((0, _)) => {}
                    Ok((n, bytes)) => tracing::info!(
                        destination = %d.url(), files = n, bytes,
                        "removed temporary files of writes that never finished"
                    ),
                    Err(e) => tracing::warn!(destination = %d.url(), error = %e, "could not sweep temporary files"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the temporary-file sweep");
    }
}

/// How to start.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replay every partition from its checkpoint with this sequence number (once: see
    /// [`FromCheckpoint`]).
    pub from_checkpoint: Option<FromCheckpoint>,
    /// Drop a spill instead of restoring it (its records are replayed from the source).
    pub discard_spill: bool,
    /// Decoder threads (0: the number of cores).
    pub threads: usize,
    /// Draw progress bars of a bounded run (on a terminal).
    pub progress: bool,
    /// The repo's place on the admin listener, which outlives the run (see [`start_admin`]).
    /// Without one, a job with `[admin]` gets a listener for the length of the run.
    pub admin: Option<Arc<RepoSlot>>,
    /// A job file's repos: the consumer group each runs in now (a reload is checked against
    /// the others').
    pub groups: Option<groups::Groups>,
}

/// The name a repo goes by in metrics, admin routes, `{repo}` in path templates and the
/// dead-letter folder: its `[[repos]]` name, or its schema's name in a one-repo job file (the
/// job's name when the schema does not load; `prepare` reports why).
pub fn repo_label(job: &Job) -> String {
    job.repo.clone().unwrap_or_else(|| match &job.schema {
        Some(s) => s.name.clone(),
        None => RepoSchema::load(&job.resolve(&job.file.repo.schema))
            .map(|s| s.name)
            .unwrap_or_else(|_| job.file.job.name.clone()),
    })
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub state: TaskState,
    pub rows: u64,
    pub dead_letters: u64,
    pub files: u64,
    pub commits: u64,
    pub seconds: f64,
    /// The source ended by itself (a bounded run read everything), not stopped early.
    pub ended: bool,
}

fn transition(state: &mut TaskState, next: TaskState, job: &str, metrics: &Metrics) {
    tracing::info!(job, from = ?*state, to = ?next, "task state");
    *state = next;
    metrics.set_state(&format!("{next:?}").to_lowercase());
}

/// Runs a job to its end (bounded sources) or until `stop` is set.
pub fn run(job: &Job, opts: RunOptions, stop: Arc<AtomicBool>) -> Result<RunSummary, TaskError> {
    let started = Instant::now();
    let name = job.file.job.name.clone();
    let mut state = TaskState::New;
    tracing::info!(job = %name, "task state New");
    // A listener of its own when the caller has none to share.
    let own_admin = match &opts.admin {
        Some(_) => None,
        None => start_admin(std::slice::from_ref(job))?,
    };
    let label = repo_label(job);
    let slot = opts
        .admin
        .clone()
        .or_else(|| own_admin.as_ref().and_then(|a| a.admin.slot(&label)));
    let metrics = match &slot {
        Some(s) => s.metrics.clone(),
        None => Arc::new(Metrics::new(&label)),
    };
    let result = run_inner(job, &opts, &stop, &mut state, &metrics, slot.as_deref());
    match &result {
        Ok(_) => transition(&mut state, TaskState::Stopped, &name, &metrics),
        Err(e) => {
            tracing::error!(job = %name, error = %e, "task failed");
            transition(&mut state, TaskState::Failed, &name, &metrics);
            if let Some(slot) = &slot {
                slot.failed(e.to_string());
            }
        }
    }
    result.map(|ctl| RunSummary {
        state,
        rows: ctl.rows.load(Ordering::Relaxed),
        dead_letters: ctl.dead_letters.load(Ordering::Relaxed),
        files: ctl.files.load(Ordering::Relaxed),
        commits: ctl.commits.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        ended: ctl.completed.load(Ordering::Acquire),
    })
}

fn run_inner(
    job: &Job,
    opts: &RunOptions,
    stop: &Arc<AtomicBool>,
    state: &mut TaskState,
    metrics: &Arc<Metrics>,
    slot: Option<&RepoSlot>,
) -> Result<Arc<Control>, TaskError> {
    let name = job.file.job.name.clone();
    let label = metrics.repo_name().to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TaskError::Job {
            job: name.clone(),
            reason: format!("cannot start the I/O runtime: {e}"),
        })?;
    let dest = destination(job, &runtime)?;
    let (dead_dest, dead_folder) = dead_letters_at(job, &dest, &label, &runtime)?;
    let dead_topic = crate::deadletter::topic::for_job(job, &label)?;
    let checkpoints = Checkpoints::new(dest.clone(), &name).with_dead_letters(dead_dest.clone());
    // Before anything is written, and before the source connects (a group member that
    // joined would make the group rebalance for nothing): the fence needs create-only writes
    // the store refuses to repeat.
    checkpoints.check_create_only()?;
    let Prepared {
        source,
        decoder,
        template,
        intake,
        ..
    } = prepare(job, true)?;
    if let Some(contact) = source.as_ref().and_then(|s| s.contact()) {
        metrics.source_contact(contact);
    }
    // A path longer than the store holds would fail its rows' writes for good: long folder
    // names are cut shorter when a path passes the room left (a template whose paths cannot
    // fit even so is refused here).
    let template = template
        .limit_to(dest.folder_room())
        .map_err(|e| TaskError::Job {
            job: name.clone(),
            reason: format!("[sink.partition] {e} (at {})", dest.url()),
        })?;
    if template.cuts_names() {
        tracing::info!(room = dest.folder_room(), template = template.template(), "the template's folder paths could pass the room the destination has for them: long folder names are cut to fit");
    }
    let mut source = source.expect("prepare(connect) opens the source");
    sweep_in_background(job, &dest, &dead_dest);
    let out_schema = decoder.output_schema();
    // Whose a spill is, and what made its batches (before the decoder moves to its threads).
    let mine = spill_owner(job, decoder.schema());
    // Before any data moves: the schema must be one that readers of the files already written
    // can follow; it is then recorded as the files' schema.
    let form = crate::evolution::Form::of(&job.format);
    let whose = (name.as_str(), label.as_str());
    // So is a start the table refuses (a roll-back, a job without a table where one is,
    // partition columns past the records' bounds).
    let fields =
        crate::table::check_for_task(&job.table, &dest, &template, opts.from_checkpoint.is_some())?;
    // A schema the job's table refuses is refused before it is recorded: recorded, it would
    // be the one every later start is checked against, and the table would refuse them all.
    crate::table::check_fits(&job.table, &dest, &out_schema, runtime.handle())?;
    for change in crate::evolution::check_all(&dest, whose, &out_schema, true, form)? {
        tracing::warn!(repo = %label, change = %change, "the schema changed; new files carry it");
    }
    let (table, table_partitions) = crate::table::for_task(
        &job.table,
        &dest,
        &name,
        &out_schema,
        fields,
        runtime.handle(),
    )?;
    // The table records its partition columns' values per file: a value too long for that
    // is its record's dead letter.
    let partition_columns: Vec<usize> = table_partitions.iter().map(|(_, i)| *i).collect();
    let decoder = decoder.with_partition_columns(partition_columns.clone());

    // Where every partition resumes.
    let control = Arc::new(Control::default());
    if let Some(i) = intake.clone() {
        // A worker that stops the task closes a push repo's intake at once: what it took
        // from then on would be acknowledged into a log the failed task no longer reads.
        control.on_fatal(move || i.close());
    }
    let workers = job.file.sink.workers;
    *control.finished.lock().expect("finished lock") = vec![false; workers];
    let channel = Arc::new(Channel::new(
        workers,
        job.channel_bytes,
        job.file.channel.max_batches,
    ));
    // However the run ends: a push repo takes no more requests, and the admin routes let go.
    struct Attached<'a>(Option<&'a RepoSlot>, Option<Arc<Intake>>);
    impl Drop for Attached<'_> {
        fn drop(&mut self) {
            if let Some(intake) = &self.1 {
                intake.close();
            }
            if let Some(slot) = self.0 {
                slot.detach();
            }
        }
    }
    let _attached = Attached(
        slot.inspect(|slot| {
            slot.attach(Live {
                control: control.clone(),
                channel: channel.clone(),
                stop: stop.clone(),
                push: push_api(job, intake.as_ref(), &decoder, metrics, slot),
            })
        }),
        intake.clone(),
    );
    let compacted = roll_backs::compacted(&mut *source, opts.from_checkpoint);
    if source.dynamic() {
        // A group member learns its partitions from the group, in the source's first polls.
        source.set_membership(Box::new(TaskMembership {
            checkpoints: checkpoints.clone(),
            table: table.clone(),
            control: control.clone(),
            channel: channel.clone(),
            deadline: job.stop_deadline,
            from_checkpoint: opts.from_checkpoint,
            compacted: compacted.clone(),
            rolled_back: Default::default(),
            metrics: metrics.clone(),
            repo: repo_label(job),
            first_start: None,
        }));
    }
    let parts = source.partitions();
    if matches!(job.file.source, crate::config::SourceSection::File { .. }) {
        file_identity::fits_names(job, &dest, &parts)?;
        let mut keys = None;
        for p in &parts {
            let at = (p.key(), p.id as usize);
            if let Some(old) = checkpoints.carry_over_legacy((&at.0, &p.topic, at.1), &mut keys)? {
                tracing::info!(partition = %p.key(), from = %old, "continuing from the checkpoints of an earlier version's key");
            }
        }
    }
    left_wal::check(job, &checkpoints, &parts)?;
    // Before any claim (a roll-back's deletes its commits): each file is the one read.
    let keeps_spill = !opts.discard_spill;
    file_identity::check_all(job, &dest, &checkpoints, &parts, keeps_spill)?;
    crate::fault::hold_while("hold_before_claims");
    crate::fault::panic_at_start();
    // Every check passed: a group member joins its group now (refused before, it would have
    // made the live members rebalance for nothing).
    source.join()?;
    let claimed = claims::claim_static(
        &mut *source,
        &checkpoints,
        table.as_deref(),
        &parts,
        (opts.from_checkpoint, &compacted),
    )?;
    if !source.dynamic() {
        let keys = parts.iter().map(|p| p.key()).collect();
        unclaimed::settle(&checkpoints, table.as_deref(), &keys)?;
    }
    // A start whose claims rolled nothing back (an earlier run did) restores a spill as any
    // start does: decided by the claims, which check again under their new terms.
    let unrolled;
    let opts = if !source.dynamic() && !claimed.iter().any(|c| c.rolled_back) {
        unrolled = RunOptions {
            from_checkpoint: None,
            ..opts.clone()
        };
        &unrolled
    } else {
        opts
    };
    let state_dir = job.resolve(&job.file.job.state_dir);
    let mut deferred = Vec::new();
    for (p, claimed) in parts.iter().zip(claimed) {
        foreign_log::after_claim(&mut *source, &checkpoints, p, claimed.latest())?;
        let from = claimed.latest().and_then(|c| c.file.clone());
        let src = &mut source;
        let start =
            membership::resume(claimed, &control, (None, job.file.source.kind()), p, || {
                Ok(src.resume_default(p.id)?)
            })?;
        // Under the claim: the file is the one read to where the partition resumes (another
        // process may have committed since the check before the claims).
        let head = file_identity::check_one(
            job,
            &dest,
            p,
            (start.offset, from.as_ref()),
            keeps_spill,
            file_identity::When::Claimed,
        )?;
        if let Some(h) = &head {
            // The file read must be the one checked: its checkpoints name it.
            source.expect_start(p.id, h.len, h.crc);
        }
        if start.checkpointed {
            let offset = start.offset;
            let restores = keeps_spill && opts.from_checkpoint.is_none();
            let spill = restores.then_some(state_dir.as_path());
            deferred.extend(below_log::seek(&mut *source, p.id, start, spill)?);
            // What the checkpoint covers is committed: a push log counts its room from there
            // (else the bytes before it, in a segment not released yet, would count as
            // retained, and with nothing to read, no commit would ever release them).
            source.committed(p.id, offset);
        }
    }

    let time_column = out_schema
        .fields()
        .iter()
        .position(|f| matches!(f.data_type(), DataType::Timestamp(..) | DataType::Date32));
    let volatile = matches!(
        &job.file.source,
        crate::config::SourceSection::Push { durability, .. } if durability.as_str() == "memory"
    );
    let ctx = Arc::new(WorkerContext {
        file_prefix: job.repo.as_ref().map_or(String::new(), |r| format!("{r}.")),
        file_suffix: match job.range {
            Some(_) => format!(".backfill-{}", job.file.job.name),
            None => String::new(),
        },
        metrics: metrics.clone(),
        channel: channel.clone(),
        dest,
        dead_dest,
        dead_folder,
        dead_topic,
        checkpoints,
        table_watch: table.is_none().then(crate::table::watch::Watch::new),
        table,
        table_partitions,
        format: job.format.clone(),
        schema: out_schema.clone(),
        template,
        rotation: Rotation {
            max_rows: job.file.sink.rotation.max_rows,
            max_bytes: job.max_file_bytes,
            max_span: job.max_span,
            idle: job.idle,
            max_age: job.max_age,
            time_column,
        },
        max_open: job.file.sink.max_open_files,
        max_buffered: (job.max_buffered_bytes / workers as u64).max(1),
        control: control.clone(),
        volatile,
        group: source.dynamic(),
        log_id: source.log_id(),
        log_runs: source.log_runs(),
        file_starts: source.read_starts(),
        sealing: Default::default(),
    });
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };

    std::thread::scope(|scope| -> Result<(), TaskError> {
        let handles: Vec<_> = (0..workers)
            .map(|lane| {
                let ctx = ctx.clone();
                let span = tracing::Span::current();
                std::thread::Builder::new()
                    .name(format!("sink-{lane}"))
                    .spawn_scoped(scope, move || {
                        span.in_scope(|| {
                            let control = ctx.control.clone();
                            let channel = ctx.channel.clone();
                            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                                || worker::run(ctx, lane),
                            ));
                            if let Err(panic) = run {
                                let why = crate::panics::message(panic.as_ref());
                                tracing::error!(lane, panic = %why, "a sink worker panicked; the task stops");
                                // Before the channel closes: a put it refuses fails the task
                                // too, and the task says why, not that its put was refused.
                                control.fatal(|| format!("it panicked: {why}"));
                                // Nobody drains this lane now: a put waiting for room in it
                                // must not wait for ever.
                                channel.close();
                            }
                        })
                    })
                    .expect("spawn a sink worker")
            })
            .collect();
        let bounds = source.bounds();
        if opts.progress && !bounds.is_empty() {
            let control = control.clone();
            std::thread::Builder::new()
                .name("progress".into())
                .spawn_scoped(scope, move || progress::show(&control, &bounds))
                .expect("spawn the progress thread");
        }
        // Ok(true): the source ended by itself (a bounded run read everything).
        let run = std::panic::AssertUnwindSafe(|| -> Result<bool, TaskError> {
            let mut restored = restore_spill(
                &state_dir,
                &out_schema,
                opts,
                &channel,
                &control,
                source.as_mut(),
                &ctx.checkpoints,
                state,
                &name,
                metrics,
                &mine,
                stop,
                (
                    job.format.kind == crate::format::FormatKind::Orc,
                    &partition_columns,
                ),
            )?;
            below_log::after_restore(source.as_mut(), std::mem::take(&mut deferred), &restored)?;
            transition(state, TaskState::Running, &name, metrics);
            if let Some(i) = &intake {
                i.open();
            }
            source_loop(
                &decoder,
                threads,
                source.as_mut(),
                &channel,
                &control,
                metrics,
                stop,
                &mut restored,
            )?;
            if stop.load(Ordering::Acquire) {
                transition(state, TaskState::Stopping, &name, metrics);
                // A group member's partitions may go to another process: what the channel
                // holds is replayed from Kafka by whoever owns them next, not spilled.
                let spill_dir = (!source.dynamic()).then_some(state_dir.as_path());
                let log = source.log_id();
                graceful_stop(
                    job,
                    (spill_dir, &mine),
                    log,
                    &out_schema,
                    &channel,
                    &control,
                    restored,
                )?;
                // A stop that came after the source ended, once all it handed out was
                // committed (nothing spilled), leaves the run complete all the same.
                return Ok(control.source_done.load(Ordering::Acquire)
                    && shortfall(&control, source.handed_to()).is_empty());
            }
            Ok(true)
        });
        // A panic on this side (source, decoding, the channel) fails the task like an error:
        // the workers are still told to shut down, or the scope would wait for them for ever.
        let result = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
            Err(TaskError::Job {
                job: name.clone(),
                reason: format!(
                    "the task panicked: {}",
                    crate::panics::message(panic.as_ref())
                ),
            })
        });
        // A worker that panicked fails the task, whatever the source side saw.
        let worker_fatal = control
            .worker_fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let result = match worker_fatal {
            Some(why) => Err(TaskError::Job {
                job: name.clone(),
                reason: format!("a sink worker stopped: {why}"),
            }),
            None => result,
        };
        // A failed task takes no more pushes while its workers make their last commits: with
        // durability = "memory" they would be acknowledged and lost with the task.
        if let (Err(_), Some(i)) = (&result, &intake) {
            i.close();
        }
        control.phase.end();
        channel.close();
        for h in handles {
            let _ = h.join();
        }
        // Commits made while stopping reach the source too (Kafka: the group's offsets).
        for (p, next) in control.partitions.take_committed() {
            source.committed(p, next);
        }
        if let (true, Err(e), Some(i)) = (volatile, &result, &intake) {
            // No spill on a failure: what the memory log held goes with this task.
            let (from, to) = i.uncommitted();
            if to > from {
                tracing::error!(
                    from, to, error = %e,
                    "acknowledged pushes are lost: the task failed before committing them, \
                     and durability = \"memory\" keeps no copy past the task"
                );
            }
        }
        // A bounded run that ended reports success only if everything it read is committed
        // (also when a stop arrives while the workers finish).
        let result = match result {
            Ok(true) => check_committed(&name, &control, source.handed_to())
                .map(|()| control.completed.store(true, Ordering::Release)),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        source.close();
        result
    })?;
    Ok(control)
}
