//! What each backfill name covers in its destination (`_sluice/<name>/range.json`): the range
//! as asked and each partition's offsets as resolved at the name's first run. A later run of
//! the name reads exactly those offsets (it resumes); a name whose offsets overlap another
//! name's recorded in the same destination, or reach what the live job writes next there, is
//! refused before it reads anything.
//!
//! Two names started at once into one destination: each records its range first and looks
//! at the others' after, so whichever looks last sees the other (both may refuse; neither
//! writes twice what the other writes). A refused run takes back the record it made.

use std::collections::HashSet;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use sluice::commit::checkpoint::Checkpoints;
use sluice::config::{Job, SourceSection};
use sluice::source::kafka::{Position, Range, Span};
use sluice::store::Destination;
use sluice::task;

use super::jobs::io_runtime;

/// What a backfill name covers in its destination, recorded at its first run: a later run
/// of the name resumes from its checkpoints, which only the same range and repo mean.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct BackfillRange {
    /// `--from` as asked: `checkpoint`, or the position (canonical spelling).
    from: String,
    to: String,
    repo: String,
    /// Each partition's offsets as resolved at the first run; absent in records of earlier
    /// versions, which resolved them at every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spans: Option<Vec<Span>>,
}

impl BackfillRange {
    /// Whether both ask for the same range of the same repo (resolved or not).
    fn asks_as(&self, other: &BackfillRange) -> bool {
        (&self.from, &self.to, &self.repo) == (&other.from, &other.to, &other.repo)
    }
}

/// The live job whose destination a backfill writes into (or into a folder inside it or
/// around it): what it has committed is where it goes on from.
pub struct Live {
    pub dest: Destination,
    pub name: String,
}

/// Where backfill `name` records its range in its destination.
fn range_record(name: &str) -> String {
    format!("_sluice/{name}/range.json")
}

