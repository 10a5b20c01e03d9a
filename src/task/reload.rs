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

/// A reload's check, on its own thread: the job it passed, or why not.
type Check = std::thread::JoinHandle<Result<Job, TaskError>>;

/// A repo's SIGHUP: the flag the signal sets, and a check still under way when the task it
/// was asked for ended, which the next task's watcher takes up (asked again instead, a check
/// slower than a task failing at each start was dropped at every restart: such a repo could
/// not be mended by a reload).
#[derive(Clone, Default)]
pub struct Hup {
    pub flag: Arc<AtomicBool>,
    pending: Arc<Mutex<Option<Check>>>,
}

/// Runs the job at `path` (already loaded as `job`; in a job file with several repos, its repo
/// `job.repo`) until it ends or `stop` is set; each time `hup` is raised, reloads it as described
/// above. Returns the job as last (re)loaded, with the outcome. A repo stopped through the admin
/// API is not reloaded.
pub fn run_reloading(
    path: &Path,
    mut job: Job,
    mut opts: RunOptions,
    stop: Arc<AtomicBool>,
    hup: Hup,
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
            let groups = opts.groups.clone();
            let span = tracing::Span::current();
            std::thread::Builder::new()
                .name("reload".into())
                .spawn(move || {
                    span.in_scope(|| {
                        watch(
                            (&path, repo.as_deref(), &fixed, metrics.as_deref()),
                            groups,
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
        if let Some(g) = &opts.groups {
            g.running(&super::repo_label(&job), &job);
        }
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
            // The task failed while it stopped for a reload that checked out (its spill could
            // not be written, say), or just as one did: the reload is not dropped. The job
            // that failed is the one to fall back to.
            (Err(e), _) if !stopped() && next.lock().expect("reload lock").is_some() => {
                let new = next.lock().expect("reload lock").take().expect("checked");
                tracing::error!(error = %e, "the task failed as it stopped for a reload; starting it with the reloaded job");
                // A roll-back asked of another destination is not the new one's to make (its
                // checkpoint numbers are another history).
                if new.file.sink.url != job.file.sink.url {
                    opts.from_checkpoint = None;
                }
                previous = Some(std::mem::replace(&mut job, new));
                if let Some(slot) = &opts.admin {
                    slot.metrics.reloaded("applied");
                }
                // On the same destination, a roll-back (`--from-checkpoint`) the failed task
                // may have left half made is made again, as a restart after a failure does;
                // the stop's spill is restored.
                opts.discard_spill = false;
                continue;
            }
            // A reloaded job that fails at once (a server it needs is down, say): the one
            // that ran before takes over again, unless a stop came meanwhile.
            (Err(e), Some(prev)) if started.elapsed() < Duration::from_secs(60) && !stopped() => {
                // Its group may be another repo's since (that repo's reload took it).
                if let Some(Err(why)) = opts
                    .groups
                    .as_ref()
                    .map(|g| g.reserve(&super::repo_label(&prev), &prev))
                {
                    tracing::error!(error = %e, previous = %why, "the reloaded job failed, and the previous one cannot run again");
                    return (job, Err(e));
                }
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
    groups: Option<super::groups::Groups>,
    stop: &AtomicBool,
    hup: &Hup,
    run_stop: &AtomicBool,
    next: &Mutex<Option<Job>>,
    done: &AtomicBool,
) {
    let mut checking: Option<Check> = hup.pending.lock().expect("reload lock").take();
    while !done.load(Ordering::Acquire) {
        if stop.load(Ordering::Acquire) {
            tracing::info!("asked to stop: the task stops gracefully");
            run_stop.store(true, Ordering::Release);
            return;
        }
        if checking.as_ref().is_some_and(|h| h.is_finished()) {
            let check = checking.take().expect("a check");
            if let Some(job) = passed(check, path, metrics) {
                tracing::info!(job = %path.display(), "SIGHUP: the job file and schema check out; restarting the task with them");
                *next.lock().expect("reload lock") = Some(job);
                run_stop.store(true, Ordering::Release);
                return;
            }
        }
        if checking.is_none() && hup.flag.swap(false, Ordering::AcqRel) {
            let path = path.to_path_buf();
            let repo = repo.map(str::to_string);
            let fixed = fixed.clone();
            let groups = groups.clone();
            let span = tracing::Span::current();
            checking = Some(
                std::thread::Builder::new()
                    .name("reload-check".into())
                    .spawn(move || {
                        span.in_scope(|| checked(&path, repo.as_deref(), &fixed, groups.as_ref()))
                    })
                    .expect("spawn the reload check"),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The task ended (it failed, say) before a SIGHUP's check was taken up. One that has
    // passed is the next task's job; one still under way, the next task's watcher's.
    let Some(check) = checking else {
        return;
    };
    if !check.is_finished() {
        *hup.pending.lock().expect("reload lock") = Some(check);
        return;
    }
    if let Some(job) = passed(check, path, metrics) {
        tracing::info!(job = %path.display(), "SIGHUP: the job file and schema check out; the task ended meanwhile, and the next one runs with them");
        *next.lock().expect("reload lock") = Some(job);
    }
}

/// The job a finished check passed; one refused is logged and counted.
fn passed(check: Check, path: &Path, metrics: Option<&Metrics>) -> Option<Job> {
    let why = match check.join() {
        Ok(Ok(job)) => return Some(job),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the check panicked".to_string(),
    };
    tracing::error!(job = %path.display(), error = %why, "SIGHUP: not reloaded; the task runs on unchanged");
    if let Some(m) = metrics {
        m.reloaded("refused");
    }
    None
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
    /// The source's kind, and a push source's durability: a file or push job's state folder,
    /// and a WAL, is locked for the process's life at its start, a Kafka job's or a memory
    /// log's is not (one reloaded into a file job, or into a WAL, ran unlocked).
    kind: String,
    state_dir: std::path::PathBuf,
    wal_dir: Option<std::path::PathBuf>,
    /// (listen, token, insecure)
    admin: Option<(String, Option<String>, bool)>,
    /// The repo's name: its metrics, admin routes and dead-letter folder are the running
    /// process's, while its files' paths would follow the new one (`None`: the schema does
    /// not load).
    repo: Option<String>,
    /// Where dead letters go (url, topic): a commit that failed half way is cleaned up where
    /// the next task looks, which must be where its dead letters went.
    dead_letters: (Option<String>, Option<String>),
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
            kind: match &job.file.source {
                crate::config::SourceSection::Push { durability, .. } => {
                    format!("push, durability {durability}")
                }
                s => s.kind().to_string(),
            },
            state_dir: job.resolve(&job.file.job.state_dir),
            wal_dir,
            admin: job
                .file
                .admin
                .as_ref()
                .map(|a| (a.listen.clone(), a.token.clone(), a.insecure)),
            // Told only when the schema loads: one that does not is refused for that.
            repo: job.repo.clone().or_else(|| match &job.schema {
                Some(s) => Some(s.name.clone()),
                None => crate::schema::RepoSchema::load(&job.resolve(&job.file.repo.schema))
                    .ok()
                    .map(|s| s.name),
            }),
            dead_letters: (
                job.file
                    .dead_letters
                    .url
                    .as_deref()
                    .map(|u| job.resolve_url(u)),
                job.file.dead_letters.topic.clone(),
            ),
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
        if new.kind != self.kind {
            return Err(format!(
                "the source changed from {:?} to {:?}, which a reload cannot take (the state folder and a WAL are locked, or not, for the process's life as the job starts): stop the process and start it with the new file",
                self.kind, new.kind
            ));
        }
        if new.state_dir != self.state_dir {
            return changed("job.state_dir", &self.state_dir, &new.state_dir);
        }
        if new.wal_dir != self.wal_dir {
            return changed("source.wal_dir", &self.wal_dir, &new.wal_dir);
        }
        if let (Some(from), Some(to)) = (&self.repo, &new.repo) {
            if from != to {
                return Err(format!(
                    "the repo's name changed from `{from}` to `{to}` (the schema's `name`), which a reload cannot take: the running process's metrics, admin routes and dead-letter folder carry the name. Restart the process to rename it"
                ));
            }
        }
        if new.dead_letters != self.dead_letters {
            return Err(format!(
                "[dead_letters] url or topic changed from {:?} to {:?}, which a reload cannot take: the running task's failed commits are cleaned up where their dead letters went. Stop the process and start it with the new file",
                self.dead_letters, new.dead_letters
            ));
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
/// cannot change, that no other repo of the process runs in its consumer group (`groups`),
/// and its schema against the files already written.
fn checked(
    path: &Path,
    repo: Option<&str>,
    fixed: &Fixed,
    groups: Option<&super::groups::Groups>,
) -> Result<Job, TaskError> {
    crate::fault::hold_while("hold_reload_check");
    crate::fault::hold("slow_reload_check");
    let refused = |reason: String| TaskError::Job {
        job: path.display().to_string(),
        reason,
    };
    let first = settled(&[path], SETTLE, SETTLE_WAIT).map_err(refused)?;
    let job = Job::load_repo(path, repo).map_err(|e| TaskError::Job {
        job: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let schema_path = job.resolve(&job.file.repo.schema);
    let files = [path, schema_path.as_path()];
    let before = settled(&files, SETTLE, SETTLE_WAIT).map_err(refused)?;
    let changed = "the job file or the schema changed while it was read; send SIGHUP again once it is written";
    if before[0] != first[0] {
        return Err(refused(changed.into()));
    }
    let job = checked_as_read(job, fixed, path)?;
    // Read as they were left: a write in place between the looks would have been read in
    // part.
    if stamps(&files) != before {
        return Err(refused(changed.into()));
    }
    // Last: held from here until the repo runs another job.
    if let Some(g) = groups {
        g.reserve(&super::repo_label(&job), &job).map_err(refused)?;
    }
    Ok(job)
}

/// How long the files a reload reads must have been left alone first, and how long it waits
/// for that. A file written in place (`cp` onto it, an editor's save, `tee`) can be read half
/// written, and half a schema file can parse: cut after a field it drops the fields after,
/// cut inside one it drops the field's `nullable = false` or `source`. Both are changes a
/// reload accepts, and the first is recorded for good. (A writer that pauses for longer than
/// this in the middle of a file is not told apart.)
const SETTLE: Duration = Duration::from_secs(1);
const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// Each file's length and modification time (`None`: unreadable; the load says why).
type Stamps = Vec<Option<(u64, std::time::SystemTime)>>;

fn stamps(files: &[&Path]) -> Stamps {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}

/// Waits until none of `files` has been modified for `quiet`, at most `limit`: their stamps.
fn settled(files: &[&Path], quiet: Duration, limit: Duration) -> Result<Stamps, String> {
    let start = Instant::now();
    loop {
        let now = stamps(files);
        let newest = now.iter().flatten().map(|(_, t)| *t).max();
        // A modification time in the future (a clock stepped back) counts as just written.
        let future = newest.is_some_and(|t| t.elapsed().is_err());
        let left = newest.map_or(Duration::ZERO, |t| match t.elapsed() {
            Ok(age) => quiet.saturating_sub(age),
            Err(_) => quiet,
        });
        if left.is_zero() {
            return Ok(now);
        }
        if start.elapsed() + left > limit {
            return Err(match future {
                true => "the job file or the schema was modified in the future (the clock was set back since?): touch it and send SIGHUP again".to_string(),
                false => format!(
                    "the job file or the schema is still being written ({} s after SIGHUP, it was modified within the last {} ms); send SIGHUP again once it is written",
                    limit.as_secs(),
                    quiet.as_millis()
                ),
            });
        }
        std::thread::sleep(left.min(Duration::from_millis(250)));
    }
}

/// `job`, as loaded, checked: it keeps what a reload cannot change, and its schema fits the
/// files already written.
fn checked_as_read(mut job: Job, fixed: &Fixed, path: &Path) -> Result<Job, TaskError> {
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
        crate::evolution::Form::of(&job.format),
    )?;
    Ok(prepared.schema.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_only_once_it_has_been_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("schema.toml");
        std::fs::write(&f, "name = \"a\"\n").unwrap();
        let quiet = Duration::from_millis(300);
        let t = Instant::now();
        let stamped = settled(&[f.as_path()], quiet, Duration::from_secs(5)).unwrap();
        let modified = std::fs::metadata(&f).unwrap().modified().unwrap();
        assert!(
            modified.elapsed().unwrap() >= quiet,
            "returned {:?} after a write",
            t.elapsed()
        );
        assert_eq!(stamped, stamps(&[f.as_path()]));
        // A file modified in the future (as one being written keeps being, and after a clock
        // was set back) is refused when the wait runs out.
        let later = std::time::SystemTime::now() + Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let e = settled(&[f.as_path()], quiet, Duration::from_millis(500)).unwrap_err();
        assert!(e.contains("modified in the future"), "{e}");
        // A missing file has no stamp to wait on (the load says why it cannot be read).
        let gone = dir.path().join("gone.toml");
        assert_eq!(
            settled(&[gone.as_path()], quiet, Duration::ZERO).unwrap(),
            vec![None]
        );
    }

    /// A reload may not change the source's kind, nor a push source's durability: the state
    /// folder and a WAL are locked (or not) as the job starts.
    #[test]
    fn a_reload_may_not_change_the_source_kind_or_durability() {
        let job = |source: &str| {
            let text = format!("[job]\nname = \"j\"\n[source]\n{source}\n[repo]\nschema = \"s.toml\"\n[sink]\nurl = \"out/\"\n[admin]\nlisten = \"127.0.0.1:0\"\n");
            Fixed::of(&Job::parse(&text, Path::new("/nowhere/j.toml")).unwrap())
        };
        let kafka = job("kind = \"kafka\"\nbrokers = \"b\"\ntopics = [\"t\"]");
        let file = job("kind = \"file\"\npaths = [\"a.jsonl\"]");
        let wal = job("kind = \"push\"");
        let memory = job("kind = \"push\"\ndurability = \"memory\"");
        for (from, to) in [(&kafka, &file), (&wal, &memory), (&memory, &wal)] {
            let e = from.check(to).unwrap_err();
            assert!(e.contains("the source changed"), "{e}");
        }
        kafka.check(&kafka).unwrap();
    }
}
