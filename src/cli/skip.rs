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
use sluice::source::kafka::Position;
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
    let is_backfill = backfill.is_some();
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
        .filter(|(t, n)| *n >= 0 && format!("{t}-{n}") == partition)
        .ok_or_else(|| anyhow!("`{partition}` is not <topic>-<partition> as checkpoints name it (`checkpoints list` shows them)"))?;
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
    let letter = match sluice::deadletter::topic::for_job_now(&job, &label)? {
        Some(topic) => DeadLetterWriter::to_topic(topic, partition.to_string()),
        None => DeadLetterWriter::new(
            dead.clone(),
            format!(
                "{folder}{}",
                sluice::sink::paths::visible_name(&sluice::sink::paths::file_name(
                    partition,
                    &format!(
                        "-{}-skipped-{}",
                        to.saturating_sub(1),
                        sluice::commit::random_tag()
                    ),
                    "",
                    ".jsonl"
                ))
            ),
            partition.to_string(),
        ),
    };
    let cps = Checkpoints::new(dest, &job.file.job.name).with_dead_letters(dead);
    cps.check_create_only()?;
    // `--name` names a backfill of this repo that ran here, not any job with checkpoints in
    // the destination: another live job's (or repo's) partition would be fenced, and its
    // records skipped.
    if is_backfill {
        check_backfill_name(&job, &cps, &label)?;
    }
    // A partition without a checkpoint starts where its run would start it: a skip to before
    // there would read records outside what the run covers. (One that gets a checkpoint
    // meanwhile is judged by it, under the skip's term.)
    let first = if cps.latest(partition)?.is_none() {
        let start = if is_backfill {
            backfill_start(&job, (&cfg, &client), (topic, number), (low, high))?
        } else {
            // Where its newest claim started it (past a backfill's range), recorded before
            // that claim looked at the backfills: a backfill recorded since finds it.
            let recorded =
                sluice::commit::ranges::origin(cps.destination(), &job.file.job.name, partition)?;
            let Some(start) = recorded else {
                bail!("partition {partition} has no checkpoint and no recorded start: run the job first (its first start of the partition records where, and checks the backfills recorded in the destination), then skip");
            };
            // The live job's first start checks the backfills recorded in its destination
            // (and moves past a committed one's range); a skip past that check must not write
            // the first checkpoint into a backfill's range.
            let found = sluice::commit::ranges::backfills(
                cps.destination(),
                Some(&job.file.job.name),
                &task::repo_label(&job),
            )?;
            for (name, r) in &found {
                for s in r.spans.iter().flatten().filter(|s| s.key() == partition) {
                    if s.from < s.to && s.to > start as i64 {
                        bail!("partition {partition} has no checkpoint, and backfill `{name}` recorded offsets {}..{} of it in this destination: the job's first start of it is checked against that range, which a skip would pass. Start the job (it starts past a committed backfill's range, and records where), then skip", s.from, s.to);
                    }
                }
            }
            start
        };
        if to <= start {
            bail!("partition {partition} has no checkpoint and starts at offset {start}: a skip to {to} would move it back (records before {start} are not the run's to read)");
        }
        start
    } else {
        low.max(0) as u64
    };
    // A backfill's checkpoint past its range's end would name records the live job exports
    // as skipped (its dead letter), and leave the backfill past what it was asked to read.
    if is_backfill {
        let range = sluice::commit::ranges::read_range(cps.destination(), &job.file.job.name)?;
        let end = range
            .iter()
            .flat_map(|r| r.spans.iter().flatten())
            .find(|s| s.key() == partition)
            .map(|s| s.to);
        if let Some(end) = end.filter(|end| to as i64 > *end) {
            bail!("offset {to} is past the end of the backfill's range of {partition} ({end}): the records from {end} on are not the backfill's to skip (skip to {end} at most)");
        }
    }
    let s = cps.skip_to(partition, to, first, "`sluice checkpoints skip`", letter)?;
    let range = if s.stood {
        format!("offsets {} to {}", s.from, s.to - 1)
    } else {
        format!(
            "it had no checkpoint: offsets {} to {} (from where its run starts it)",
            s.from,
            s.to - 1
        )
    };
    println!(
        "partition {partition}: {range} skipped (at most {} records, not exported; one dead letter names them); the job resumes at offset {} (commit {}) at its next start (a process running it now goes on where it is until its next commit of the partition is refused: restart it)",
        s.to - s.from,
        s.to,
        s.seq
    );
    Ok(())
}

