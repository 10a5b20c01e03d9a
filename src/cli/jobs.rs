//! The job commands: `run`, `checkpoints`, `demo` (`backfill` is in [`super::backfill`],
//! `schema` in [`super::schema`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use sluice::commit::checkpoint::Checkpoints;
use sluice::config::{Job, SourceSection};
use sluice::task::{self, FromCheckpoint};

use crate::init_logs;

#[derive(Subcommand)]
pub enum CheckpointCommand {
    /// The newest checkpoint of every partition (of every repo of the job file).
    List {
        /// The job file (TOML).
        job: PathBuf,
        /// Only this repo of a job file with several.
        #[arg(long)]
        repo: Option<String>,
    },
    /// Every checkpoint of one partition (`<topic>-<partition>`), with its files.
    Show {
        /// The job file (TOML).
        job: PathBuf,
        partition: String,
        /// The repo, in a job file with several.
        #[arg(long)]
        repo: Option<String>,
    },
    /// Move a Kafka partition's checkpoint forward to offset `--to`, past records that cannot
    /// be read (a batch the client fetches again for ever). Stop the job first; the skipped
    /// records are not exported, and one dead letter names their offsets.
    Skip {
        /// The job file (TOML).
        job: PathBuf,
        /// `<topic>-<partition>`, as `checkpoints list` names it.
        partition: String,
        /// The offset the partition resumes at.
        #[arg(long)]
        to: u64,
        /// The repo, in a job file with several.
        #[arg(long)]
        repo: Option<String>,
        /// A backfill's partition instead of the live job's: the backfill's `--name` (its
        /// default, `<job>-backfill`, when only --backfill or --url is given).
        #[arg(long)]
        name: Option<String>,
        /// A backfill's partition (see --name), in the destination given to it as --url.
        #[arg(long)]
        url: Option<String>,
        /// A backfill's partition under its default name and the job's destination.
        #[arg(long)]
        backfill: bool,
    },
}

/// Locks the local state of a run that owns it alone: a file or push job's (spill, WAL), or a
/// backfill's. A live Kafka job keeps nothing there that another member could share, so
/// several may run from one folder (one consumer group).
pub fn lock_state(job: &Job, backfill: bool) -> Result<Vec<sluice::lock::DirLock>> {
    if matches!(job.file.source, SourceSection::Kafka { .. }) && !backfill {
        return Ok(Vec::new());
    }
    let state = job.resolve(&job.file.job.state_dir);
    let mut locks = vec![sluice::lock::DirLock::acquire(&state)?];
    // The WAL folder is locked on its own, wherever it is: another process of the job with
    // another state folder naming this one's WAL (`wal_dir`) took its state folder's lock
    // alone, and two processes appended to one log, each deleting what the other had not
    // committed.
    // (A memory log's folder named by `wal_dir` too: a switch to memory exports what it
    // left there.) A WAL folder that is the state folder itself is locked once.
    if let SourceSection::Push {
        wal_dir,
        durability,
        ..
    } = &job.file.source
    {
        if durability.as_str() != "memory" || wal_dir.is_some() {
            let wal = sluice::config::wal_folder(job, wal_dir.as_deref());
            let same = match (std::fs::canonicalize(&state), std::fs::canonicalize(&wal)) {
                (Ok(s), Ok(w)) => s == w,
                _ => false,
            };
            if !same {
                locks.push(sluice::lock::DirLock::acquire(&wal)?);
            }
        }
    }
    Ok(locks)
}

/// The repos of the job file at `path`: all of them, or the one named `repo`.
pub(super) fn load_jobs(path: &Path, repo: Option<&str>) -> Result<Vec<Job>> {
    Ok(match repo {
        Some(r) => vec![Job::load_repo(path, Some(r))?],
        None => Job::load_all(path)?,
    })
}

