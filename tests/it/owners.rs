//! One writer per partition, as far as it is built: a second `run` of a file or push job is
//! refused, and a backfill into the live job's folder never touches the live job's files or
//! its consumer group's offsets.

use std::path::{Path, PathBuf};

use crate::helpers::*;
use crate::kafka::{cluster, produce_events, spawn_run, wait_for, wait_log};
use crate::push::{long_files, push_acked, push_job, second_process, start, start_with};

/// A push job's WAL folder spelled through its state folder (`state/../wal`) is outside it:
/// locked on its own, so a second process (another state folder) naming the same WAL is
/// refused. Before, the spelling passed for inside the state folder and the WAL went unlocked:
/// two processes appended to one log.
#[test]
fn a_wal_folder_spelled_through_the_state_folder_is_locked_too() {
    let dir = tempfile::tempdir().unwrap();
    let job_a = push_job(dir.path(), "wal", "wal_dir = \"state/../wal\"", "");
    let (a, _) = start(&job_a, &dir.path().join("a.log"));
    let job_b = dir.path().join("job-b.toml");
    std::fs::write(
        &job_b,
        std::fs::read_to_string(&job_a)
            .unwrap()
            .replace("state_dir = \"state\"", "state_dir = \"state-b\"")
            .replace("state/../wal", "wal"),
    )
    .unwrap();
    let log = dir.path().join("b.log");
    let mut b = spawn_run(&job_b, &log);
    let status = wait_exit(b.child(), "the second process to be refused", 30);
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains(&format!("PID {}", a.id())), "{err}");
    sigterm(&a);
    assert!(a.wait_with_output().unwrap().status.success());
}

