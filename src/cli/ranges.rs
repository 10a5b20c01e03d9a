//! What each backfill name covers in its destination (`_sluice/<name>/range.json`): the range
//! as asked and each partition's offsets as resolved at the name's first run. A later run of
//! the name reads exactly those offsets (it resumes); a name whose offsets overlap another
//! name's recorded in the same destination, or what the live job wrote or writes next there,
//! is refused before it reads anything (the live job's side is `commit::ranges`).
//!
//! Two writers started at once into one destination: each records first and looks at the
//! others' records after, so whichever looks last sees the other (both may refuse; neither
//! writes twice what the other writes). A refused run takes back its state folder's record.

use anyhow::{bail, Result};

use sluice::commit::checkpoint::Checkpoints;
use sluice::commit::ranges::{self, range_record, BackfillRange};
use sluice::config::{Job, SourceSection};
use sluice::source::kafka::{Position, Range, Span};
use sluice::store::Destination;
use sluice::task;

use super::jobs::io_runtime;

/// The live job whose destination a backfill writes into (or into a folder inside it, or
/// the same place spelled another way).
pub struct Live {
    pub dest: Destination,
    pub name: String,
    /// The backfill's destination as a folder of the live job's, when it is one.
    pub inside: Option<String>,
    /// The runtime `dest` runs its requests on.
    pub _runtime: tokio::runtime::Runtime,
}

/// Deletes this run's `record` in `dest` after a refusal; a failure is logged.
fn take_back(dest: &Destination, record: &str, what: &str) {
    if let Err(e) = dest.delete(record) {
        tracing::warn!(record = %dest.display(record), error = %e, "could not take back this run's {what}: remove it before running another range under this name");
    }
}

/// After a refusal of a name that had committed nothing: takes back its range record in
/// `dest` (and its copy in `copy`) once the claims its earlier runs left unfinished are
/// settled (`cps`, with the job's dead letters) and still nothing stands. Such a claim's files
/// are visible: taken back before, the record no longer kept the live job (or another
/// backfill) from writing their offsets again, and readers saw them twice. Where an upload of
/// an aborted claim may still land (an object store), the settle is made again once that
/// window is over. A settle that fails keeps the record.
fn take_back_uncommitted(cps: &Checkpoints, record: &str, copy: Option<&Live>) {
    let (dest, name) = (cps.destination(), cps.job());
    match settle_fully(cps) {
        Ok(false) => {
            // The copy first: one left behind (the process killed between the two) would keep
            // the live job from starting inside the range, while the name's own record left
            // behind keeps only this name's next run to its range.
            if let Some(l) = copy {
                take_back(&l.dest, record, "copy of the range record");
            }
            take_back(dest, record, "range record");
        }
        Ok(true) => {}
        Err(e) => {
            tracing::warn!(backfill = %name, error = %e, "could not settle this name's unfinished commits: its range record is kept")
        }
    }
}

/// Settles the claims the name's earlier runs left unfinished, again once the window in
/// which an aborted upload may still land is over (an object store); whether a commit of the
/// name stands then.
fn settle_fully(cps: &Checkpoints) -> Result<bool, sluice::commit::checkpoint::CheckpointError> {
    let owner = sluice::commit::owner_id();
    let (committed, late) = cps.settle_unfinished(owner)?;
    match (committed, late, cps.late_window()) {
        (false, true, Some(window)) => {
            tracing::info!(backfill = %cps.job(), wait_ms = window.as_millis() as u64, "an upload of this name's unfinished commit may still land: settling again once it cannot");
            std::thread::sleep(window);
            Ok(cps.settle_unfinished(owner)?.0)
        }
        _ => Ok(committed),
    }
}

/// The backfill's state folder (locked by this run): this host's name and the folder's path,
/// for people, and the folder's id (`<state>/backfill-id`, random, made once): folders at
/// one path on two hosts of one name (containers) are told apart, and one folder is known
/// whichever host mounts it.
fn state_folder(job: &Job) -> Result<(String, String)> {
    let state = job.resolve(&job.file.job.state_dir);
    let id_file = state.join("backfill-id");
    let id = match std::fs::read_to_string(&id_file) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            bail!("reading {}: {e}", id_file.display())
        }
        _ => {
            let id = sluice::commit::random_tag();
            sluice::durable::write_small(&state, "backfill-id", id.as_bytes())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", id_file.display()))?;
            id
        }
    };
    let path = std::fs::canonicalize(&state).unwrap_or(state);
    let host = whoami::fallible::hostname().unwrap_or_else(|_| "?".into());
    Ok((format!("{host}:{}", path.display()), id))
}

