//! `backfill`: a bounded run of a Kafka job over a range, under its own name, refused where
//! it would write what the live job writes (`--from checkpoint` into the live destination,
//! however spelled, or a folder inside or around it; offsets past the live job's checkpoints
//! there), or what another backfill name recorded there, or where the name ran over another
//! range (its checkpoints would be resumed instead of `--from`; see `ranges`).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use sluice::commit::checkpoint::Checkpoints;
use sluice::config::{Job, SourceSection};
use sluice::source::kafka::Position;
use sluice::task;

use super::jobs::{io_runtime, lock_state};
use super::ranges;
use crate::init_logs_at;

pub fn run_backfill(
    path: &Path,
    repo: Option<&str>,
    from: &str,
    to: &str,
    name: Option<String>,
    url: Option<String>,
    threads: Option<usize>,
) -> Result<()> {
    // On a terminal, progress bars take the place of the informational log lines.
    let progress = std::io::stderr().is_terminal();
    init_logs_at(false, if progress { "warn" } else { "info" });
    let mut job = Job::load_repo(path, repo)?;
    if !matches!(job.file.source, SourceSection::Kafka { .. }) {
        bail!(
            "{}: backfill reads a range of Kafka topics; this job's source is not Kafka (use `sluice run`)",
            path.display()
        );
    }
    let start = if from == "checkpoint" {
        live_checkpoints(&job)?
    } else {
        Position::parse(from).map_err(|e| anyhow!("--from {e}"))?
    };
    let end = Position::parse(to).map_err(|e| anyhow!("--to {e}"))?;
    if end == Position::Earliest {
        bail!("--to earliest: a backfill ending at the start of every partition reads nothing");
    }
    let live_url = job.resolve_url(&job.file.sink.url);
    let live_name = job.file.job.name.clone();
    as_backfill(&mut job, name, url)?;
    let ours = job.resolve_url(&job.file.sink.url);
    let live = if from == "checkpoint" {
        if same_place(&job, &live_url, &ours)? {
            // The live job goes on from those checkpoints (or will, when it starts again):
            // every record the backfill wrote there would be there twice.
            bail!(
                "--from checkpoint into the live job's own destination ({live_url}), or a folder \
                 inside it or around it, would write the records the live job writes next a second \
                 time: give the backfill another --url"
            );
        }
        None
    } else {
        match same_place(&job, &live_url, &ours) {
            Ok(false) => None,
            Ok(true) if inside(&ours, &live_url).is_some() => bail!(
                "--url {ours} holds the live job's destination ({live_url}): readers of it see the \
                 live job's files too, and the live job could not find this backfill's progress. \
                 Give the backfill a folder beside the live one, or inside it"
            ),
            Ok(true)
                if matches!(job.table, sluice::table::TableKind::Delta { .. })
                    && inside(&live_url, &ours).is_some() =>
            {
                bail!(
                    "--url {ours} is a folder inside the live job's Delta table ({live_url}): the \
                     table's readers read only the files its log names, so the backfill would be \
                     a second table inside it that they never read (and a vacuum of the live \
                     table would delete its files). Backfill into the live folder itself (its \
                     commits join the live table), or into a folder beside it (a table of its own)"
                )
            }
            Ok(true) => {
                let runtime = io_runtime()?;
                Some(ranges::Live {
                    dest: task::destination_at(&job, &live_url, &runtime)?,
                    name: live_name,
                    inside: inside(&live_url, &ours),
                    _runtime: runtime,
                })
            }
            // Unknown, the live job's records could be written twice (a destination that is the
            // live one spelled another way would go unchecked): refused, nothing written.
            Err(e) => {
                return Err(e.context(format!(
                "could not tell whether --url {ours} is the live job's destination ({live_url}) \
                     spelled another way; the backfill wrote nothing. Run it again once both can \
                     be reached"
            )))
            }
        }
    };
    // The schema the backfill writes, for the checks against the live job's (prepared once).
    let out = match &live {
        Some(_) => Some(task::prepare(&job, false)?.decoder.output_schema()),
        None => None,
    };
    if let (Some(l), Some(out)) = (&live, &out) {
        same_schema_as_live(&job, l, out)?;
    }
    let _locks = lock_state(&job, true)?;
    job.range = Some(ranges::hold_range(
        &job,
        from,
        (&start, &end),
        live.as_ref(),
    )?);
    if let (Some(l), Some(out)) = (&live, &out) {
        // Its schema recorded (as its task would), then the live job's read again: a start of
        // the live job that recorded a change after the check above saw no schema of this
        // backfill yet, and one that records after this sees this record (each side writes,
        // then reads the other's).
        let runtime = io_runtime()?;
        let own = task::destination(&job, &runtime)?;
        sluice::table::check_fits(&job.table, &own, out, runtime.handle())?;
        sluice::evolution::check_all(
            &own,
            (&job.file.job.name, &task::repo_label(&job)),
            out,
            true,
            sluice::evolution::Form::of(&job.format),
        )?;
        same_schema_as_live(&job, l, out)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let opts = task::RunOptions {
        threads: threads.unwrap_or(0),
        progress,
        ..Default::default()
    };
    let s = task::run(&job, opts, stop)?;
    println!(
        "backfill {}: {:?}; {} rows, {} dead letters in {} files over {} commits; {:.2} s",
        job.file.job.name, s.state, s.rows, s.dead_letters, s.files, s.commits, s.seconds
    );
    if !s.ended {
        bail!(
            "backfill {}: stopped before the end of its range; what it committed stands: run it again (same --name, --from and --to) to resume",
            job.file.job.name
        );
    }
    // Said where the live job and `checkpoints list` look (a checkpoint alone may stop
    // short of a range's end: offsets that hold no record).
    let runtime = io_runtime()?;
    let own = task::destination(&job, &runtime)?;
    let name = &job.file.job.name;
    // The range as recorded (by this run, or the one whose range it resumed): no run of
    // another state folder replaces it while this one holds the range.
    use sluice::commit::ranges::{read_range, record_finished};
    let recorded = read_range(&own, name).and_then(|r| match r {
        Some(r) => record_finished(&own, name, &r),
        None => Ok(()),
    });
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "could not record that the backfill finished: `sluice checkpoints list` may show it unfinished");
    }
    Ok(())
}