/// Two `sluice run` of one push job, and of one file job: the second refuses to start and
/// names the first one's PID (they would share one WAL, one spill, and write one partition
/// twice).
#[test]
fn a_second_run_of_one_file_or_push_job_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (child, _) = start(&job, &dir.path().join("run.log"));
    let second = sluice(&["run", job.to_str().unwrap()]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains(&format!("PID {}", child.id())), "{err}");
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());

    // A file job, held still (SIGSTOP) once it runs, then let go.
    let input = dir.path().join("many.jsonl");
    let mut text = String::new();
    for i in 0..60_000 {
        text.push_str(&format!(
            "{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"f{i}\"}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    let fjob = dir.path().join("file.toml");
    std::fs::write(
        &fjob,
        format!(
            "[job]\nname = \"files\"\nstate_dir = \"fstate\"\n[source]\nkind = \"file\"\npaths = [{:?}]\n\
             [repo]\nschema = {:?}\n[sink]\nurl = \"fout/\"\n",
            input.display().to_string(),
            schema("nginx_access").display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("file.log");
    let first = spawn_run(&fjob, &log);
    let text = wait_log(&log, "task state New", 1, 60);
    assert!(
        text.contains("task state New"),
        "the file job did not start:\n{text}"
    );
    let pid = first.id().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success())
    };
    signal("-STOP");
    let second = sluice(&["run", fjob.to_str().unwrap()]);
    signal("-CONT");
    assert!(!second.status.success(), "the second run was not refused");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains(&format!("PID {pid}")), "{err}");
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(trace_ids(&dir.path().join("fout")).len(), 60_000);
}

/// The segments of the WAL in `dir` with their lengths (`log-runs` gains a line at every
/// start).
pub(crate) fn wal_segments(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .map(|e| {
            let len = e.metadata().unwrap().len();
            (e.file_name().to_string_lossy().to_string(), len)
        })
        .collect();
    v.sort();
    v
}

/// Every visible data file under `out` (relative path → its bytes).
fn files(out: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    files_under(out, true)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(out).unwrap().display().to_string();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// The test job in `dir` with `auto_offset_reset = "latest"`, run live (log `live.log`, with
/// environment `env`) until it has recorded where it starts each of the topic's 4 partitions.
pub(crate) fn live_at_latest(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    env: &[(&str, &str)],
) -> (PathBuf, std::process::Child) {
    let job = crate::kafka::job_with(dir, bootstrap, topic, "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "chunk_bytes = \"16KiB\"",
        "chunk_bytes = \"16KiB\"\nauto_offset_reset = \"latest\"",
    );
    std::fs::write(&job, text).unwrap();
    let live = crate::kafka::spawn_with("run", &job, &dir.join("live.log"), env);
    let origins = dir.join("out/_sluice/kafka-it/origins");
    let recorded =
        || (0..4).all(|p| files_under(&origins.join(format!("{topic}-{p}")), true).len() == 1);
    wait_until_showing(
        "the live job to record where it starts 4 partitions",
        180,
        recorded,
        || {
            let log = std::fs::read_to_string(dir.join("live.log")).unwrap_or_default();
            format!("; its log:\n{log}")
        },
    );
    (job, live)
}

/// Backfills into the live job's own folder. The live job starts at the log's end and
/// records where (before its first commit). A backfill over what it wrote is refused (before,
/// it wrote every record a second time); one up to where it started runs, leaving the live
/// files and checkpoints exactly as they were (before, the backfill's files had the live
/// files' names and replaced them), and every record is in the folder once.
#[test]
fn a_backfill_into_the_live_folder_leaves_the_live_files_alone() {
    let topic = "live";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let n = 2000;
    produce_events(&bootstrap, topic, 0, n, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let (job, live) = live_at_latest(dir.path(), &bootstrap, topic, &[]);
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");
    produce_events(&bootstrap, topic, n, 400, 4, None);
    wait_for(&out, 400, 120);
    let text = wait_log(&dir.path().join("live.log"), "committed", 1, 0);
    assert_eq!(
        trace_ids(&out).len(),
        400,
        "the live run wrote what followed its start:\n{text}"
    );
    sigterm(&live);
    assert!(live.wait_with_output().unwrap().status.success());
    let before = files(&out);
    let checkpoints = sluice_ok(&["checkpoints", "list", jobs]);

    let err = sluice_refused(&["backfill", jobs]);
    assert!(
        err.contains(
            "the live job `kafka-it`: live/0 offsets 500..600 (it started the partition at 500 and has committed up to 600)"
        ),
        "{err}"
    );
    assert_eq!(files(&out), before, "the refused backfill wrote");
    sluice_ok(&["backfill", jobs, "--to", "0=500,1=500,2=500,3=500"]);
    let after = files(&out);
    for (name, bytes) in &before {
        assert!(
            after.get(name) == Some(bytes),
            "live file {name} was replaced or removed"
        );
    }
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(!added.is_empty());
    assert!(
        added
            .iter()
            .all(|k| k.contains(".backfill-kafka-it-backfill.")),
        "{added:?}"
    );
    // The live job's checkpoints as they were; the backfill is listed after them.
    let listed = sluice_ok(&["checkpoints", "list", jobs]);
    let (live, backfills) = listed.split_at(checkpoints.len());
    assert_eq!(live, checkpoints);
    assert!(
        backfills.starts_with("backfill kafka-it-backfill (--from earliest --to ")
            && backfills.trim_end().ends_with(": finished"),
        "{listed}"
    );
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), n + 400);
    assert!(ids.values().all(|c| *c == 1), "a record twice");

    // Records past the live job's checkpoints: `--from checkpoint` reads exactly those, and
    // only into another destination (the live job writes them itself when it goes on).
    produce_events(&bootstrap, topic, n + 400, 300, 4, None);
    // Into the live folder, a range over what the live job wrote and writes next is refused
    // (before, it wrote the 300 records the live job writes next), and so is one over what
    // the first backfill recorded there.
    let err = sluice_refused(&["backfill", jobs, "--name", "again"]);
    assert!(
        err.contains("live/3 offsets 600..675 (from its checkpoint on")
            && err.contains("backfill `kafka-it-backfill`"),
        "{err}"
    );
    assert_eq!(files(&out), after, "the refused backfill wrote");
    let err = sluice_refused(&["backfill", jobs, "--from", "checkpoint", "--name", "rest"]);
    assert!(err.contains("another --url"), "{err}");
    // The live folder spelled another way is the live folder.
    let spelled = format!("file://{}/./", out.display());
    let refused = sluice(&["backfill", jobs, "--from", "checkpoint", "--url", &spelled]);
    assert!(
        !refused.status.success(),
        "--url {spelled} was not taken for the live folder"
    );
    // Spelled with a percent-encoded letter (a `file://` URL is read percent-decoded), and a
    // folder inside it, which readers of the live folder that look into subfolders would
    // read too (before, both backfills ran).
    for url in [
        format!("file://{}/ou%74/", dir.path().display()),
        format!("{}/sub/", out.display()),
    ] {
        let err = sluice_refused(&["backfill", jobs, "--from", "checkpoint", "--url", &url]);
        assert!(err.contains("another --url"), "{err}");
    }
    assert_eq!(files(&out), after, "the refused backfill wrote");
    let rest = dir.path().join("rest");
    let rests = rest.to_str().unwrap();
    sluice_ok(&[
        "backfill",
        jobs,
        "--from",
        "checkpoint",
        "--name",
        "rest",
        "--url",
        rests,
    ]);
    let ids = trace_ids(&rest);
    assert_eq!(ids.len(), 300, "{ids:?}");
    assert!(
        (n + 400..n + 700).all(|i| ids.get(&format!("t{i}")) == Some(&1)),
        "the records past the checkpoints, each once: {ids:?}"
    );
}

/// A backfill of a job that names its consumer group leaves the group's offsets alone (it
/// reads by static assignment). Before, it committed where it ended to the live job's group:
/// the live job's partitions without a checkpoint then started there, not at
/// `auto_offset_reset`, and lag tools read the backfill's end.
#[test]
fn a_backfill_leaves_the_live_groups_offsets_alone() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let topic = "grouped";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let n = 400;
    produce_events(&bootstrap, topic, 0, n, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "chunk_bytes = \"16KiB\"",
        "chunk_bytes = \"16KiB\"\ngroup = \"live-group\"",
    );
    std::fs::write(&job, text).unwrap();
    sluice_ok(&["backfill", job.to_str().unwrap()]);
    assert_eq!(trace_ids(&dir.path().join("out")).len(), n);
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "live-group")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, std::time::Duration::from_secs(10))
        .unwrap();
    let moved: Vec<(i32, i64)> = committed
        .elements()
        .iter()
        .filter_map(|e| {
            e.offset()
                .to_raw()
                .filter(|o| *o >= 0)
                .map(|o| (e.partition(), o))
        })
        .collect();
    assert!(
        moved.is_empty(),
        "the backfill moved the group's offsets: {moved:?}"
    );
}

