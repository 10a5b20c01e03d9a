//! A job file with several repos: one task per repo, each on its own thread with its own
//! source, channel, sink workers, checkpoints and state folder, so a slow or failing repo never
//! stalls another (they share the process's cores and the admin listener).
//!
//! A repo whose task fails while its source is live (Kafka, push) is started again after a
//! pause that doubles from 1 s to 1 min; the others run on meanwhile, and the admin routes show
//! the repo as `failed` with its error. A bounded repo (files) that fails stays failed, as does
//! one refused a start only an operator can change (a roll-back it cannot make). The run
//! ends when every repo's task has ended: all at once on SIGINT/SIGTERM, one by one through
//! `POST /v1/tasks/{repo}/stop` or when their input ends.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reload::run_reloading;
use super::{repo_label, AdminServer, RunOptions, RunSummary, TaskError};
use crate::config::{Job, SourceSection};

/// How one repo's task ended.
pub struct RepoOutcome {
    pub repo: String,
    /// The job name of the repo's task (`<job>.<repo>`).
    pub job: String,
    pub result: Result<RunSummary, TaskError>,
}

/// The longest pause before a failed repo's task starts again.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Runs every job of `jobs` (the repos of the job file at `path`) until each ends. `hups` has
/// one SIGHUP flag per job.
pub fn run_all(
    path: &Path,
    jobs: Vec<Job>,
    opts: RunOptions,
    admin: Option<&AdminServer>,
    stop: Arc<AtomicBool>,
    hups: Vec<super::reload::Hup>,
) -> Vec<RepoOutcome> {
    let groups = super::groups::Groups::default();
    for job in &jobs {
        groups.running(&repo_label(job), job);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .zip(hups)
            .map(|(job, hup)| {
                let repo = repo_label(&job);
                let mut opts = opts.clone();
                opts.admin = admin.and_then(|a| a.admin.slot(&repo));
                opts.groups = Some(groups.clone());
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("repo-{repo}"))
                    .spawn_scoped(scope, move || {
                        // Every log line of the repo's task names the repo.
                        let _span = tracing::info_span!("repo", repo = %repo).entered();
                        let groups = opts.groups.clone();
                        let job_name = job.file.job.name.clone();
                        let result = supervise(path, &repo, job, opts, &stop, &hup);
                        if let Some(g) = groups {
                            g.ended(&repo);
                        }
                        RepoOutcome {
                            repo: repo.clone(),
                            job: job_name,
                            result,
                        }
                    })
                    .expect("spawn a repo thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a repo thread panicked"))
            .collect()
    })
}

/// On each SIGHUP, logs the repos the job file at `path` has gained since `jobs` were read: a
/// reload takes each running repo's part of the file, and a new repo takes a restart (a
/// removed one is refused by its own reload). Said, not left for the operator to find.
pub fn tell_of_added_repos(path: &Path, jobs: &[Job]) {
    let hup = Arc::new(AtomicBool::new(false));
    if signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).is_err() {
        return;
    }
    let known: Vec<String> = jobs.iter().filter_map(|j| j.repo.clone()).collect();
    let path = path.to_path_buf();
    let span = tracing::Span::current();
    // Detached: it only reads the file and logs, and ends with the process.
    let _ = std::thread::Builder::new()
        .name("repos-watch".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            if !hup.swap(false, Ordering::AcqRel) {
                continue;
            }
            let Ok(now) = Job::load_all(&path) else {
                continue; // each repo's reload says what is wrong with the file
            };
            for r in now.iter().filter_map(|j| j.repo.as_deref()) {
                if !known.iter().any(|k| k == r) {
                    span.in_scope(|| tracing::warn!(repo = r, job = %path.display(), "SIGHUP: the job file has a new repo, which a reload does not start; restart the process to run it"));
                }
            }
        });
}

/// Runs one repo's job, starting it again after a failure while its source is live (with the
/// job as last reloaded by SIGHUP), unless the process or the repo was stopped. A panic in the
/// repo's task is its failure, not the process's.
fn supervise(
    path: &Path,
    repo: &str,
    mut job: Job,
    mut opts: RunOptions,
    stop: &Arc<AtomicBool>,
    hup: &super::reload::Hup,
) -> Result<RunSummary, TaskError> {
    // Read once (see `run_reloading`): a panic that escapes it restarts with this one.
    job.pin_schema();
    let mut pause = Duration::from_secs(1);
    let stopped = |opts: &RunOptions| {
        stop.load(Ordering::Acquire) || opts.admin.as_ref().is_some_and(|s| s.stopped())
    };
    loop {
        let started = Instant::now();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_reloading(path, job.clone(), opts.clone(), stop.clone(), hup.clone())
        }));
        let result = match run {
            Ok((current, result)) => {
                // A reload to another destination: a roll-back asked of the first one is not
                // this one's to make (its checkpoint numbers are another history).
                if current.file.sink.url != job.file.sink.url {
                    opts.from_checkpoint = None;
                }
                job = current;
                result
            }
            Err(panic) => Err(super::reload::panicked(&job, &opts, panic.as_ref())),
        };
        // Of the job as last reloaded.
        let live = !matches!(job.file.source, SourceSection::File { .. });
        match result {
            Ok(summary) => return Ok(summary),
            Err(e) if e.refused() => {
                tracing::error!(repo, error = %e, "the repo's task was refused a start that only an operator can change; it is not started again, the other repos run on");
                return Err(e);
            }
            Err(e) if live && !stopped(&opts) => {
                // A run that lasted a while before failing starts the pauses over.
                if started.elapsed() > MAX_PAUSE {
                    pause = Duration::from_secs(1);
                }
                tracing::error!(repo, error = %e, pause_s = pause.as_secs(), "the repo's task failed; it starts again after a pause, the other repos run on");
                let until = Instant::now() + pause;
                while Instant::now() < until {
                    if stopped(&opts) {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                pause = (pause * 2).min(MAX_PAUSE);
                if let Some(slot) = &opts.admin {
                    slot.metrics.restarted();
                }
                // Done once, by the first run: later damage needs an operator's decision. A
                // roll-back is kept: the retry finishes one the first run left half made (its
                // claims side by side), and repeats none (this process's own roll-backs count
                // as done, with `--again` too).
                opts.discard_spill = false;
                job.move_wal_damage = false;
            }
            Err(e) => return Err(e),
        }
    }
}