/// A backfill into the live job's folder (or a folder inside it) writes files its readers
/// read with the live job's: its schema must be one they can follow beside the live files,
/// as a start of the live job checks it against its own record (the backfill's name has a
/// record of its own, which a first run does not have yet), and, inside it, beside the other
/// backfills' files of the live folder's tree.
fn same_schema_as_live(
    job: &Job,
    live: &ranges::Live,
    out: &arrow::datatypes::SchemaRef,
) -> Result<()> {
    match sluice::evolution::check(
        &live.dest,
        &live.name,
        out,
        false,
        sluice::evolution::Form::of(&job.format),
    ) {
        Ok(_) => Ok(()),
        Err(e @ sluice::evolution::EvolutionError::Incompatible { .. }) => Err(anyhow!(
            "{e}\n(the backfill writes into the live job's folder {}, whose readers read its \
             files with the live job's: give it the live job's schema, or another --url)",
            live.dest.url()
        )),
        Err(e) => Err(e).context("reading the live job's schema record"),
    }?;
    if live.inside.is_some() {
        // Into a folder inside the live one: the other backfills of the live folder's tree
        // (their records, or copies of them, are in the live folder) write files the same
        // readers read; this one's own destination lists none of them.
        sluice::evolution::check_beside(
            &live.dest,
            &job.file.job.name,
            &task::repo_label(job),
            out,
            sluice::evolution::Form::of(&job.format),
        )?;
    }
    Ok(())
}