/// `run --from-checkpoint 1` of a push job whose WAL has already released what checkpoint 1
/// resumes from is refused before anything is deleted: every file and checkpoint stays.
#[test]
fn a_roll_back_past_the_wal_start_is_refused_before_anything_is_deleted() {
    roll_back_past_the_wal_start(false);
}

/// The same, of a supervised repo (`[[repos]]`, chosen with `--repo`): the refused repo is not
/// started again, and the run ends with its refusal. Before, the repo's task was started
/// again after every refusal, for as long as the process ran.
#[test]
fn a_refused_roll_back_of_a_supervised_repo_ends_the_run() {
    roll_back_past_the_wal_start(true);
}

fn roll_back_past_the_wal_start(repos: bool) {
    let dir = tempfile::tempdir().unwrap();
    let repo = if repos {
        "[[repos]]\nname = \"nginx_access\"\n"
    } else {
        ""
    };
    let job = push_job(dir.path(), "wal", "wal_segment_bytes = \"256KiB\"", repo);
    let log = dir.path().join("run.log");
    let (child, addr) = start(&job, &log);
    let mut c = crate::push::http_client::Client::new(&addr);
    let out = dir.path().join("out");
    for n in 0..4 {
        let (code, _, b) = c
            .post(
                "/v1/repos/nginx_access/data",
                "",
                &crate::push::events(&format!("w{n}"), 6000),
            )
            .unwrap();
        assert_eq!(code, 200, "{b}");
        wait_until("the push to be committed", 60, || {
            trace_ids(&out).len() == (n + 1) * 6000
        });
    }
    assert!(child.stop("the push job to stop", 60).success());
    let job_name = if repos {
        "push-test.nginx_access"
    } else {
        "push-test"
    };
    // Checkpoint 1 resumes below the first byte the WAL still holds.
    let first_held: u64 = files_under(&dir.path().join("state"), false)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().parse().unwrap())
        .min()
        .expect("a WAL segment");
    let first: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            files_under(
                &out.join("_sluice").join(job_name).join("checkpoints"),
                false,
            )
            .iter()
            .find(|p| p.file_name().unwrap() == "000000000001.json")
            .expect("checkpoint 1"),
        )
        .unwrap(),
    )
    .unwrap();
    let resumes = first["next_offset"].as_u64().unwrap();
    assert!(
        resumes < first_held,
        "{resumes} {first_held}: the WAL released nothing"
    );
    let listing = |out: &Path| -> Vec<(String, Vec<u8>)> {
        files(out)
            .into_iter()
            .filter(|(p, _)| !p.contains("/fence/"))
            .collect()
    };
    let before = listing(&out);
    let mut args = vec!["run", job.to_str().unwrap(), "--from-checkpoint", "1"];
    if repos {
        args.extend(["--repo", "nginx_access"]);
    }
    let (status, err) = sluice_within(&args, 60);
    assert!(
        !status.success()
            && err.contains("cannot replay partition")
            && err.contains("nothing was deleted"),
        "{err}"
    );
    assert_eq!(listing(&out), before, "nothing deleted");
}

