//! `sluice wal export`: a push job's acknowledged records out of its WAL, as they were pushed,
//! with the job stopped. A start refused because another log (or a copy of this one's
//! folder) committed past this log names the positions it holds uncommitted; this writes them
//! out, so that they can be pushed again once the log is moved aside. A spill the stopped run
//! left of this log's records (read, not committed) holds records the export holds too: an
//! export to a file removes it once the file is durable, so that they are not written twice.

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
    /// state lock is taken, as by `run`); a spill of this log's records in the state folder,
    /// which the export holds too, is removed once the output file is durable. Stop the job
    /// first. Damage before valid records stops it with an error, after what came before was
    /// written.
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
    let state = job.resolve(&job.file.job.state_dir);
    let spilled = spilled(&state, &dir, from)?;
    let e = match &output {
        Some(p) => {
            let file =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let e = sluice::wal::export::export(&dir, from, &mut out)?;
            // Durable before the spill it may stand for goes.
            out.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("writing {}", p.display()))?;
            e
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let e = sluice::wal::export::export(&dir, from, &mut out)?;
            out.flush().context("writing to standard output")?;
            e
        }
    };
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
    if let Some(spans) = spilled {
        let (first, last) = (spans[0].0, spans[spans.len() - 1].1);
        if last > e.end {
            bail!("the spill in {} holds positions up to {last}, past what was exported ({}): it was left in place; push the export again only after starting the job once with --discard-spill, or its records are written twice", state.display(), e.end);
        }
        if output.is_some() {
            sluice::channel::spill::remove(&state)?;
            eprintln!(
                "removed the spill in {}: its records (positions {first} to {last}, read from this log and not committed when the job stopped) are in the export, and would else be written twice",
                state.display()
            );
        } else {
            eprintln!(
                "the spill in {} holds positions {first} to {last} of this log, which the export holds too: start the job once with --discard-spill before pushing the export again, or they are written twice",
                state.display()
            );
        }
    }
    Ok(())
}

/// The positions held by a spill in the state folder `state` that the stopped run wrote from
/// this log (read from it and not committed), which an export from `from` holds too; an error
/// when the export would hold some of them only (a `from` inside them), or cannot tell (a
/// spill restored by an earlier start counts positions of more than one log).
fn spilled(
    state: &std::path::Path,
    wal: &std::path::Path,
    from: u64,
) -> Result<Option<Vec<(u64, u64)>>> {
    use sluice::channel::spill;
    if !spill::exists(state) {
        return Ok(None);
    }
    let Some(id) = sluice::wal::read_id(wal)? else {
        return Ok(None);
    };
    let head = spill::header(state)?;
    if !head.logs.contains(&id) {
        return Ok(None);
    }
    if head.restored || head.logs.len() > 1 {
        bail!(
            "the spill in {} was restored by an earlier start and counts positions of this log and another: the export cannot tell which of its records the spill holds too. Start the job with --discard-spill once the log is moved aside, then export and push again; or leave the log in place",
            state.display()
        );
    }
    let mut spans = spill::positions(state)?;
    spans.sort_unstable();
    match spans.first() {
        None => Ok(None),
        Some(&(first, _)) if first < from => bail!(
            "the spill in {} holds positions from {first} on, before --from {from}: export from {first} (the export then holds every record the spill holds, and removes the spill)",
            state.display()
        ),
        Some(_) => Ok(Some(spans)),
    }
}