/// The live job `job` made its backfill's: its name (`--name`, by default
/// `<job>-backfill`), and with `--url` its destination and dead letters beside its data (the
/// live job's dead-letter folder or topic gets those of its own records, and a backfill's
/// there would be the same records again).
pub fn as_backfill(job: &mut Job, name: Option<String>, url: Option<String>) -> Result<()> {
    if let Some(n) = &name {
        // The name becomes a folder of the destination (`_sluice/<name>/`).
        if !sluice::config::repos::valid_name(n) {
            bail!(
                "--name `{n}`: use letters, digits, `-` or `_`, starting with a letter or digit, at most {} bytes",
                sluice::config::MAX_NAME_BYTES
            );
        }
        if *n == job.file.job.name {
            bail!("--name `{n}` is the live job's own name: its checkpoints are the live job's");
        }
    }
    job.file.job.name = name.unwrap_or_else(|| format!("{}-backfill", job.file.job.name));
    // The job's admin address is the live job's (which would then fail to start while the
    // backfill runs, or the backfill while it does): the backfill's listens on any free port
    // of the same host, logged.
    if let Some(admin) = &mut job.file.admin {
        if let Ok(mut addr) = admin.listen.parse::<std::net::SocketAddr>() {
            addr.set_port(0);
            admin.listen = addr.to_string();
        }
    }
    if let Some(u) = url {
        job.file.sink.url = from_current_dir(u)?;
        let dead = &mut job.file.dead_letters;
        if dead.url.is_some() || dead.topic.is_some() {
            tracing::info!(
                url = ?dead.url, topic = ?dead.topic,
                "--url: the backfill's dead letters go beside its data (_dead_letters/), not to the job's"
            );
        }
        dead.url = None;
        dead.topic = None;
        dead.brokers = None;
        dead.options = Default::default();
    }
    Ok(())
}

/// Whether the backfill's destination `ours` is the live job's `live` (both resolved URLs),
/// or one holds the other (readers of the outer folder would see both): by their text
/// ([`nested_or_same`]), or else one place under two spellings no comparison of the text can
/// see (another URL form of one bucket, a mount): an object written through `ours` is looked
/// for through `live`, then removed. A store that shows a new object late can miss it.
fn same_place(job: &Job, live: &str, ours: &str) -> Result<bool> {
    if nested_or_same(live, ours) {
        return Ok(true);
    }
    let runtime = io_runtime()?;
    let live_dest = task::destination_at(job, live, &runtime)?;
    let our_dest = task::destination_at(job, ours, &runtime)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let probe = format!(
        "_sluice/{}/probe-{}-{nanos}",
        job.file.job.name,
        std::process::id()
    );
    our_dest.put_atomic(&probe, b"", false).with_context(|| {
        format!(
            "checking that --url {ours} is not the live destination {live}: writing a \
                 probe object failed"
        )
    })?;
    let seen = live_dest.exists(&probe);
    if let Err(e) = our_dest.delete(&probe) {
        tracing::warn!(probe = %our_dest.display(&probe), error = %e, "could not remove the probe object");
    }
    seen.with_context(|| format!("looking for the probe object {probe} in {live}"))
}

/// Whether two resolved destination URLs are one place, or one inside the other, by their
/// text: local paths (plain or `file://`, percent-decoded as a destination reads them)
/// compared as the folders they name (symbolic links resolved as far as the folders exist);
/// other URLs by scheme (`s3a` is `s3`), host and percent-decoded path, as the store reads
/// them (query and user aside).
fn nested_or_same(a: &str, b: &str) -> bool {
    let (a, b) = (place(a), place(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// Where `inner` is inside `outer` (resolved URLs), as a folder of it (`sub/dir/`), by their
/// text as [`nested_or_same`] reads it; `None` when it is not inside, or is `outer` itself.
fn inside(outer: &str, inner: &str) -> Option<String> {
    let rest = place(inner).strip_prefix(&place(outer))?.to_string();
    (!rest.is_empty()).then_some(rest)
}

/// A destination URL as the place it names, ending in `/` (see [`nested_or_same`]).
fn place(u: &str) -> String {
    let mut text = match url::Url::parse(u) {
        Ok(parsed) if parsed.scheme() == "file" => match parsed.to_file_path() {
            Ok(p) => resolved(&p).display().to_string(),
            Err(()) => u.to_string(),
        },
        Ok(parsed) => {
            let scheme = match parsed.scheme() {
                "s3a" => "s3",
                s => s,
            };
            let path = object_store::path::Path::from_url_path(parsed.path())
                .map_or_else(|_| parsed.path().to_string(), |p| p.to_string());
            format!(
                "{scheme}://{}/{}",
                parsed.host_str().unwrap_or(""),
                path.trim_matches('/')
            )
        }
        Err(_) if !u.contains("://") => resolved(Path::new(u)).display().to_string(),
        Err(_) => u.to_string(),
    };
    while text.ends_with('/') {
        text.pop();
    }
    text.push('/');
    text
}

/// `path` as the folder it names: each part that exists canonicalized (symbolic links
/// resolved), `..` taking the last part off, the parts that do not exist yet appended as text
/// (they cannot be links).
fn resolved(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut at = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            Component::Prefix(_) | Component::RootDir => at.push(part.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                at.pop();
            }
            Component::Normal(name) => {
                at.push(name);
                if let Ok(c) = std::fs::canonicalize(&at) {
                    at = c;
                }
            }
        }
    }
    at
}

/// The positions of the live job's newest checkpoints, as backfill start offsets.
fn live_checkpoints(job: &Job) -> Result<Position> {
    let runtime = io_runtime()?;
    let dest = task::destination(job, &runtime)?;
    let cps = Checkpoints::new(dest, &job.file.job.name);
    let mut list = Vec::new();
    for key in cps.keys()? {
        let Some(c) = cps.latest(&key)? else { continue };
        let (topic, part) = key
            .rsplit_once('-')
            .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?)))
            .ok_or_else(|| anyhow!("checkpoint key `{key}` is not <topic>-<partition>"))?;
        list.push((Some(topic), part, c.next_offset as i64));
    }
    if list.is_empty() {
        bail!(
            "--from checkpoint: job `{}` has no checkpoints in {}",
            job.file.job.name,
            job.file.sink.url
        );
    }
    Ok(Position::Offsets(list))
}

