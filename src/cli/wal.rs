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
    /// Write the WAL's records from position `--from` on, as they were pushed: JSON lines, or the repo's CSV/TSV/text lines. Nothing of the log changes (the
    /// state lock is taken, as by `run`); a spill of this log's records in the state folder,
    /// which the export holds too, is removed once the output file is durable. Stop the job
    /// first. Damage before valid records stops it with an error, after what came before was
    /// written.
    Export {
        /// The job file (TOML).
        job: PathBuf,
        /// The repo, in a job file with several.
        #[arg(long)]
        repo: Option<String>,
        /// The position to start at: a line's start, as a refused start names it. Required:
        /// from the log's first (`0`), records already committed that are still in the log
        /// come out too, and pushed again are written twice.
        #[arg(long)]
        from: u64,
        /// The file to write (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Go on past damage (a bad record with valid ones after it, a missing stretch
        /// between segments): the valid records after it are written too, and each stretch
        /// passed over is named with its positions (its records are not in the output).
        #[arg(long)]
        past_damage: bool,
    },
}

pub fn run_wal(command: WalCommand) -> Result<()> {
    let WalCommand::Export {
        job,
        repo,
        from,
        output,
        past_damage,
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
            let e = match sluice::wal::export::export(&dir, from, past_damage, &mut out) {
                Ok(e) => e,
                Err(e) => {
                    // What came before the error was written; an output of nothing goes.
                    drop(out);
                    if std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() == 0) {
                        let _ = std::fs::remove_file(p);
                    }
                    return Err(e.into());
                }
            };
            // Durable before the spill it may stand for goes.
            out.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("writing {}", p.display()))?;
            e
        }
        None => {
            let mut out = Stdout {
                inner: std::io::BufWriter::new(std::io::stdout().lock()),
                failed: None,
            };
            let e = match sluice::wal::export::export(&dir, from, past_damage, &mut out) {
                Ok(e) => e,
                // The reader's end, not the WAL's (`… | head` closes the pipe).
                Err(_) if out.failed.is_some() => bail!(
                    "writing to standard output: {} (the export stopped there; the WAL is unchanged)",
                    out.failed.map(std::io::Error::from).expect("checked")
                ),
                Err(e) => return Err(e.into()),
            };
            out.flush().context("writing to standard output")?;
            e
        }
    };
    let passed: u64 = e
        .passed
        .iter()
        .map(|(_, f, t, _)| t.saturating_sub(*f))
        .sum();
    eprintln!(
        "{}: positions {} to {} ({} bytes) from {} segment(s)",
        dir.display(),
        e.from,
        e.end,
        (e.end - e.from).saturating_sub(passed),
        e.segments
    );
    for (segment, lost_from, lost_to, why) in &e.passed {
        eprintln!(
            "passed over positions {lost_from} to {lost_to} of {} ({why}): their records are not in the output",
            segment.display()
        );
    }
    if let Some((segment, why)) = e.torn {
        eprintln!(
            "stopped at a torn tail of {} ({why}): a crash during an append, never acknowledged",
            segment.display()
        );
    }
    match spilled {
        Spilled::No => {}
        Spilled::Unsure(why) => eprintln!(
            "warning: the spill in {} was left in place: {why}. Pushing this export again while it is restored can write records twice; discarding it (`--discard-spill`) loses what it holds that the export lacks",
            state.display()
        ),
        Spilled::Held { below, held } => {
            let span = |s: &[(u64, u64)]| match (s.first(), s.last()) {
                (Some(f), Some(l)) => format!("positions {} to {}", f.0, l.1),
                _ => "nothing".to_string(),
            };
            // Items of a stretch the export passed over (damage) are held by the spill only.
            let passed_over = held
                .iter()
                .find(|(a, b)| e.passed.iter().any(|(_, f, t, _)| a < t && f < b));
            if let Some((a, b)) = passed_over {
                eprintln!(
                    "warning: the spill in {} holds positions {a} to {b}, in a stretch the export passed over: it was left in place (it is their only copy); start the job with it restored, not with --discard-spill",
                    state.display()
                );
            } else if held.last().is_some_and(|l| l.1 > e.end) {
                eprintln!(
                    "warning: the spill in {} holds {}, past what was exported (to {}): it was left in place; pushing this export again while it is restored writes its records twice",
                    state.display(),
                    span(&held),
                    e.end
                );
            } else if let Some(p) = &output {
                // The output's name is durable before the spill it stands for goes.
                let dir = p.parent().unwrap_or(std::path::Path::new(""));
                sluice::durable::sync_dir(dir)
                    .with_context(|| format!("syncing the folder of {}", p.display()))?;
                sluice::channel::spill::remove(&state)?;
                eprintln!(
                    "removed the spill in {}: it held {} that the export holds (read from this log, not committed when the job stopped; they would else be written twice){}",
                    state.display(),
                    span(&held),
                    if below.is_empty() {
                        String::new()
                    } else {
                        format!(", and {} before --from, which the commits the refusal counted cover", span(&below))
                    }
                );
            } else {
                eprintln!(
                    "the spill in {} holds {} of this log, which the export holds too: with the log moved aside, start the job once with --discard-spill before pushing the export again, or they are written twice",
                    state.display(),
                    span(&held)
                );
            }
        }
    }
    Ok(())
}

/// What a spill in the state folder holds of the records an export writes.
enum Spilled {
    /// No spill of this log's records.
    No,
    /// The spill's items before `--from` (positions the commits the refusal counted cover)
    /// and from it on (in the export, unless past its end).
    Held {
        below: Vec<(u64, u64)>,
        held: Vec<(u64, u64)>,
    },
    /// It cannot be told which of its records the export holds.
    Unsure(String),
}

/// What a spill in the state folder `state` holds of the records an export of the log in
/// `wal` from `from` writes: its items, if the stopped run wrote it from this log (read, not
/// committed) and no start restored it since.
fn spilled(state: &std::path::Path, wal: &std::path::Path, from: u64) -> Result<Spilled> {
    use sluice::channel::spill;
    if !spill::exists(state) {
        return Ok(Spilled::No);
    }
    let Some(id) = sluice::wal::read_id(wal)? else {
        return Ok(Spilled::No);
    };
    let head = match spill::header(state) {
        Ok(head) => head,
        Err(e) => return Ok(Spilled::Unsure(format!("its manifest does not read ({e})"))),
    };
    if !head.logs.contains(&id) {
        return Ok(Spilled::No);
    }
    if head.restored || head.logs.len() > 1 {
        return Ok(Spilled::Unsure(
            "a start restored it before, so its positions may count another log".into(),
        ));
    }
    let mut spans = spill::positions(state)?;
    spans.sort_unstable();
    if let Some(&(f, n)) = spans.iter().find(|(f, n)| *f < from && from < *n) {
        return Ok(Spilled::Unsure(format!(
            "one of its items holds positions {f} to {n}, across --from {from}"
        )));
    }
    let (below, held) = spans.into_iter().partition(|(_, n)| *n <= from);
    Ok(Spilled::Held { below, held })
}

/// Standard output that remembers a failed write: an export error after one is the reader's
/// (a closed pipe), not the WAL's.
struct Stdout<W: Write> {
    inner: W,
    failed: Option<std::io::ErrorKind>,
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner
            .write(buf)
            .inspect_err(|e| self.failed = Some(e.kind()))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner
            .flush()
            .inspect_err(|e| self.failed = Some(e.kind()))
    }
}