/// Two processes of one push job with a WAL each (another `state_dir`, another host), sharing
/// the destination: one takes the partition over while the other holds acknowledged records
/// it has not committed. The other, started again, resumed at the first one's checkpoint,
/// which counts positions of another log: it skipped its own acknowledged records (or read
/// from inside one). It now refuses to resume there, names both logs, and deletes nothing.
#[test]
fn a_push_process_does_not_resume_from_a_checkpoint_counted_in_another_processs_wal() {
    let dir = tempfile::tempdir().unwrap();
    let job_a = long_files(push_job(dir.path(), "wal", "", ""));
    let job_b = second_process(&job_a);
    let out = dir.path().join("out");

    // A acknowledges 100 rows and dies before committing them.
    let (mut a, addr) = start(&job_a, &dir.path().join("a1.log"));
    push_acked(&addr, "a", 100);
    a.kill().unwrap();
    a.wait().unwrap();
    let held = wal_segments(&dir.path().join("state/wal"));

    // B, with its own WAL, takes 50 rows and commits them at its stop.
    let (b, addr) = start(&job_b, &dir.path().join("b.log"));
    push_acked(&addr, "b", 50);
    sigterm(&b);
    assert!(b.wait_with_output().unwrap().status.success());
    assert_eq!(trace_ids(&out).len(), 50);

    // A again, as it is and rolled back to B's commit: its 100 acknowledged rows are in its
    // WAL, behind B's checkpoint. Both are refused (the roll-back before it is claimed), and
    // A's WAL stays as it was.
    for (name, extra) in [
        ("a2.log", &[][..]),
        ("a3.log", &["--from-checkpoint", "1"][..]),
    ] {
        let log = dir.path().join(name);
        let a = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", job_a.to_str().unwrap()])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let text = wait_log(&log, "counts the positions of another log", 1, 60);
        sigterm(&a);
        a.wait_with_output().unwrap();
        assert!(
            text.contains("which no commit of its own covered"),
            "A {extra:?} resumed from B's checkpoint:\n{text}"
        );
        assert_eq!(
            wal_segments(&dir.path().join("state/wal")),
            held,
            "A's WAL changed"
        );
    }
    let ids = trace_ids(&out);
    assert!(
        ids.len() == 50 && ids.keys().all(|k| k.starts_with("b-")),
        "{ids:?}"
    );

    // C, with a new empty WAL (a new volume), continues from B's checkpoint, acknowledges 30
    // rows and dies before committing them. Started again it is not refused: its log starts
    // at the checkpoint it continued from, as it recorded. Its rows land once.
    let job_c = dir.path().join("job-c.toml");
    std::fs::write(
        &job_c,
        std::fs::read_to_string(&job_a)
            .unwrap()
            .replace("state_dir = \"state\"", "state_dir = \"state-c\""),
    )
    .unwrap();
    let (mut c, addr) = start(&job_c, &dir.path().join("c1.log"));
    push_acked(&addr, "c", 30);
    c.kill().unwrap();
    c.wait().unwrap();
    let (c, _) = start(&job_c, &dir.path().join("c2.log"));
    sigterm(&c);
    assert!(c.wait_with_output().unwrap().status.success());
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 80, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    assert!(
        (0..30).all(|i| ids.contains_key(&format!("c-{i}"))),
        "{ids:?}"
    );
}

