//! `sluice wal export`: a push job's acknowledged records out of its WAL, as they were pushed,
//! with the job stopped. A start refused because another log (or a copy of this one's
//! folder) committed past this log names the positions it holds uncommitted; this writes them
//! out, so that they can be pushed again once the log is moved aside.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sluice::config::{Job, SourceSection};

use super::jobs::lock_state;

#[derive(Subcommand)]
pub enum WalCommand {
    /// Write the WAL's records from position `--from` on (default: its first), as they were
    /// pushed: JSON lines, or the repo's CSV/TSV/text lines. Nothing of the log changes (the
    /// state lock is taken, as by `run`). Stop the job first. Damage before valid records
    /// stops it with an error, after what came before was written.
    Export {
        job: PathBuf,
        /// The repo, in a job file with several.
        #[arg(long)]
        repo: Option<String>,
        /// The position to start at: a line's start, as a refused start names it.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// The file to write (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

pub fn run_wal(command: WalCommand) -> Result<()> {
    let WalCommand::Export {
        job,
        repo,
        from,
        output,
    } = command;
    let path = job;
    let job = Job::load_repo(&path, repo.as_deref())?;
    let SourceSection::Push {
        durability,
        wal_dir,
        ..
    } = &job.file.source
    else {
        bail!("{}: only a push job has a WAL", path.display());
    };
    if durability != "wal" {
        bail!(
            "{}: durability is `{durability}`: the job keeps no WAL",
            path.display()
        );
    }
    let dir = sluice::task::wal_folder(&job, wal_dir.as_deref());
    if !dir.is_dir() {
        bail!(
            "{}: no WAL folder (the job has not run with this state folder)",
            dir.display()
        );
    }
    // The running job appends and releases segments: it must be stopped.
    let _locks = lock_state(&job, false)?;
    let mut out: Box<dyn Write> = match &output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let e = sluice::wal::export::export(&dir, from, &mut out)?;
    drop(out);
    eprintln!(
        "{}: positions {} to {} ({} bytes) from {} segment(s)",
        dir.display(),
        e.from,
        e.end,
        e.end - e.from,
        e.segments
    );
    if let Some((segment, why)) = e.torn {
        eprintln!(
            "stopped at a torn tail of {} ({why}): a crash during an append, never acknowledged",
            segment.display()
        );
    }
    Ok(())
}