/// The range recorded at `record` of `dest`, if any.
fn read_range(dest: &Destination, record: &str) -> Result<Option<BackfillRange>> {
    match dest.read(record) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", dest.display(record))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The `--from` the backfill `job` names recorded at its first run (`checkpoint`, or a
/// position), and the offsets it resolved that to per partition when recorded; `None` when
/// it recorded no range.
pub fn recorded_from(job: &Job) -> Result<Option<(String, Option<Vec<Span>>)>> {
    let runtime = io_runtime()?;
    let dest = task::destination_at(job, &job.resolve_url(&job.file.sink.url), &runtime)?;
    Ok(read_range(&dest, &range_record(&job.file.job.name))?.map(|r| (r.from, r.spans)))
}

/// Records the range of the backfill `job` names in its destination, or checks it against
/// the one recorded there, and returns what the run reads: the offsets recorded by the
/// name's first run (the same range again resumes exactly what was planned), or resolved now.
///
/// Refused: a name that committed over another range or repo (its partitions would resume
/// from that run's checkpoints, not at `--from`: records asked for would be skipped, or
/// records outside the range written); offsets another name recorded in this destination
/// (readers would see those records twice); offsets at or past the live job's checkpoint
/// when the destination is the live job's (`live`: it writes them next).
pub fn hold_range(
    job: &Job,
    from: &str,
    (start, end): (&Position, &Position),
    live: Option<&Live>,
) -> Result<Range> {
    let SourceSection::Kafka {
        brokers,
        topics,
        options,
        ..
    } = &job.file.source
    else {
        bail!("a backfill reads Kafka topics");
    };
    // Offsets of the one topic a job reads are spelled with or without it.
    let one = match topics.as_slice() {
        [t] if !t.starts_with('^') => Some(t.clone()),
        _ => None,
    };
    let spell = |p: &Position| match (p, &one) {
        (Position::Offsets(list), Some(t)) => Position::Offsets(
            list.iter()
                .map(|(topic, p, o)| (topic.clone().or_else(|| Some(t.clone())), *p, *o))
                .collect(),
        )
        .to_string(),
        _ => p.to_string(),
    };
    let mut ours = BackfillRange {
        from: if from == "checkpoint" {
            from.to_string()
        } else {
            spell(start)
        },
        to: spell(end),
        repo: task::repo_label(job),
        spans: None,
    };
    let runtime = io_runtime()?;
    let dest = task::destination_at(job, &job.resolve_url(&job.file.sink.url), &runtime)?;
    let name = &job.file.job.name;
    let record = range_record(name);
    let committed = !Checkpoints::new(dest.clone(), name).keys()?.is_empty();
    let plan = || sluice::source::kafka::plan(brokers, topics, options, (start, end));
    // (spans, resolved now, this run wrote the record)
    let (spans, fresh, wrote) = loop {
        let theirs = read_range(&dest, &record)?;
        let create = theirs.is_none();
        match theirs {
            Some(theirs) if theirs.asks_as(&ours) => {
                if let Some(spans) = theirs.spans {
                    break (spans, false, false);
                }
                // Recorded by an earlier version, which resolved the range at every run:
                // this run's resolution is recorded for the next ones.
            }
            Some(theirs) if committed => bail!(
                "backfill `{name}` already ran in {} over --from {} --to {} (repo {}); this run asks for --from {} --to {} (repo {}). Its partitions would resume from that run's checkpoints, not at --from, skipping records asked for or writing others. Give this range its own --name (or --url); to finish an interrupted run, give its --from and --to again",
                dest.url(),
                theirs.from,
                theirs.to,
                theirs.repo,
                ours.from,
                ours.to,
                ours.repo,
            ),
            Some(theirs) => {
                // The earlier run committed nothing (it failed at its start): nothing to resume.
                tracing::info!(backfill = %name, from = %theirs.from, to = %theirs.to, "the earlier run of this name committed nothing; its range is replaced");
            }
            None if committed => {
                tracing::warn!(backfill = %name, "this backfill name has checkpoints in the destination from a run that recorded no range: they are resumed whatever --from says");
            }
            None => {}
        }
        ours.spans = Some(plan()?);
        let bytes = serde_json::to_vec(&ours).expect("a range serializes");
        match dest.put_atomic(&record, &bytes, create) {
            Ok(()) => break (ours.spans.take().expect("planned"), true, true),
            // Another start of the name recorded it first (or this write landed though it
            // reported failure): read again.
            Err(e) if create && dest.exists(&record).unwrap_or(false) => {
                tracing::debug!(error = %e, "the range was recorded meanwhile; reading it again");
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut found = others_overlapping(&dest, name, &spans, committed)?;
    if let Some(live) = live {
        found.extend(beyond_live(live, &spans)?);
    }
    if !found.is_empty() {
        if wrote && !committed {
            if let Err(e) = dest.delete(&record) {
                tracing::warn!(record = %dest.display(&record), error = %e, "could not take back this run's range record: remove it before running another range under this name");
            }
        }
        let text: Vec<String> = found.iter().map(Clash::text).collect();
        bail!(
            "backfill `{name}` would write records that other writers of {} write too:\n{}\nGive this backfill another --url, or a range that leaves those offsets out",
            dest.url(),
            text.join("\n"),
        );
    }
    Ok(Range::Planned { spans, fresh })
}

/// Offsets of a backfill's that another writer of the destination writes too.
struct Clash {
    /// Who.
    writer: String,
    /// `<topic>/<partition> offsets <from>..<to>`, each with why where the writer is the
    /// live job.
    at: Vec<String>,
    /// What to do if the writer is gone.
    hint: Option<String>,
}

impl Clash {
    /// At most this many places are named per writer.
    const SHOWN: usize = 8;

    fn text(&self) -> String {
        let mut t = format!(
            "  {}: {}",
            self.writer,
            self.at[..self.at.len().min(Self::SHOWN)].join(", ")
        );
        if self.at.len() > Self::SHOWN {
            t.push_str(&format!(" and {} more", self.at.len() - Self::SHOWN));
        }
        if let Some(h) = &self.hint {
            t.push_str(&format!("\n    ({h})"));
        }
        t
    }
}

/// `<topic>/<partition> offsets <from>..<to>`.
fn place(s: &Span, (from, to): (i64, i64)) -> String {
    format!("{}/{} offsets {from}..{to}", s.topic, s.partition)
}

/// Offsets of `spans` that another backfill name recorded in `dest`. When `resuming` (the
/// name has committed), a name that committed nothing is passed over: its range was recorded
/// after this name's was (else this name's first run would have been refused), so it looks
/// after recording and is refused itself. Records of earlier versions hold no offsets and are
/// passed over, logged.
fn others_overlapping(
    dest: &Destination,
    name: &str,
    spans: &[Span],
    resuming: bool,
) -> Result<Vec<Clash>> {
    let mut out = Vec::new();
    for other in dest.folders("_sluice/")? {
        if other == name {
            continue;
        }
        let record = range_record(&other);
        let Some(theirs) = read_range(dest, &record)? else {
            continue; // a live job's folder
        };
        let Some(their_spans) = &theirs.spans else {
            tracing::warn!(backfill = %other, "that backfill recorded its range without offsets (an earlier version): overlap with it is not checked");
            continue;
        };
        let found: Vec<String> = spans
            .iter()
            .flat_map(|s| {
                their_spans
                    .iter()
                    .filter_map(|t| Some(place(s, s.overlap(t)?)))
            })
            .collect();
        if found.is_empty() {
            continue;
        }
        if resuming && Checkpoints::new(dest.clone(), &other).keys()?.is_empty() {
            tracing::info!(backfill = %other, "that backfill recorded a range overlapping this one's after this one's and committed nothing: it is refused when it runs");
            continue;
        }
        out.push(Clash {
            writer: format!(
                "backfill `{other}` (--from {} --to {})",
                theirs.from, theirs.to
            ),
            at: found,
            hint: Some(format!(
                "if its files are gone and it is not running, remove {}",
                dest.display(&format!("_sluice/{other}/"))
            )),
        });
    }
    Ok(out)
}

/// Offsets of `spans` the live job writes or wrote: at or past its checkpoint of their
/// partition (it writes them next), and those its last commit's files hold. (What it wrote
/// before that commit is not known here: where it started is not recorded.)
fn beyond_live(live: &Live, spans: &[Span]) -> Result<Option<Clash>> {
    let cps = Checkpoints::new(live.dest.clone(), &live.name);
    let keys: HashSet<String> = cps.keys()?.into_iter().collect();
    let asked: Vec<&Span> = spans
        .iter()
        .filter(|s| s.from < s.to && keys.contains(&format!("{}-{}", s.topic, s.partition)))
        .collect();
    let found = sluice::fanout::each(&asked, 8, "live checkpoints", |s| {
        cps.latest(&format!("{}-{}", s.topic, s.partition))
    });
    let mut at = Vec::new();
    for (i, latest) in found {
        let (s, Some(c)) = (asked[i], latest?) else {
            continue;
        };
        let next = i64::try_from(c.next_offset).unwrap_or(i64::MAX);
        let first = c.files.iter().map(|f| f.first_offset).min();
        if let Some(first) = first.and_then(|f| i64::try_from(f).ok()) {
            let (from, to) = (s.from.max(first), s.to.min(next));
            if from < to {
                at.push(format!(
                    "{} (in its newest commit's files, offsets {first}..{next})",
                    place(s, (from, to))
                ));
            }
        }
        if s.to > next {
            at.push(format!(
                "{} (from its checkpoint on: it writes them next)",
                place(s, (s.from.max(next), s.to))
            ));
        }
    }
    Ok((!at.is_empty()).then(|| Clash {
        writer: format!("the live job `{}`", live.name),
        at,
        hint: None,
    }))
}