/// The `--from` the backfill `job` names recorded at its first run (`checkpoint`, or a
/// position), and the offsets it resolved that to per partition when recorded; `None` when
/// it recorded no range.
pub fn recorded_from(job: &Job) -> Result<Option<(String, Option<Vec<Span>>)>> {
    let runtime = io_runtime()?;
    let dest = task::destination_at(job, &job.resolve_url(&job.file.sink.url), &runtime)?;
    Ok(ranges::read_range(&dest, &job.file.job.name)?.map(|r| (r.from, r.spans)))
}

/// Records the range of the backfill `job` names in its destination, or checks it against
/// the one recorded there, and returns what the run reads: the offsets recorded by the
/// name's first run (the same range again resumes exactly what was planned), or resolved now.
///
/// Refused: a name recorded over another range or repo once committed (its partitions would
/// resume from that run's checkpoints, not at `--from`), or recorded from another state
/// folder before it committed (that run may be going on); a name taken in the live folder
/// for another folder; offsets another name of the repo recorded in this destination
/// (readers would see those records twice); when the destination is the live job's
/// (`live`), offsets the live job wrote or writes next.
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
        on_gap,
        ..
    } = &job.file.source
    else {
        bail!("a backfill reads Kafka topics");
    };
    let skip = on_gap == "skip";
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
    let (by, state) = state_folder(job)?;
    let mut ours = BackfillRange {
        from: if from == "checkpoint" {
            from.to_string()
        } else {
            spell(start)
        },
        to: spell(end),
        repo: task::repo_label(job),
        spans: None,
        at: None,
        by: Some(by),
        state: Some(state),
    };
    let runtime = io_runtime()?;
    let dest = task::destination_at(job, &job.resolve_url(&job.file.sink.url), &runtime)?;
    let name = &job.file.job.name;
    let record = range_record(name);
    // Before its range (or schema) is recorded: a job without a table where one is.
    sluice::table::refuse_plain_into_table(&job.table, &dest)?;
    // The name's commits (with the job's dead letters): a refusal settles its unfinished
    // ones before it takes the record back.
    let (dead, _) = task::dead_letters_at(job, &dest, &task::repo_label(job), &runtime)?;
    let settle = Checkpoints::new(dest.clone(), name).with_dead_letters(dead);
    let committed = settle.committed()?;
    let group = job.kafka_group().unwrap_or_default();
    let plan = || sluice::source::kafka::plan(brokers, &group, topics, options, (start, end), skip);
    // Where the live job looks when it first starts a partition (a folder around this one).
    let copy = live.filter(|l| l.dest.url() != dest.url());
    // A copy there is this backfill's when it names this folder and was made from this state
    // folder, or by a run that committed this range.
    let asked = ours.clone();
    let ours_there = |c: &BackfillRange, l: &Live| {
        c.at == l.inside && (c.state == asked.state || (committed && c.asks_as(&asked)))
    };
    let taken = |c: &BackfillRange, l: &Live| {
        anyhow::anyhow!(
            "backfill name `{name}` is taken in the live job's {} by a backfill into {} (from {}): give this one another --name",
            l.dest.url(),
            c.at.as_deref().map_or_else(|| "that folder itself".to_string(), |a| format!("its folder {a}")),
            c.by.as_deref().unwrap_or("another state folder"),
        )
    };
    if let Some(l) = copy {
        if let Some(c) = ranges::read_range(&l.dest, name)? {
            if !ours_there(&c, l) {
                return Err(taken(&c, l));
            }
        }
    }
    // What this run wrote last, if it wrote the record.
    let mut written: Option<BackfillRange> = None;
    // No record was there, and nothing committed.
    let mut fresh_name = false;
    // (spans, resolved now, this run wrote the record)
    let (spans, fresh, wrote) = loop {
        let theirs = ranges::read_range(&dest, name)?;
        let create = theirs.is_none();
        match theirs {
            Some(theirs) if theirs.at.is_some() => bail!(
                "backfill name `{name}` is taken in {} by a backfill into its folder {}: give this one another --name",
                dest.url(),
                theirs.at.as_deref().unwrap_or_default()
            ),
            Some(theirs) if !committed && theirs.state != ours.state => bail!(
                "backfill `{name}` was recorded in {} (--from {} --to {}) by a run from {}, which has committed nothing: it may be running. If it is not, remove {} and run this again; or give this range its own --name",
                dest.url(),
                theirs.from,
                theirs.to,
                theirs.by.as_deref().unwrap_or("another state folder"),
                dest.display(&record),
            ),
            Some(theirs) if theirs.asks_as(&ours) => {
                // This run's own write, landed though it reported failure (the store's retry
                // was refused): written by this run, resolved now.
                let mine = written.as_ref().is_some_and(|w| w.same_record(&theirs));
                if let Some(spans) = theirs.spans {
                    break (spans, mine, mine);
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
                // Made by a run from this state folder (whose lock this run holds) that
                // committed nothing: nothing to resume, and no run of it is going on. Its
                // unfinished commits are settled first: one whose checkpoint landed late
                // would else be resumed under the new range.
                if settle_fully(&settle)? {
                    bail!(
                        "backfill `{name}` already ran in {} over --from {} --to {} (a commit of it \
                         landed late); this run asks for --from {} --to {}. Give this range its \
                         own --name (or --url); to finish that run, give its --from and --to again",
                        dest.url(),
                        theirs.from,
                        theirs.to,
                        ours.from,
                        ours.to,
                    );
                }
                tracing::info!(backfill = %name, from = %theirs.from, to = %theirs.to, "the earlier run of this name committed nothing; its range is replaced");
            }
            None if committed => {
                // Where partitions started (`origins/`) is recorded by live Kafka jobs only,
                // and which files were read (`files/`) by file jobs: the name is such a
                // job's, whose partitions a backfill would take over and resume.
                for kind in ["origins", "files"] {
                    if !dest.list(&format!("_sluice/{name}/{kind}/"))?.is_empty() {
                        bail!(
                            "`{name}` in {} is the name of a job that is not a backfill (it has \
                             committed, and records _sluice/{name}/{kind}/): a backfill of that \
                             name would take its partitions over and resume from its checkpoints. \
                             Give the backfill another --name",
                            dest.url()
                        );
                    }
                }
                tracing::warn!(backfill = %name, "this backfill name has checkpoints in the destination from a run that recorded no range: they are resumed whatever --from says");
            }
            None => fresh_name = true,
        }
        ours.spans = Some(plan()?);
        written = Some(ours.clone());
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
    if fresh_name && wrote && settle_fully(&settle)? {
        // A run whose record was removed (as a refusal says to do when that run is not going
        // on) may have left claims whose files are visible, of partitions this range may not
        // claim again: settled once this run's record holds the name (a second run of it
        // finds the record and is refused, fencing nobody), under new terms (that run, if it
        // goes on after all, is fenced). One whose commit landed late leaves a range nobody
        // knows.
        take_back(&dest, &record, "range record");
        bail!(
            "backfill `{name}` has a commit in {} that landed late, from a run whose range \
             record was removed: its range is not known. Give this range its own --name (or \
             --url)",
            dest.url(),
        );
    }
    if let Some(l) = copy {
        ours.spans = Some(spans.clone());
        ours.at = l.inside.clone();
        let bytes = serde_json::to_vec(&ours).expect("a range serializes");
        // Create-only: of two runs of the name into two folders, one makes the copy and the
        // other finds it (and is refused).
        if let Err(e) = l.dest.put_atomic(&record, &bytes, true) {
            match ranges::read_range(&l.dest, name)? {
                Some(c) if ours_there(&c, l) => l.dest.put_atomic(&record, &bytes, false)?,
                Some(c) => {
                    if !committed {
                        take_back_uncommitted(&settle, &record, None);
                    }
                    return Err(taken(&c, l));
                }
                None => return Err(e.into()),
            }
        }
    }
    // Passing over names that committed nothing holds only for a record this name has held
    // since a run of it found no clash.
    let resuming = committed && !wrote;
    let mut found = others_overlapping(&dest, name, &ours.repo, &spans, resuming)?;
    if let Some(l) = copy {
        // Backfills into other folders of the live job's record copies there too.
        let seen: Vec<String> = found.iter().map(|c| c.writer.clone()).collect();
        let more = others_overlapping(&l.dest, name, &ours.repo, &spans, resuming)?;
        found.extend(more.into_iter().filter(|c| !seen.contains(&c.writer)));
    }
    if let Some(live) = live {
        found.extend(live_clash(live, &spans, resuming)?);
    }
    if !found.is_empty() {
        // Made by a run from this state folder (the copy too): no other run takes them
        // over while nothing is committed (see above).
        if !committed {
            take_back_uncommitted(&settle, &record, copy);
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

/// Offsets of `spans` that another backfill name of `repo` recorded in `dest`. When `resuming` (the name has
/// committed, under a record it held since a run found no clash), a name that committed
/// nothing is passed over: its range was recorded after this name's (else a run of this one
/// would have been refused), so it looked after recording and was refused itself. Records
/// of earlier versions hold no offsets and are passed over, logged.
fn others_overlapping(
    dest: &Destination,
    name: &str,
    repo: &str,
    spans: &[Span],
    resuming: bool,
) -> Result<Vec<Clash>> {
    let mut out = Vec::new();
    for (other, theirs) in ranges::backfills(dest, Some(name), repo)? {
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
        if resuming && !theirs.committed(dest, &other)? {
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
                "if its files are gone, it is not running and no live job started past its range, remove {}",
                dest.display(&format!("_sluice/{other}/"))
            )),
        });
    }
    Ok(out)
}

/// What the live job holds of one partition.
enum Held {
    /// Committed: where it started the partition (recorded by its first claim; none for a
    /// partition committed by an earlier version, which recorded none, so any offset below
    /// the checkpoint may be in its files); where it goes on.
    Committed(Option<i64>, i64),
    /// Started (recorded when claimed) at this offset, nothing committed yet.
    Started(i64),
    /// Not started.
    Not,
}

/// Offsets of `spans` the live job wrote or writes next: from where it started a partition
/// (recorded by each claim before the partition's first commit, see `commit::ranges`) on,
/// or for a partition committed by an earlier version, which recorded no start, every
/// offset (its files may hold any below its checkpoint; those of its first commits were
/// named in records since pruned). A partition it has not started is left to it: when it
/// first claims one, it looks at the backfills' ranges after recording its start (and
/// starts past the range of a backfill that has committed). When `resuming` (the name has
/// committed, under a record it held since a run found no clash), offsets below a
/// checkpoint with no recorded start are passed over: that run looked before (by the rules
/// of its version), what it wrote is in the folder, and refusing now would leave its range
/// half written; the live job's checkpoint only moves on, so what follows it still counts.
fn live_clash(live: &Live, spans: &[Span], resuming: bool) -> Result<Option<Clash>> {
    let cps = Checkpoints::new(live.dest.clone(), &live.name);
    let asked: Vec<&Span> = spans.iter().filter(|s| s.from < s.to).collect();
    let found = sluice::fanout::each(&asked, 8, "live starts", |s| -> Result<Held> {
        let key = s.key();
        // The checkpoint first (one listing of this partition's records, not of every
        // partition's): this version records a partition's start before its first commit,
        // so a start recorded meanwhile is read below.
        let latest = cps.latest(&key)?;
        let started = ranges::origin(&live.dest, &live.name, &key)?;
        let started = started.map(|o| i64::try_from(o).unwrap_or(i64::MAX));
        if let Some(c) = latest {
            let next = i64::try_from(c.next_offset).unwrap_or(i64::MAX);
            return Ok(Held::Committed(started, next));
        }
        Ok(started.map_or(Held::Not, Held::Started))
    });
    // Each started job's answer; after a failure, which is returned, no further one started.
    let mut held: Vec<Held> = (0..asked.len()).map(|_| Held::Not).collect();
    for (i, h) in found {
        held[i] = h?;
    }
    let mut at = Vec::new();
    for (s, h) in asked.iter().zip(&held) {
        match h {
            Held::Committed(first, next) => {
                let (from, to) = (s.from.max(first.unwrap_or(0)), s.to.min(*next));
                if from < to && (first.is_some() || !resuming) {
                    let why = match first {
                        Some(first) => format!(
                            "it started the partition at {first} and has committed up to {next}"
                        ),
                        None => format!(
                            "it committed the partition up to {next} and recorded no start (a commit of an earlier version, or of a table that held the partition before its first checkpoint): its files may hold any of these"
                        ),
                    };
                    at.push(format!("{} ({why})", place(s, (from, to))));
                }
                if s.to > *next {
                    at.push(format!(
                        "{} (from its checkpoint on: it writes them next)",
                        place(s, (s.from.max(*next), s.to))
                    ));
                }
            }
            Held::Started(o) => {
                if s.to > s.from.max(*o) {
                    at.push(format!(
                        "{} (it started the partition at {o})",
                        place(s, (s.from.max(*o), s.to))
                    ));
                }
            }
            Held::Not => {}
        }
    }
    Ok((!at.is_empty()).then(|| Clash {
        writer: format!("the live job `{}`", live.name),
        at,
        hint: None,
    }))
}

/// The unfinished partitions `checkpoints list` names one by one, per backfill.
const LISTED: usize = 20;

/// `checkpoints list`: the backfills of the job's repo recorded in its destination `dest`,
/// and how far each has written its range. An unfinished one names the offsets it has not
/// written: once the live job has started past them, no other writer will. A record that
/// cannot be read is named, and the others are listed.
pub fn print_backfills(dest: &Destination, job: &Job) {
    let all = match ranges::backfills(dest, Some(&job.file.job.name), &task::repo_label(job)) {
        Ok(all) => all,
        Err(e) => {
            println!("backfills: cannot be listed: {e}");
            return;
        }
    };
    for (name, r) in all {
        if let Err(e) = print_backfill(dest, &name, &r) {
            println!("backfill {name}: cannot be read: {e}");
        }
    }
}

/// One backfill's line (and its unfinished partitions') for [`print_backfills`].
fn print_backfill(dest: &Destination, name: &str, r: &BackfillRange) -> Result<()> {
    let asked = format!("--from {} --to {}", r.from, r.to);
    let place =
        r.at.as_deref()
            .map_or(String::new(), |a| format!(", into {a}"));
    let Some(own) = r.own(dest) else {
        println!(
            "backfill {name} ({asked}): writes into {}, which is not a folder of this destination",
            r.at.as_deref().unwrap_or("another destination")
        );
        return Ok(());
    };
    if ranges::finished(&own, name, r)? {
        println!("backfill {name} ({asked}{place}): finished");
        return Ok(());
    }
    let Some(spans) = r.spans.as_ref().filter(|s| !s.is_empty()) else {
        println!("backfill {name} ({asked}{place}): not finished; recorded without its offsets (by an earlier version)");
        return Ok(());
    };
    let progress = r.progress(dest, name)?;
    let written = |s: &Span, at: Option<u64>| at.map_or(s.from, |a| a as i64);
    let left: Vec<_> = progress
        .iter()
        .filter(|(s, at)| written(s, *at) < s.to)
        .collect();
    if left.is_empty() {
        println!("backfill {name} ({asked}{place}): every partition written to its range's end (no run of it recorded that it ended: an earlier version's, or one stopped at the end)");
        return Ok(());
    }
    println!(
        "backfill {name} ({asked}{place}): not finished; {} of {} partitions written to their range's end",
        spans.len() - left.len(),
        spans.len()
    );
    for (s, at) in left.iter().take(LISTED) {
        let w = written(s, *at);
        if w == s.from {
            println!("  {}: offsets {w}..{} not written yet", s.key(), s.to);
        } else {
            println!(
                "  {}: offsets {}..{w} written, {w}..{} not yet",
                s.key(),
                s.from,
                s.to
            );
        }
    }
    if left.len() > LISTED {
        println!("  and {} partitions more", left.len() - LISTED);
    }
    println!("  `sluice backfill --name {name} {asked}` (with its first run's --url, if any) finishes it; a live job that started past its range leaves those offsets to it (offsets that hold no record, such as a transaction's markers, count as not written until a run ends)");
    Ok(())
}
