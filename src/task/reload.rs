//! `sluice run` and SIGHUP: the job file and the repo schema are read again while the job runs.
//! The new ones are checked first (the job file, that it keeps the job's name and folders, the
//! schema, and the schema against the files already written); if they pass, the running task
//! stops gracefully (open files committed, the channel spilled) and starts again with them, and
//! the new files carry the new schema. If they do not pass, the error is logged and the task
//! runs on unchanged.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{destination, prepare, run, RunOptions, RunSummary, TaskError};
use crate::config::Job;
use crate::metrics::Metrics;
use crate::schema::RepoSchema;

/// Runs the job at `path` (already loaded as `job`; in a job file with several repos, its repo
/// `job.repo`) until it ends or `stop` is set; each time `hup` is set, reloads it as described
/// above. Returns the job as last (re)loaded, with the outcome. A repo stopped through the admin
/// API is not reloaded.
pub fn run_reloading(
    path: &Path,
    mut job: Job,
    mut opts: RunOptions,
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
) -> (Job, Result<RunSummary, TaskError>) {
    // Read once: a restart of the task runs with the schema it ran with (an edit the reload
    // check refused is not taken up by a restart).
    job.pin_schema();
    let mut total: Option<RunSummary> = None;
    // The job that ran before a reload: taken up again if the reloaded one fails to start.
    let mut previous: Option<Job> = None;
    loop {
        let run_stop = Arc::new(AtomicBool::new(false));
        let next: Arc<Mutex<Option<Job>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (stop, hup, run_stop, next, done) = (
                stop.clone(),
                hup.clone(),
                run_stop.clone(),
                next.clone(),
                done.clone(),
            );
            let path = path.to_path_buf();
            let repo = job.repo.clone();
            let fixed = Fixed::of(&job);
            let metrics = opts.admin.as_ref().map(|s| s.metrics.clone());
            let span = tracing::Span::current();
            std::thread::Builder::new()
                .name("reload".into())
                .spawn(move || {
                    span.in_scope(|| {
                        watch(
                            (&path, repo.as_deref(), &fixed, metrics.as_deref()),
                            &stop,
                            &hup,
                            &run_stop,
                            &next,
                            &done,
                        )
                    })
                })
                .expect("spawn the reload watcher")
        };
        let started = Instant::now();
        // A panic is the task's failure here too: the job as reloaded stays, and the watcher
        // stops (left running, it took the next SIGHUP for a task that was gone).
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(&job, opts.clone(), run_stop)
        }))
        .unwrap_or_else(|panic| Err(panicked(&job, &opts, panic.as_ref())));
        done.store(true, Ordering::Release);
        let _ = watcher.join();
        let stopped =
            || stop.load(Ordering::Acquire) || opts.admin.as_ref().is_some_and(|s| s.stopped());
        let summary = match (result, previous.take()) {
            (Ok(s), _) => s,
            // A reloaded job that fails at once (a server it needs is down, say): the one
            // that ran before takes over again, unless a stop came meanwhile.
            (Err(e), Some(prev)) if started.elapsed() < Duration::from_secs(60) && !stopped() => {
                tracing::error!(error = %e, "the reloaded job failed; running the previous one again");
                if let Some(slot) = &opts.admin {
                    slot.metrics.reloaded("fell_back");
                }
                job = fallback(prev, job.schema.take());
                opts.discard_spill = false;
                continue;
            }
            (Err(e), _) => return (job, Err(e)),
        };
        let total = match total.as_mut() {
            None => total.insert(summary),
            Some(t) => {
                t.rows += summary.rows;
                t.dead_letters += summary.dead_letters;
                t.files += summary.files;
                t.commits += summary.commits;
                t.seconds += summary.seconds;
                t.state = summary.state;
                // Whether the input was read to its end is the last run's to say.
                t.ended = summary.ended;
                t
            }
        };
        let next = next.lock().expect("reload lock").take();
        match next {
            Some(new) if !stopped() => {
                previous = Some(std::mem::replace(&mut job, new));
                // Counted as it starts (a stop or the task's end before, and it never does).
                if let Some(slot) = &opts.admin {
                    slot.metrics.reloaded("applied");
                }
                // Done once, by the first run: a replay from a checkpoint, dropping a spill (the
                // stop before a reload writes one that must be restored).
                opts.from_checkpoint = None;
                opts.discard_spill = false;
            }
            _ => return (job, Ok(total.clone())),
        }
    }
}