/// Where a backfill starts a partition it has no checkpoint of: its recorded `--from`.
/// The backfill `job` names is this repo's and ran into this destination: its range record is
/// there, its own (not the copy a backfill elsewhere leaves in the live folder) and of `repo`;
/// or, recorded by an earlier version without a range, it has checkpoints and is no live job
/// (which records where its partitions started, `origins/`).
fn check_backfill_name(job: &sluice::config::Job, cps: &Checkpoints, repo: &str) -> Result<()> {
    let name = &job.file.job.name;
    let dest = cps.destination();
    let refuse = |why: String| {
        anyhow!("{why}: skip --backfill moves a backfill of this repo that ran into {} (`checkpoints list` names them); nothing was skipped", dest.url())
    };
    match sluice::commit::ranges::read_range(dest, name)? {
        Some(r) if r.at.is_some() => Err(refuse(format!(
            "`{name}`'s range here is the copy a backfill into {} leaves in the live folder: give that folder as --url",
            r.at.unwrap_or_default()
        ))),
        Some(r) if r.repo != repo => Err(refuse(format!(
            "backfill `{name}` is repo `{}`'s, not `{repo}`'s",
            r.repo
        ))),
        Some(_) => Ok(()),
        // A live Kafka job records where its partitions started, a file job which files it
        // read: such a name is no backfill's, whatever its keys look like.
        None if !dest.list(&format!("_sluice/{name}/origins/"))?.is_empty() => Err(refuse(format!(
            "`{name}` is a live job's name (it records _sluice/{name}/origins/), not a backfill's"
        ))),
        None if !dest.list(&format!("_sluice/{name}/files/"))?.is_empty() => Err(refuse(format!(
            "`{name}` is a file job's name (it records _sluice/{name}/files/), not a backfill's"
        ))),
        None if cps.keys()?.is_empty() => Err(refuse(format!(
            "no backfill named `{name}` ran here (no range, no checkpoints)"
        ))),
        None => Ok(()),
    }
}

fn backfill_start(
    job: &sluice::config::Job,
    (cfg, client): (&ClientConfig, &BaseConsumer),
    (topic, number): (&str, i32),
    watermarks: (i64, i64),
) -> Result<u64> {
    let name = &job.file.job.name;
    let (from, spans) = super::ranges::recorded_from(job)?.ok_or_else(|| {
        anyhow!("backfill `{name}` recorded no range (it never ran here, or ran before ranges were recorded): where it starts the partition is not known")
    })?;
    if let Some(spans) = spans {
        // Resolved at its first run, which every later run reads again.
        let span = spans
            .iter()
            .find(|s| s.topic == topic && s.partition == number)
            .ok_or_else(|| anyhow!("backfill `{name}` does not read {topic}-{number}: its range was planned before the partition existed"))?;
        return Ok(span.from.max(0) as u64);
    }
    let unknown = || {
        anyhow!("backfill `{name}` ran --from {from}: where it started the partition then is not known now (`latest` and `checkpoint` move); run that range under a new --name instead")
    };
    if from == "checkpoint" {
        return Err(unknown());
    }
    let pos = Position::parse(&from).map_err(|e| anyhow!("the recorded --from {e}"))?;
    let group = job.kafka_group().unwrap_or_default();
    let start = pos.start_in((cfg, &group), client, (topic, number), watermarks)?;
    Ok(start.ok_or_else(unknown)?.max(0) as u64)
}
