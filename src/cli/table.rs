//! `compact` and `vacuum`: maintenance of a job's Delta table, with a progress bar on a
//! terminal.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sluice::commit::checkpoint::Checkpoints;
use sluice::config::{parse_bytes, parse_duration, Job};
use sluice::table::compact::{compact, CompactOptions};
use sluice::table::delta::DeltaTable;
use sluice::table::vacuum::{vacuum, VacuumOptions};
use sluice::task;

/// The job's destination and its table (which must exist, and be the job's: a job without
/// `table = "delta"` commits files no version names, which a vacuum would delete).
fn open(
    path: &Path,
    repo: Option<&str>,
    runtime: &tokio::runtime::Runtime,
) -> Result<(Job, sluice::store::Destination, DeltaTable)> {
    let job = Job::load_repo(path, repo)?;
    if job.table == sluice::table::TableKind::None {
        anyhow::bail!(
            "job `{}` writes plain files (its [sink] has no `table = \"delta\"`): compact and vacuum work on a job's Delta table only, and would take the files it commits for files no table version names; nothing was done",
            job.file.job.name
        );
    }
    let dest = task::destination(&job, runtime)?;
    let table = DeltaTable::open_existing(&dest, &job.file.job.name, runtime.handle().clone())
        .with_context(|| format!("job `{}`", job.file.job.name))?;
    Ok((job, dest, table))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")
}

/// A progress bar on a terminal (else none), moved by `(done, total)` calls.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(template: &str) -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(indicatif::ProgressStyle::with_template(template).expect("valid template"));
        Bar(Some(bar))
    }

    fn set(&self, done: u64, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(done);
        }
    }

    fn clear(self) {
        if let Some(b) = self.0 {
            b.finish_and_clear();
        }
    }
}

/// `sluice compact JOB`.
pub fn run_compact(
    path: &Path,
    repo: Option<&str>,
    partition: Option<String>,
    target_size: &str,
    min_files: usize,
    dry_run: bool,
) -> Result<()> {
    let runtime = runtime()?;
    let (job, dest, table) = open(path, repo, &runtime)?;
    if !dry_run {
        // Its log versions are written create-only, beside the running job's.
        Checkpoints::new(dest.clone(), &job.file.job.name).check_create_only()?;
    }
    if let Some(p) = &partition {
        if p.starts_with('/') || p.contains("://") || p.split('/').any(|s| s == ".." || s == ".") {
            bail!("--partition {p}: a folder of the table, relative to it (`dt=2024-05-01`), without `.` or `..`");
        }
    }
    let opts = CompactOptions {
        prefix: partition.map(|p| format!("{}/", p.trim_end_matches('/'))),
        target_bytes: parse_bytes(target_size)
            .map_err(|e| anyhow::anyhow!("--target-size: {e}"))?,
        min_files,
        dry_run,
    };
    let bar = Bar::new(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    );
    // One output file at a time: its row groups' columns are encoded on every core, as
    // `convert` does (the pool's threads are named `encode-N`).
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("encode-{i}"))
        .build_global();
    let mut format = job.format.clone();
    format.parallel = true;
    let started = std::time::Instant::now();
    let report = compact(&table, &dest, &format, &opts, &|d, t| bar.set(d, t));
    table.close();
    let report = report?;
    bar.clear();
    if let (Some(p), 0) = (&opts.prefix, report.under_prefix) {
        bail!("--partition: the table holds no files under `{p}` (its folders are named as `[sink.partition]` makes them, e.g. `dt=2024-05-01`)");
    }
    if report.bins == 0 && report.lost == 0 && report.skipped == 0 {
        println!(
            "nothing to compact: no folder holds {} or more files smaller than {target_size}",
            opts.min_files.max(2)
        );
    } else if dry_run {
        println!(
            "would compact {} files ({} bytes) into {} files",
            report.files_in, report.bytes_in, report.bins
        );
    } else {
        println!(
            "compacted {} files ({} bytes) into {} files ({} bytes, {} rows) in {:.2} s{}",
            report.files_in,
            report.bytes_in,
            report.files_out,
            report.bytes_out,
            report.rows,
            started.elapsed().as_secs_f64(),
            [
                (report.lost, "compacted by another writer first"),
                (
                    report.skipped,
                    "skipped: their files cannot be merged (see the log)"
                ),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("; {n} groups {what}"))
            .collect::<String>()
        );
    }
    Ok(())
}

/// The shortest retention `vacuum` takes without `--allow-short-retention`.
const MIN_RETENTION: Duration = Duration::from_secs(3600);

/// `sluice vacuum JOB`.
pub fn run_vacuum(
    path: &Path,
    repo: Option<&str>,
    older_than: &str,
    allow_short: bool,
    dry_run: bool,
) -> Result<()> {
    let retention = parse_duration(older_than).map_err(|e| anyhow::anyhow!("--older-than: {e}"))?;
    // A file a writer has put in the table's folder but not committed yet is named by no
    // version: only its age keeps it. A retention shorter than any write in flight deletes it
    // under its writer, whose commit then names a missing file.
    if retention < MIN_RETENTION && !allow_short && !dry_run {
        anyhow::bail!(
            "--older-than {older_than} is shorter than 1h: a file that a running job, backfill or \
             compaction has written but not committed yet is named by no table version, and \
             would be deleted under it (its commit would then name a missing file). Give a \
             longer retention, or --allow-short-retention when nothing writes the table"
        );
    }
    let runtime = runtime()?;
    let (_, dest, table) = open(path, repo, &runtime)?;
    let opts = VacuumOptions {
        older_than: retention,
        dry_run,
    };
    let bar = Bar::new("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files");
    let report = vacuum(&table, &dest, &opts, &|d, t| bar.set(d, t))?;
    bar.clear();
    for f in &report.files {
        println!("{} {f}", if dry_run { "would delete" } else { "deleted" });
    }
    println!(
        "{} {} files no version within {older_than} names{}",
        if dry_run { "would delete" } else { "deleted" },
        report.files.len(),
        kept(&report)
    );
    Ok(())
}

/// What a vacuum kept that its plan listed, for its summary line.
fn kept(report: &sluice::table::vacuum::VacuumReport) -> String {
    let mut out = String::new();
    if report.kept_unpublished > 0 {
        out += &format!(
            "; kept {} of sealed commits the table does not hold yet",
            report.kept_unpublished
        );
    }
    if report.kept_recent > 0 {
        out += &format!(
            "; kept {} that versions written during the vacuum add or remove",
            report.kept_recent
        );
    }
    if report.kept_other > 0 {
        out += &format!(
            "; kept {} in folders inside the table that are other destinations",
            report.kept_other
        );
    }
    out
}