/// The failure a panic in `job`'s task stands for, told to the admin API's slot.
pub(super) fn panicked(
    job: &Job,
    opts: &RunOptions,
    panic: &(dyn std::any::Any + Send),
) -> TaskError {
    let what = crate::panics::message(panic);
    let e = TaskError::Job {
        job: job.file.job.name.clone(),
        reason: format!("the task panicked: {what}"),
    };
    if let Some(slot) = &opts.admin {
        slot.metrics.set_state("failed");
        slot.failed(e.to_string());
        slot.detach();
    }
    e
}

/// Passes a stop on to the running task at once, and on SIGHUP checks the job again (on its
/// own thread, so a stop is never held up by the check) and stops the task for a reload when
/// the check passes.
fn watch(
    (path, repo, fixed, metrics): (&Path, Option<&str>, &Fixed, Option<&Metrics>),
    stop: &AtomicBool,
    hup: &AtomicBool,
    run_stop: &AtomicBool,
    next: &Mutex<Option<Job>>,
    done: &AtomicBool,
) {
    let mut checking: Option<std::thread::JoinHandle<Result<Job, TaskError>>> = None;
    while !done.load(Ordering::Acquire) {
        if stop.load(Ordering::Acquire) {
            tracing::info!("asked to stop: the task stops gracefully");
            run_stop.store(true, Ordering::Release);
            return;
        }
        if checking.as_ref().is_some_and(|h| h.is_finished()) {
            match checking.take().expect("a check").join() {
                Ok(Ok(job)) => {
                    tracing::info!(job = %path.display(), "SIGHUP: the job file and schema check out; restarting the task with them");
                    *next.lock().expect("reload lock") = Some(job);
                    run_stop.store(true, Ordering::Release);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::error!(job = %path.display(), error = %e, "SIGHUP: not reloaded; the task runs on unchanged");
                    if let Some(m) = metrics {
                        m.reloaded("refused");
                    }
                }
                Err(_) => {
                    tracing::error!("SIGHUP: the check panicked; the task runs on unchanged");
                    if let Some(m) = metrics {
                        m.reloaded("refused");
                    }
                }
            }
        }
        if checking.is_none() && hup.swap(false, Ordering::AcqRel) {
            let path = path.to_path_buf();
            let repo = repo.map(str::to_string);
            let fixed = fixed.clone();
            let span = tracing::Span::current();
            checking = Some(
                std::thread::Builder::new()
                    .name("reload-check".into())
                    .spawn(move || span.in_scope(|| checked(&path, repo.as_deref(), &fixed)))
                    .expect("spawn the reload check"),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The task ended (it failed, say) before a SIGHUP's check was taken up: the task that
    // follows (the supervisor's restart) is asked again, so the reload is not lost.
    if checking.is_some() {
        hup.store(true, Ordering::Release);
    }
}

/// What a reload cannot change: the job's name (its checkpoints and group), its state folder
/// (this process's lock, and the spill the stop before the reload writes there for the next
/// task to restore) and a push repo's WAL folder (records acknowledged and not yet committed).
/// A new task elsewhere would not find them: with `durability = "memory"`, acknowledged pushes
/// would be lost. Nor `[admin]`: its server is the process's, started once (a token changed to
/// shut out a leaked one would not be taken, while the reload said it was).
#[derive(Clone, PartialEq, Eq)]
struct Fixed {
    name: String,
    state_dir: std::path::PathBuf,
    wal_dir: Option<std::path::PathBuf>,
    /// (listen, token, insecure)
    admin: Option<(String, Option<String>, bool)>,
}

impl Fixed {
    fn of(job: &Job) -> Fixed {
        let wal_dir = match &job.file.source {
            crate::config::SourceSection::Push { wal_dir, .. } => {
                Some(super::prepare::wal_folder(job, wal_dir.as_deref()))
            }
            _ => None,
        };
        Fixed {
            name: job.file.job.name.clone(),
            state_dir: job.resolve(&job.file.job.state_dir),
            wal_dir,
            admin: job
                .file
                .admin
                .as_ref()
                .map(|a| (a.listen.clone(), a.token.clone(), a.insecure)),
        }
    }

    /// Why `new` cannot be taken by a reload, if it cannot.
    fn check(&self, new: &Fixed) -> Result<(), String> {
        let changed = |what: &str, from: &dyn std::fmt::Debug, to: &dyn std::fmt::Debug| {
            Err(format!(
                "{what} changed from {from:?} to {to:?}, which a reload cannot take (what the running task leaves for the next one is there): stop the process, move the folder, and start it with the new file"
            ))
        };
        if new.name != self.name {
            return changed("job.name", &self.name, &new.name);
        }
        if new.state_dir != self.state_dir {
            return changed("job.state_dir", &self.state_dir, &new.state_dir);
        }
        if new.wal_dir != self.wal_dir {
            return changed("source.wal_dir", &self.wal_dir, &new.wal_dir);
        }
        if new.admin != self.admin {
            return Err("[admin] changed (its address, token or `insecure`), which a reload cannot take: the admin server is the process's, started once with what the file said then (the old token still works). Restart the process to change it".into());
        }
        Ok(())
    }
}

/// The job that ran before a reload whose task failed at once, `prev`, to run again: with
/// the reloaded schema when it can run with it (the failed task may have recorded that
/// schema, which the one `prev` ran with may not follow: a field it requires, made
/// nullable), else with its own (the reload also changed what the schema must fit: its
/// destination, template or stages).
fn fallback(prev: Job, reloaded: Option<Arc<RepoSchema>>) -> Job {
    let Some(schema) = reloaded else {
        return prev;
    };
    let with = Job {
        schema: Some(schema),
        ..prev.clone()
    };
    match against_files(&with) {
        Ok(_) => with,
        Err(e) => {
            tracing::warn!(error = %e, "the previous job runs with the schema it ran with: it cannot take the reloaded one");
            prev
        }
    }
}

/// The job at `path` loaded and checked as `validate` does, that it keeps what a reload
/// cannot change, and its schema against the files already written.
fn checked(path: &Path, repo: Option<&str>, fixed: &Fixed) -> Result<Job, TaskError> {
    crate::fault::hold_while("hold_reload_check");
    let mut job = Job::load_repo(path, repo).map_err(|e| TaskError::Job {
        job: path.display().to_string(),
        reason: e.to_string(),
    })?;
    fixed
        .check(&Fixed::of(&job))
        .map_err(|reason| TaskError::Job {
            job: path.display().to_string(),
            reason,
        })?;
    // The schema checked here is the one the reloaded task runs with, whatever the file
    // holds by then.
    job.schema = Some(against_files(&job)?);
    Ok(job)
}

/// `job` prepared as `validate` does (with its pinned schema, if any), and its schema
/// checked against the files already written (not recorded): the schema.
fn against_files(job: &Job) -> Result<Arc<RepoSchema>, TaskError> {
    let prepared = prepare(job, false)?;
    // Multi-threaded: the Delta kernel's engine runs its reads on the runtime's workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| TaskError::Job {
            job: job.file.job.name.clone(),
            reason: format!("cannot start an I/O runtime: {e}"),
        })?;
    let dest = destination(job, &runtime)?;
    let out = prepared.decoder.output_schema();
    crate::table::check_fits(&job.table, &dest, &out, runtime.handle())?;
    crate::evolution::check_all(
        &dest,
        (&job.file.job.name, &super::repo_label(job)),
        &out,
        false,
        job.format.positional(),
    )?;
    Ok(prepared.schema.clone())
}
