//! `sluice checkpoints skip`: a Kafka partition's checkpoint moved forward past records that
//! cannot be read, by an operator, with the job stopped.

use std::path::Path;

use anyhow::{bail, Result};
use sluice::commit::checkpoint::Checkpoints;
use sluice::config::{Job, SourceSection};
use sluice::task;

use super::jobs::io_runtime;

pub fn run_skip(path: &Path, repo: Option<&str>, partition: &str, to: u64) -> Result<()> {
    let job = Job::load_repo(path, repo)?;
    if !matches!(job.file.source, SourceSection::Kafka { .. }) {
        bail!(
            "{}: skip moves a Kafka partition past records that cannot be read; this job's source is not Kafka",
            path.display()
        );
    }
    let runtime = io_runtime()?;
    let dest = task::destination(&job, &runtime)?;
    let dead = match &job.file.dead_letters.url {
        Some(u) => task::destination_at(&job, u, &runtime)?,
        None => dest.clone(),
    };
    let cps = Checkpoints::new(dest, &job.file.job.name).with_dead_letters(dead);
    if !cps.keys()?.iter().any(|k| k == partition) {
        bail!(
            "job `{}` has no checkpoints for partition `{partition}` (`sluice checkpoints list` names them)",
            job.file.job.name
        );
    }
    let s = cps.skip_to(partition, to, "sluice checkpoints skip")?;
    println!(
        "partition {partition}: offsets {} to {} skipped (at most {} records, not exported and not dead letters); the job resumes at offset {} (commit {})",
        s.from,
        s.to - 1,
        s.to - s.from,
        s.to,
        s.seq
    );
    Ok(())
}