/// The same two processes, one of whose WALs has no identity (a full disk kept it from being
/// written at its first start; `no_room_for_log_id`): its checkpoints name no log. Before,
/// either way round the check was skipped and A resumed at B's checkpoint, its 100
/// acknowledged rows behind it. Now a checkpoint naming no log is judged by its runs, and a
/// log without an identity counts no checkpoint that names one: both starts are refused.
#[test]
fn a_wal_without_an_identity_neither_resumes_from_nor_is_resumed_from_blindly() {
    let no_id = [("SLUICE_FAULT", "no_room_for_log_id:1")];
    for (a_env, b_env, said) in [
        (
            &no_id[..],
            &[][..],
            "than this process's (one without an identity",
        ),
        (
            &[][..],
            &no_id[..],
            "was written by a log without an identity",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let job_a = long_files(push_job(dir.path(), "wal", "", ""));
        let job_b = second_process(&job_a);
        let out = dir.path().join("out");
        let (mut a, addr) = start_with(&job_a, &dir.path().join("a1.log"), a_env);
        push_acked(&addr, "a", 100);
        a.kill().unwrap();
        a.wait().unwrap();
        let held = wal_segments(&dir.path().join("state/wal"));
        let (b, addr) = start_with(&job_b, &dir.path().join("b.log"), b_env);
        push_acked(&addr, "b", 50);
        sigterm(&b);
        assert!(b.wait_with_output().unwrap().status.success());
        assert_eq!(trace_ids(&out).len(), 50);

        let log = dir.path().join("a2.log");
        let mut a = crate::kafka::spawn_with("run", &job_a, &log, a_env);
        let status = wait_exit(&mut a, "A's start to be refused", 60);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !status.success()
                && text.contains(said)
                && text.contains("which no commit of its own covered"),
            "A ({a_env:?}, B {b_env:?}) resumed from B's checkpoint:\n{text}"
        );
        assert_eq!(wal_segments(&dir.path().join("state/wal")), held);
        assert_eq!(trace_ids(&out).len(), 50);
    }
}

/// Two push jobs left at one state folder (`job.state_dir` is `state` in both): the second
/// neither restores nor overwrites the first one's memory spill, whose acknowledged records
/// exist nowhere else; it refuses to start, and the first job's next start restores them.
#[test]
fn a_push_job_refuses_a_state_folder_holding_another_jobs_spill() {
    let dir = tempfile::tempdir().unwrap();
    let a = push_job(dir.path(), "memory", "", "");
    let (child, addr) = start(&a, &dir.path().join("a1.log"));
    // Paused: the workers take nothing more (at most the one take each may be in, up to 8
    // requests), so most of the 20 requests are still in the channel at the stop: spilled.
    let (code, body) = crate::admin::http(&addr, "POST", "/v1/tasks/nginx_access/pause", None);
    assert_eq!(code, 200, "{body}");
    for i in 0..20 {
        push_acked(&addr, &format!("a{i}"), 15);
    }
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    assert!(
        dir.path().join("state/spill/manifest.json").exists(),
        "nothing spilled:\n{}",
        std::fs::read_to_string(dir.path().join("a1.log")).unwrap()
    );

    let b = dir.path().join("b.toml");
    let text = std::fs::read_to_string(&a)
        .unwrap()
        .replace("name = \"push-test\"", "name = \"push-b\"")
        .replace("url = \"file://out\"", "url = \"file://out-b\"");
    std::fs::write(&b, text).unwrap();
    let log = dir.path().join("b.log");
    let mut second = spawn_run(&b, &log);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break Some(s);
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("to=Running") || std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.is_some_and(|s| !s.success()) && text.contains("is job `push-test`'s"),
        "job push-b started on job push-test's spill:\n{text}"
    );
    assert!(trace_ids(&dir.path().join("out-b")).is_empty());

    let (child, addr) = start(&a, &dir.path().join("a2.log"));
    wait_for(&dir.path().join("out"), 300, 60);
    let (code, body) = crate::admin::http(&addr, "POST", "/v1/tasks/nginx_access/stop", None);
    assert_eq!(code, 200, "{body}");
    assert!(child.wait_with_output().unwrap().status.success());
    let seen = trace_ids(&dir.path().join("out"));
    assert_eq!(seen.len(), 300, "rows of job push-test");
    assert!(seen.values().all(|n| *n == 1), "a row twice");
}