pub fn run_job(
    path: &Path,
    repo: Option<&str>,
    from_checkpoint: Option<FromCheckpoint>,
    discard_spill: bool,
    move_wal_damage: bool,
    threads: Option<usize>,
    log_json: bool,
) -> Result<()> {
    init_logs(log_json);
    let mut jobs = load_jobs(path, repo)?;
    if let Some(f) = from_checkpoint {
        one_repo_rolled_back(&jobs, f)?;
    }
    let mut _locks = Vec::new();
    for j in &mut jobs {
        j.move_wal_damage = move_wal_damage;
        // Read once, before anything names the repo by it (the admin slots).
        j.pin_schema();
        _locks.extend(lock_state(j, false)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    // One SIGHUP flag per repo: each repo's task reloads its own part of the job file.
    let hups: Vec<task::reload::Hup> = jobs.iter().map(|_| Default::default()).collect();
    for hup in &hups {
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.flag.clone())
            .context("installing signal handlers")?;
    }
    let admin = task::start_admin(&jobs)?;
    let opts = task::RunOptions {
        from_checkpoint,
        discard_spill,
        threads: threads.unwrap_or(0),
        progress: false,
        admin: None,
        groups: None,
    };
    // A job file with one `[repo]` runs as one task that fails the process when it fails; the
    // repos of `[[repos]]` (all, or the one named) are supervised.
    if jobs.len() == 1 && jobs[0].repo.is_none() {
        let job = jobs.into_iter().next().expect("one job");
        let opts = task::RunOptions {
            admin: admin
                .as_ref()
                .and_then(|a| a.admin.slot(&task::repo_label(&job))),
            ..opts
        };
        let hup = hups.into_iter().next().expect("one flag");
        let (job, result) = task::reload::run_reloading(path, job, opts, stop, hup);
        let s = result?;
        println!("{}", summary(&job, &s));
        // A file job reads to the end of its files: stopped before, it is not done (a
        // script's `sluice run job && next` must not go on).
        if matches!(job.file.source, SourceSection::File { .. }) && !s.ended {
            bail!(
                "job {}: stopped before the end of its input; what it committed stands: run it again to resume",
                job.file.job.name
            );
        }
        return Ok(());
    }
    let file_jobs: std::collections::HashSet<String> = jobs
        .iter()
        .filter(|j| matches!(j.file.source, SourceSection::File { .. }))
        .map(|j| j.file.job.name.clone())
        .collect();
    if repo.is_none() {
        task::many::tell_of_added_repos(path, &jobs);
    }
    let outcomes = task::many::run_all(path, jobs, opts, admin.as_ref(), stop, hups);
    let mut failed = Vec::new();
    for o in outcomes {
        match o.result {
            Ok(s) if file_jobs.contains(&o.job) && !s.ended => {
                println!(
                    "repo {} (job {}): stopped before the end of its input ({} rows in {} commits stand): run it again to resume",
                    o.repo, o.job, s.rows, s.commits
                );
                failed.push(o.repo);
            }
            Ok(s) => println!(
                "repo {} (job {}): {:?}; {} rows, {} dead letters in {} files over {} commits; {:.2} s",
                o.repo, o.job, s.state, s.rows, s.dead_letters, s.files, s.commits, s.seconds
            ),
            Err(e) => {
                println!("repo {} (job {}): failed: {e}", o.repo, o.job);
                failed.push(o.repo);
            }
        }
    }
    if !failed.is_empty() {
        bail!("repos {} failed (see above)", failed.join(", "));
    }
    Ok(())
}

/// What a run of one job did, as its last line says it: a file job that read its input to
/// the end says so (and that nothing was new, when nothing was), any other where it stopped;
/// then what it wrote, and where.
fn summary(job: &Job, s: &task::RunSummary) -> String {
    let name = &job.file.job.name;
    let url = &job.file.sink.url;
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let wrote = format!(
        "{}, {} in {} over {}",
        plural(s.rows, "row", "rows"),
        plural(s.dead_letters, "dead letter", "dead letters"),
        plural(s.files, "file", "files"),
        plural(s.commits, "commit", "commits"),
    );
    let file_job = matches!(job.file.source, SourceSection::File { .. });
    match (file_job && s.ended, s.commits) {
        (true, 0) => format!(
            "job {name}: nothing new to export (0 rows): every input is committed to its end ({url}); {:.2} s",
            s.seconds
        ),
        (true, _) => format!(
            "job {name}: read its input to the end; {wrote}, to {url}; {:.2} s",
            s.seconds
        ),
        _ => format!(
            "job {name}: {}; {wrote}, to {url}; {:.2} s",
            format!("{:?}", s.state).to_lowercase(),
            s.seconds
        ),
    }
}

pub fn run_demo(out: &Path) -> Result<()> {
    init_logs(false);
    if out.join("_sluice/demo").exists() {
        bail!(
            "{} already holds a demo run (its checkpoints say everything is exported): remove \
             the folder or pass --out with a new one",
            out.display()
        );
    }
    let r = sluice::demo::run(out)?;
    println!(
        "\nexported {} events from an embedded Kafka broker (topic nginx_access, 4 partitions): \
         {} rows, {} dead letters, {} files, {} commits in {:.2} s",
        r.events,
        r.summary.rows,
        r.summary.dead_letters,
        r.summary.files,
        r.summary.commits,
        r.summary.seconds
    );
    println!("files:        {}/dt=*/hr=*/*.parquet", r.out.display());
    println!("checkpoints:  {}/_sluice/demo/", r.out.display());
    println!(
        "query:        duckdb -c \"SELECT region, count(*), avg(latency_ms) FROM read_parquet('{}/**/*.parquet', hive_partitioning = true) GROUP BY ALL\"",
        r.out.display()
    );
    Ok(())
}

pub fn run_checkpoints(cmd: CheckpointCommand) -> Result<()> {
    let (path, repo, partition) = match &cmd {
        CheckpointCommand::Skip {
            job,
            partition,
            to,
            repo,
            name,
            url,
            backfill,
        } => {
            let backfill =
                (*backfill || name.is_some() || url.is_some()).then(|| (name.clone(), url.clone()));
            return super::skip::run_skip(job, repo.as_deref(), partition, *to, backfill);
        }
        CheckpointCommand::List { job, repo } => (job, repo.as_deref(), None),
        CheckpointCommand::Show {
            job,
            partition,
            repo,
        } => (job, repo.as_deref(), Some(partition.clone())),
    };
    let runtime = io_runtime()?;
    if partition.is_some() {
        let job = Job::load_repo(path, repo)?;
        return print_checkpoints(&job, partition, &runtime);
    }
    let jobs = load_jobs(path, repo)?;
    for job in &jobs {
        if jobs.len() > 1 {
            println!(
                "repo {} (job {}):",
                task::repo_label(job),
                job.file.job.name
            );
        }
        print_checkpoints(job, None, &runtime)?;
    }
    Ok(())
}

/// `run --from-checkpoint N --dry-run`: what the roll-back would delete, per partition.
/// `--from-checkpoint N` names one repo's commit: refused for a job file's several repos
/// (another repo rolled back to its own commit of that number would delete files readers may
/// have seen, and one without it would fail at every restart).
fn one_repo_rolled_back(jobs: &[Job], f: FromCheckpoint) -> Result<()> {
    if jobs.len() > 1 {
        bail!(
            "--from-checkpoint {}: the job file has {} repos, and the number is one repo's \
             commit (another repo rolled back to its own commit of that number would delete \
             files readers may have seen, and one without it would fail at every restart): \
             name the repo with --repo",
            f.seq,
            jobs.len()
        );
    }
    Ok(())
}

pub fn run_roll_back_plan(path: &Path, repo: Option<&str>, f: FromCheckpoint) -> Result<()> {
    let runtime = io_runtime()?;
    let seq = f.seq;
    let jobs = load_jobs(path, repo)?;
    one_repo_rolled_back(&jobs, f)?;
    let mut stops = 0;
    for job in &jobs {
        let dest = task::destination(job, &runtime)?;
        // As the run refuses it, before anything else.
        if job.table != sluice::table::TableKind::None || sluice::table::present(&dest)? {
            bail!("{}: --from-checkpoint cannot roll back a table (its readers may have seen the commits); use the table's own time travel or restore", dest.url());
        }
        let cps = Checkpoints::new(dest, &job.file.job.name);
        let again = if f.again { " --again" } else { "" };
        println!(
            "job {}: a run with --from-checkpoint {seq}{again} would",
            job.file.job.name
        );
        let mut keys = cps.keys()?;
        // A Kafka job's compacted topics, as the run asks for them (its partitions there are
        // refused), without joining the job's group (a live one would rebalance).
        let compacted = match &job.file.source {
            SourceSection::Kafka {
                brokers,
                topics,
                options,
                ..
            } if !f.compacted => {
                match sluice::source::kafka::compacted_topics(brokers, topics, options) {
                    Ok((compacted, unknown)) => {
                        if let Some(why) = unknown {
                            println!("  (whether these topics are compacted cannot be told: {why}; a roll-back of them goes on unchecked)");
                        }
                        compacted
                    }
                    Err(e) => {
                        println!(
                            "  (cannot ask the brokers whether its topics are compacted: {e})"
                        );
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        // A file job rolls back the files it reads now; others' checkpoints stay.
        if matches!(job.file.source, SourceSection::File { .. }) {
            let read: Vec<String> = task::prepare(job, false)?
                .source
                .map(|s| s.partitions().iter().map(|p| p.key()).collect())
                .unwrap_or_default();
            keys.retain(|k| {
                let ours = read.contains(k);
                if !ours {
                    println!("  leave partition {k} as it is: the job no longer reads its file");
                }
                ours
            });
        }
        if keys.is_empty() {
            println!("  do nothing: no checkpoints yet");
        }
        // What a start with the flag would leave alone: partitions rolled back already, and
        // those newer than another's roll-back to the checkpoint.
        let asked = keys.iter().map(|k| (k.clone(), Some(f))).collect();
        let kept: std::collections::HashMap<String, bool> = task::roll_backs(&cps, asked)?
            .into_iter()
            .map(|(k, r)| (k, r.is_some()))
            .collect();
        for key in keys {
            let history = cps.history(&key)?;
            let target = history.iter().find(|c| c.seq == seq);
            if let (None, true) = (target, kept[&key]) {
                println!("  stop at partition {key}: it has no checkpoint {seq}");
                stops += 1;
                continue;
            }
            if let Some(r) = task::already_rolled_back(&cps, &key, f)? {
                println!(
                    "  leave partition {key} as it is: it was rolled back to checkpoint {seq} at {} (commit {}); add --again to roll it back once more",
                    sluice::commit::format_ms(r.at_ms),
                    r.seq
                );
                continue;
            }
            let Some(target) = target.filter(|_| kept[&key]) else {
                println!(
                    "  leave partition {key} as it is: other partitions of its topic were rolled back to checkpoint {seq}, and its own checkpoint {seq} was made since (or it never had one)"
                );
                continue;
            };
            if let Err(why) = task::refuse_compacted(&compacted, &key, seq) {
                println!("  stop at partition {key}: {why}");
                stops += 1;
                continue;
            }
            if let Err(why) = sluice::commit::check_roll_back_listing(&key, &history, seq) {
                println!("  stop at partition {key}: {why}");
                stops += 1;
                continue;
            }
            let later: Vec<_> = history.iter().filter(|c| c.seq > seq).collect();
            println!(
                "  resume partition {key} at offset {} (if the source still holds it), removing {} later commits:",
                target.next_offset,
                later.len()
            );
            for c in later {
                for f in &c.files {
                    println!("    delete {} ({} rows)", f.path, f.rows);
                }
                for f in &c.dead_letter_files {
                    println!("    delete {f} (dead letters)");
                }
            }
        }
    }
    if stops > 0 {
        bail!("the run would stop at {stops} partition(s), as said above");
    }
    Ok(())
}

fn print_checkpoints(
    job: &Job,
    partition: Option<String>,
    runtime: &tokio::runtime::Runtime,
) -> Result<()> {
    let dest = task::destination(job, runtime)?;
    let cps = Checkpoints::new(dest, &job.file.job.name);
    match partition {
        None => {
            let keys = cps.keys()?;
            if keys.is_empty() {
                println!("job {} has no checkpoints yet", job.file.job.name);
            }
            for key in keys {
                if let Some(c) = cps.latest(&key)? {
                    println!(
                        "{key}: seq {} next offset {} (line {}), {} files, {} rows, {} dead letters, at {}",
                        c.seq,
                        c.next_offset,
                        c.next_line,
                        c.files.len(),
                        c.rows,
                        c.dead_letters,
                        sluice::commit::format_ms(c.committed_at_ms)
                    );
                }
            }
            super::ranges::print_backfills(cps.destination(), job);
        }
        Some(key) => {
            let history = cps.history(&key)?;
            if history.is_empty() {
                bail!("partition {key} has no checkpoints (see `sluice checkpoints list`)");
            }
            for c in history {
                println!(
                    "seq {} next offset {} (line {}) at {}: {} rows, {} dead letters, by {}",
                    c.seq,
                    c.next_offset,
                    c.next_line,
                    sluice::commit::format_ms(c.committed_at_ms),
                    c.rows,
                    c.dead_letters,
                    c.owner
                );
                for f in c.files {
                    println!(
                        "  {} offsets {}..={} rows {} bytes {}",
                        f.path, f.first_offset, f.last_offset, f.rows, f.bytes
                    );
                }
                for f in c.dead_letter_files {
                    println!("  {f} (dead letters)");
                }
            }
        }
    }
    Ok(())
}

/// Object store requests run here. Multi-threaded: a current-thread runtime's I/O is driven
/// only by its own `block_on`, not by the `Handle::block_on` the destinations use.
pub fn io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the I/O runtime")
}