/// A destination URL given on the command line: a relative local path is taken from the
/// current folder, as any path on a command line (a job file's own paths are relative to the
/// job file).
fn from_current_dir(url: String) -> Result<String> {
    if url.trim().is_empty() {
        bail!("--url is empty");
    }
    let here = std::env::current_dir().context("reading the current folder")?;
    Ok(sluice::config::resolve_url_against(&here, &url))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder inside another, as a folder of it: by the places' text, on object stores
    /// and local paths; none for the same place, one around it, or a sibling.
    #[test]
    fn a_folder_inside_another_is_named_relative_to_it() {
        assert_eq!(
            inside("s3://b/live", "s3://b/live/sub/x/").as_deref(),
            Some("sub/x/")
        );
        assert_eq!(
            inside("s3a://b/live/", "s3://b/live/h").as_deref(),
            Some("h/")
        );
        for (outer, inner) in [
            ("s3://b/live", "s3://b/live/"),
            ("s3://b/live/sub", "s3://b/live"),
            ("s3://b/live", "s3://b/live2/sub"),
        ] {
            assert_eq!(inside(outer, inner), None, "{outer} {inner}");
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        assert_eq!(
            inside(&format!("{d}/out"), &format!("{d}/out/./history")).as_deref(),
            Some("history/")
        );
    }

    /// Places compared as the store or the file system reads them: one inside the other, or
    /// one spelled two ways, is the same place; a sibling with a longer name is not.
    #[test]
    fn places_inside_or_around_each_other_are_found_by_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        std::fs::create_dir(&live).unwrap();
        let d = dir.path().display();
        for (a, b) in [
            ("s3://b/live", "s3://b/live/"),
            ("s3://b/live", "s3://b/live/sub"),
            ("s3://b/live/sub", "s3://b/live"),
            ("s3://b/live?x=1", "s3://b/live/sub"),
            ("s3://b/live-x", "s3://b/live%2Dx/sub"),
            ("s3a://b/live", "s3://b/live/sub"),
            ("s3://b", "s3://b/anything"),
        ] {
            assert!(nested_or_same(a, b), "{a} and {b}");
        }
        for (a, b) in [
            ("s3://b/live", "s3://b/live2"),
            ("s3://b/live", "s3://b/live/../other"),
            ("s3://b/live", "s3://c/live"),
            ("s3://b/live", "gs://b/live"),
        ] {
            assert!(!nested_or_same(a, b), "{a} and {b}");
        }
        let live_text = live.display().to_string();
        for other in [
            format!("{d}/missing/../live/2024"),
            format!("{d}/live/./sub/"),
            format!("file://{d}/liv%65"),
        ] {
            assert!(nested_or_same(&live_text, &other), "{other}");
        }
        for other in [
            format!("{d}/live/x/../../other"),
            format!("{d}/live-backfill"),
            format!("{d}/missing/../other"),
        ] {
            assert!(!nested_or_same(&live_text, &other), "{other}");
        }
        // A link to the live folder is the live folder.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&live, &link).unwrap();
        assert!(nested_or_same(
            &live_text,
            &format!("{}/sub", link.display())
        ));
    }
}
