//! `sluice checkpoints skip`: a Kafka partition's checkpoint (the live job's, or a backfill's
//! with `--name`/`--url`/`--backfill`) moved forward past records that cannot be read, by an
//! operator, with the job stopped; one dead letter names them.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice::commit::checkpoint::Checkpoints;
use sluice::config::{Job, SourceSection};
use sluice::deadletter::DeadLetterWriter;
use sluice::task;

use super::jobs::io_runtime;

/// `backfill`: the backfill's `--name` and `--url`, for a backfill's partition.
pub fn run_skip(
    path: &Path,
    repo: Option<&str>,
    partition: &str,
    to: u64,
    backfill: Option<(Option<String>, Option<String>)>,
) -> Result<()> {
    let mut job = Job::load_repo(path, repo)?;
    let (brokers, options) = match &job.file.source {
        SourceSection::Kafka {
            brokers, options, ..
        } => (brokers.clone(), options.clone()),
        _ => bail!(
            "{}: skip moves a Kafka partition past records that cannot be read; this job's source is not Kafka",
            path.display()
        ),
    };
    let _locks = match backfill {
        Some((name, url)) => {
            super::backfill::as_backfill(&mut job, name, url)?;
            // No backfill of the job may run meanwhile (they share the state folder's lock).
            super::jobs::lock_state(&job, true)
                .context("a backfill of this job is running: stop it before the skip")?
        }
        None => Vec::new(),
    };
    // A skip past the log's end would, once producers pass it, skip real records unseen.
    let (topic, number) = partition
        .rsplit_once('-')
        .and_then(|(t, n)| Some((t, n.parse::<i32>().ok()?)))
        .ok_or_else(|| anyhow!("`{partition}` is not <topic>-<partition>"))?;
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &brokers);
    for (k, v) in options.iter() {
        cfg.set(k, v);
    }
    let client: BaseConsumer = cfg.create().context("creating a Kafka client")?;
    let (low, high) = client
        .fetch_watermarks(topic, number, std::time::Duration::from_secs(10))
        .with_context(|| format!("the end of {partition} from {brokers}"))?;
    if to > high as u64 {
        bail!("offset {to} is past the end of {partition} ({high}): a skip there would pass over records produced later");
    }
    let runtime = io_runtime()?;
    let dest = task::destination(&job, &runtime)?;
    let label = task::repo_label(&job);
    let (dead, folder) = task::dead_letters_at(&job, &dest, &label, &runtime)?;
    // The skip's dead letter goes where the job's go: a topic, or a file of its own.
    let letter = match sluice::deadletter::topic::for_job(&job, &label)? {
        Some(topic) => DeadLetterWriter::to_topic(topic, partition.to_string()),
        None => DeadLetterWriter::new(
            dead.clone(),
            format!(
                "{folder}{}",
                sluice::sink::paths::visible_name(&format!(
                    "{partition}-{}-skipped-{}.jsonl",
                    to.saturating_sub(1),
                    sluice::commit::random_tag()
                ))
            ),
            partition.to_string(),
        ),
    };
    let cps = Checkpoints::new(dest, &job.file.job.name).with_dead_letters(dead);
    cps.check_create_only()?;
    let s = cps.skip_to(
        partition,
        to,
        low.max(0) as u64,
        "`sluice checkpoints skip`",
        letter,
    )?;
    let range = if s.stood {
        format!("offsets {} to {}", s.from, s.to - 1)
    } else {
        format!(
            "it had no checkpoint: offsets before {} (from the log's first, {})",
            s.to, s.from
        )
    };
    println!(
        "partition {partition}: {range} skipped (at most {} records, not exported; one dead letter names them); the job resumes at offset {} (commit {})",
        s.to - s.from,
        s.to,
        s.seq
    );
    Ok(())
}
