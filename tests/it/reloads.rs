//! Reloads (SIGHUP) and the supervisor's restarts inside one process: a task that panics
//! after reloads restarts with the job as last reloaded, and later reloads still happen; a
//! task restarted after a failure runs with the schema it ran with, not an edit a reload
//! refused.

use crate::admin::admin_addr;
use crate::helpers::*;
use crate::kafka::wait_log;
use crate::push::{push_acked, push_job, start_with};

fn hup(child: &std::process::Child) {
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// The job at `job` started (its log `run.log` in `dir`) with `SLUICE_FAULT` set to
/// `fault`, and 10 rows of tag `a` pushed and landed in `out/`: the process, the admin
/// address and the log.
fn running_with_a(
    dir: &std::path::Path,
    job: &std::path::Path,
    fault: &str,
) -> (KillOnDrop, String, std::path::PathBuf) {
    let log = dir.join("run.log");
    let (run, addr) = start_with(job, &log, &[("SLUICE_FAULT", fault)]);
    push_acked(&addr, "a", 10);
    wait_rows(&log, &dir.join("out"), "a", 10);
    (run, addr, log)
}

/// Waits until `out` holds `n` rows of `tag`, failing with the log when it does not within
/// 60 s.
fn wait_rows(log: &std::path::Path, out: &std::path::Path, tag: &str, n: usize) {
    let theirs = || {
        trace_ids(out)
            .keys()
            .filter(|id| id.starts_with(&format!("{tag}-")))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while theirs() < n && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        theirs(),
        n,
        "{tag}'s rows in {}:\n{}",
        out.display(),
        std::fs::read_to_string(log).unwrap()
    );
}

/// A push job reloaded to write to `moved/`, then reloaded again to `second/`, whose task
/// panics at its start (`panic_at_start:3`): the job that ran before it (`moved/`) takes over,
/// and a third reload (to `third/`) happens. Before, the panic escaped the reloading loop:
/// the supervisor restarted the job as first loaded (`out/`), undoing the first reload, and
/// the reloads' watcher of the panicked task stayed, taking a later SIGHUP for a task gone.
#[test]
fn a_task_panicking_after_reloads_restarts_as_last_reloaded_and_reloads_on() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let text = std::fs::read_to_string(&job).unwrap();
    assert!(text.contains("file://out"), "{text}");
    let log = dir.path().join("run.log");
    let (mut run, addr) = start_with(&job, &log, &[("SLUICE_FAULT", "panic_at_start:3")]);
    let lands = |tag: &str, folder: &str, running: usize| {
        wait_log(&log, "to=Running", running, 60);
        push_acked(&addr, tag, 10);
        wait_rows(&log, &dir.path().join(folder), tag, 10);
    };
    lands("a", "out", 1);
    for (tag, folder, running) in [("b", "moved", 2), ("c", "moved", 3), ("d", "third", 4)] {
        let url = match tag {
            "c" => "file://second",
            _ => &format!("file://{folder}")[..],
        };
        std::fs::write(&job, text.replace("file://out", url)).unwrap();
        hup(run.child());
        if tag == "c" {
            let seen = wait_log(&log, "SLUICE_FAULT: a panic at the task's start 3", 1, 60);
            assert!(seen.contains("a panic at the task's start 3"), "{seen}");
        }
        lands(tag, folder, running);
    }
    assert!(trace_ids(&dir.path().join("second")).is_empty());
}

/// A push job of one supervised repo (`[[repos]]`, named `nginx_access`) with its own copy
/// of the schema: the job file, the schema file and its text.
fn supervised_push_job(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    own_schema_push_job(dir, "\n[[repos]]\nname = \"nginx_access\"\n")
}

/// A push job with its own copy of the schema, and `tail` added to its file: the job file,
/// the schema file and its text.
fn own_schema_push_job(
    dir: &std::path::Path,
    tail: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let schema_file = dir.join("nginx_access.toml");
    let schema_text = std::fs::read_to_string(schema("nginx_access")).unwrap();
    std::fs::write(&schema_file, &schema_text).unwrap();
    let job = push_job(dir, "wal", "", "");
    let text = std::fs::read_to_string(&job).unwrap();
    let text = text.replace(
        &format!("schema = \"{}\"", schema("nginx_access").display()),
        "schema = \"nginx_access.toml\"",
    ) + tail;
    assert!(text.contains("schema = \"nginx_access.toml\""), "{text}");
    std::fs::write(&job, text).unwrap();
    (job, schema_file, schema_text)
}

/// Waits for `times` lines of the log holding `what`, failing with the log when they do not
/// come within 60 s.
fn expect_log(log: &std::path::Path, what: &str, times: usize) {
    let seen = wait_log(log, what, times, 60);
    assert!(
        seen.matches(what).count() >= times,
        "waited for {times} lines saying `{what}`:\n{seen}"
    );
}

/// A supervised push repo (`[[repos]]`) whose schema file is edited incompatibly (`bytes`
/// from int64 to string): SIGHUP refuses it, then a sink worker panics on the next push
/// (`panic_in_worker:2`) and the supervisor restarts the task. The restart runs with the
/// schema the task ran with, and the push acknowledged before the panic lands from the WAL.
/// Before, the restart read the edited file: its check against the written files failed, and
/// the repo failed at every restart, for good.
#[test]
fn a_task_restarted_after_a_failure_keeps_the_schema_a_reload_refused_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let (job, schema_file, schema_text) = supervised_push_job(dir.path());
    let (mut run, addr, log) = running_with_a(dir.path(), &job, "panic_in_worker:2");
    let out = dir.path().join("out");
    let edited = schema_text.replace(
        "name = \"bytes\"\ntype = \"int64\"",
        "name = \"bytes\"\ntype = \"string\"",
    );
    assert_ne!(edited, schema_text);
    std::fs::write(&schema_file, edited).unwrap();
    // A repo added to the file meanwhile: said to need a restart (it was not a word).
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(&job, format!("{text}\n[[repos]]\nname = \"other\"\n")).unwrap();
    hup(run.child());
    let seen = wait_log(&log, "SIGHUP: not reloaded", 1, 60);
    assert!(seen.contains("SIGHUP: not reloaded"), "{seen}");
    expect_log(&log, "the job file has a new repo", 1);
    assert!(
        !seen.contains("a panic in a sink worker"),
        "the panic came too early: {seen}"
    );
    push_acked(&addr, "b", 10);
    let seen = wait_log(&log, "the repo's task failed", 1, 60);
    assert!(
        seen.contains("a panic in a sink worker at take 2")
            && seen.contains("the repo's task failed"),
        "{seen}"
    );
    wait_rows(&log, &out, "b", 10);
    push_acked(&addr, "c", 10);
    wait_rows(&log, &out, "c", 10);
}

/// A SIGHUP moving the repo to `moved/` whose check is held (`hold_reload_check`) while a
/// sink worker panics (`panic_in_worker:2`): the task fails, and its supervisor restarts it
/// before the check decides. The restarted task checks the job again and reloads. Before,
/// the SIGHUP went with the failed task's watcher: the repo wrote to `out/` until the next.
#[test]
fn a_sighup_whose_check_outlives_a_failed_task_is_taken_up_by_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (job, _, _) = supervised_push_job(dir.path());
    let text = std::fs::read_to_string(&job).unwrap();
    let hold = dir.path().join("hold");
    let fault = format!("panic_in_worker:2,hold_reload_check:@{}", hold.display());
    let (mut run, addr, log) = running_with_a(dir.path(), &job, &fault);
    std::fs::write(&hold, "").unwrap();
    std::fs::write(&job, text.replace("file://out", "file://moved")).unwrap();
    hup(run.child());
    expect_log(&log, "SLUICE_FAULT: holding at hold_reload_check", 1);
    push_acked(&addr, "b", 10);
    expect_log(&log, "the repo's task failed", 1);
    expect_log(&log, "to=Running", 2);
    // Acknowledged before the panic: the restart replays it from the WAL, as the job ran.
    wait_rows(&log, &dir.path().join("out"), "b", 10);
    std::fs::remove_file(&hold).unwrap();
    expect_log(&log, "SIGHUP: the job file and schema check out", 1);
    expect_log(&log, "to=Running", 3);
    push_acked(&addr, "c", 10);
    wait_rows(&log, &dir.path().join("moved"), "c", 10);
}

/// A reload whose task fails at its start (`panic_at_start:2`, held just before by
/// `hold_before_claims`) after a SIGTERM came: the process stops. Before, the job that ran
/// before the reload was started again first (and then stopped).
#[test]
fn a_reloaded_task_failing_after_a_stop_does_not_bring_back_the_job_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let text = std::fs::read_to_string(&job).unwrap();
    let hold = dir.path().join("hold");
    let fault = format!("panic_at_start:2,hold_before_claims:@{}", hold.display());
    let (mut run, _addr, log) = running_with_a(dir.path(), &job, &fault);
    std::fs::write(&hold, "").unwrap();
    std::fs::write(&job, text.replace("file://out", "file://moved")).unwrap();
    hup(run.child());
    expect_log(&log, "SLUICE_FAULT: holding at hold_before_claims", 1);
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &run.child().id().to_string()])
        .status()
        .unwrap()
        .success());
    expect_log(&log, "asked to stop", 1);
    std::fs::remove_file(&hold).unwrap();
    wait_exit(run.child(), "the process to end after the stop", 60);
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(seen.contains("a panic at the task's start 2"), "{seen}");
    assert!(
        !seen.contains("running the previous one again"),
        "the previous job came back after the stop:\n{seen}"
    );
}

/// A reload that makes the required `ts` nullable (a change the files written allow), whose
/// task records it and then fails (`panic_in_worker:2`): the job before the reload takes
/// over, with the reloaded schema. Before, it took the schema it had run with, which the
/// recorded one refuses (`ts` required again): the process failed.
#[test]
fn the_job_before_a_failed_reload_runs_with_the_reloaded_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (job, schema_file, schema_text) = own_schema_push_job(dir.path(), "");
    let (mut run, addr, log) = running_with_a(dir.path(), &job, "panic_in_worker:2");
    let out = dir.path().join("out");
    let edited = schema_text.replacen("nullable = false", "nullable = true", 1);
    assert_ne!(edited, schema_text);
    std::fs::write(&schema_file, edited).unwrap();
    hup(run.child());
    expect_log(&log, "SIGHUP: the job file and schema check out", 1);
    expect_log(&log, "to=Running", 2);
    push_acked(&addr, "b", 10);
    expect_log(&log, "running the previous one again", 1);
    wait_rows(&log, &out, "b", 10);
    push_acked(&addr, "c", 10);
    wait_rows(&log, &out, "c", 10);
}

/// As above, but the reload also moves the destination (`moved/`) and retypes `bytes` (a
/// change an empty destination allows, the first one does not): the job before it takes
/// over with the schema it ran with, since it cannot take the reloaded one. Before, it took
/// the reloaded one, and the process failed on the first destination's files.
#[test]
fn the_job_before_a_failed_reload_keeps_its_schema_when_it_cannot_take_the_reloaded_one() {
    let dir = tempfile::tempdir().unwrap();
    let (job, schema_file, schema_text) = own_schema_push_job(dir.path(), "");
    let text = std::fs::read_to_string(&job).unwrap();
    let (mut run, addr, log) = running_with_a(dir.path(), &job, "panic_in_worker:2");
    let out = dir.path().join("out");
    let retyped = schema_text.replace(
        "name = \"bytes\"\ntype = \"int64\"",
        "name = \"bytes\"\ntype = \"string\"",
    );
    assert_ne!(retyped, schema_text);
    std::fs::write(&schema_file, retyped).unwrap();
    std::fs::write(&job, text.replace("file://out", "file://moved")).unwrap();
    hup(run.child());
    expect_log(&log, "SIGHUP: the job file and schema check out", 1);
    expect_log(&log, "to=Running", 2);
    push_acked(&addr, "b", 10);
    expect_log(&log, "cannot take the reloaded one", 1);
    wait_rows(&log, &out, "b", 10);
}

/// A supervised memory push repo whose task fails (a worker panics on the first push): the
/// acknowledged pushes it held go with it, and the log says so, naming the positions. Before,
/// only "the repo's task failed" was logged, and the loss went unsaid.
#[test]
fn a_memory_push_task_that_fails_says_which_acknowledged_pushes_are_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (job, _, _) = supervised_push_job(dir.path());
    let text = std::fs::read_to_string(&job).unwrap();
    assert!(text.contains("durability = \"wal\""), "{text}");
    std::fs::write(
        &job,
        text.replace("durability = \"wal\"", "durability = \"memory\""),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let (_run, addr) = start_with(&job, &log, &[("SLUICE_FAULT", "panic_in_worker:1")]);
    push_acked(&addr, "a", 10);
    expect_log(&log, "the repo's task failed", 1);
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(
        seen.contains("acknowledged pushes are lost") && seen.contains("to="),
        "{seen}"
    );
}

/// A SIGHUP after `[admin] token` changed (a leaked token replaced) is refused, saying the
/// process must restart, and the old token is still the one asked for. Before, the reload
/// said it restarted the task with the new file, while the admin server kept the old token:
/// the leaked one still worked, the new one got 401, and nothing said so.
#[test]
fn a_reload_that_changes_the_admin_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "token = \"old-token\"");
    let log = dir.path().join("run.log");
    let (mut run, addr) = start_with(&job, &log, &[]);
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(&job, text.replace("old-token", "new-token")).unwrap();
    hup(run.child());
    let seen = wait_log(&log, "SIGHUP: not reloaded", 1, 60);
    assert!(
        seen.contains("SIGHUP: not reloaded") && seen.contains("[admin] changed"),
        "{seen}"
    );
    assert!(
        !seen.contains("new-token"),
        "the log shows the token: {seen}"
    );
    let (status, _) = crate::admin::http(&addr, "GET", "/v1/tasks", Some("old-token"));
    assert_eq!(status, 200);
    // Counted by outcome, for an alert (a refused reload was only a log line), and so is
    // one applied afterwards.
    let count = |outcome: &str| {
        let (_, m) = crate::admin::http(&addr, "GET", "/metrics", None);
        let series =
            format!("sluice_reloads_total{{repo=\"nginx_access\",outcome=\"{outcome}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&series).map(|v| v.parse::<f64>().unwrap()))
    };
    wait_until("a refused reload in the metrics", 30, || {
        count("refused") == Some(1.0)
    });
    std::fs::write(&job, text).unwrap();
    hup(run.child());
    wait_until("an applied reload in the metrics", 60, || {
        count("applied") == Some(1.0)
    });
}

/// What a reload cannot take is refused, and the task runs on: a schema whose `name` (the
/// repo's, in a one-repo job) changed, a dead-letter destination that moved (a failed commit's
/// dead letters are cleaned up where the next task looks), and a schema file still being
/// written (half a schema file can parse, and the fields it leaves out would be dropped for
/// good). Then the files as they were reload.
#[test]
fn a_reload_refuses_a_renamed_repo_moved_dead_letters_and_a_schema_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let (job, schema_file, schema_text) = own_schema_push_job(dir.path(), "");
    let job_text = std::fs::read_to_string(&job).unwrap();
    let (mut run, addr, log) = running_with_a(dir.path(), &job, "");
    let renamed = schema_text.replace("name = \"nginx_access\"", "name = \"web\"");
    assert_ne!(renamed, schema_text);
    std::fs::write(&schema_file, renamed).unwrap();
    hup(run.child());
    expect_log(
        &log,
        "the repo's name changed from `nginx_access` to `web`",
        1,
    );

    std::fs::write(&schema_file, &schema_text).unwrap();
    std::fs::write(
        &job,
        format!("{job_text}\n[dead_letters]\nurl = \"file://elsewhere\"\n"),
    )
    .unwrap();
    hup(run.child());
    expect_log(&log, "[dead_letters] url or topic changed", 1);

    // The schema file rewritten in place over and over while the reload looks at it: the
    // first half of it (which parses: the fields after the cut are left out).
    std::fs::write(&job, &job_text).unwrap();
    let cut = schema_text.match_indices("[[fields]]").nth(3).unwrap().0;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (f, text, stop) = (schema_file.clone(), schema_text.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                std::fs::write(&f, &text[..cut]).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
                std::fs::write(&f, &text).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    hup(run.child());
    let seen = wait_log(&log, "still being written", 1, 60);
    stop.store(true, std::sync::atomic::Ordering::Release);
    writer.join().unwrap();
    assert!(seen.contains("still being written"), "{seen}");
    assert!(!seen.contains("restarting the task with them"), "{seen}");

    std::fs::write(&schema_file, &schema_text).unwrap();
    hup(run.child());
    expect_log(&log, "restarting the task with them", 1);
    // The restart is logged before it is done: a push meanwhile is answered 503.
    expect_log(&log, "to=Running", 2);
    push_acked(&addr, "b", 10);
    wait_rows(&log, &dir.path().join("out"), "b", 10);
}

/// A task that fails while it stops for a reload that checked out (`panic_in_worker:2`, the
/// worker held by `hold_worker` until the check passed) starts with the reloaded job. Before,
/// the reload was dropped: this one-repo process ended with the task's failure, after logging
/// that it was restarting with the new job.
#[test]
fn a_task_failing_as_it_stops_for_a_reload_starts_with_the_reloaded_job() {
    let dir = tempfile::tempdir().unwrap();
    let (job, text) = one_worker_job(dir.path());
    let hold = dir.path().join("hold");
    let (mut run, addr, log) = running_with_a(dir.path(), &job, &failing_worker(&hold));
    fail_stopping_for_a_move(dir.path(), (&job, &text), (&mut run, &addr, &log), &hold);
    assert!(
        run.child().try_wait().unwrap().is_none(),
        "the process ended"
    );
}

/// A push job with its own schema and one worker (the one lane the push partition's items
/// take, held by the tests): the file and its text.
fn one_worker_job(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let (job, _, _) = own_schema_push_job(dir, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("workers = 2", "workers = 1");
    assert!(text.contains("workers = 1"), "{text}");
    std::fs::write(&job, &text).unwrap();
    (job, text)
}

/// A worker that panics at its second take and is held while `hold` exists.
fn failing_worker(hold: &std::path::Path) -> String {
    format!("panic_in_worker:2,hold_worker:@{}", hold.display())
}

/// With the worker held (`hold`), `b` pushed and the job moved to `moved/` by SIGHUP; once
/// the check passed the worker goes on and fails (its second take) as the task stops: the
/// reloaded job starts, and `b`, acknowledged before the failure, lands in `moved/` from
/// the WAL.
fn fail_stopping_for_a_move(
    dir: &std::path::Path,
    (job, text): (&std::path::Path, &str),
    (run, addr, log): (&mut KillOnDrop, &str, &std::path::Path),
    hold: &std::path::Path,
) {
    std::fs::write(hold, "").unwrap();
    // The worker held before "b" is pushed (a worker waiting for an item would take it).
    expect_log(log, "SLUICE_FAULT: holding at hold_worker", 1);
    push_acked(addr, "b", 10);
    std::fs::write(job, text.replace("file://out", "file://moved")).unwrap();
    hup(run.child());
    expect_log(log, "SIGHUP: the job file and schema check out", 1);
    std::fs::remove_file(hold).unwrap();
    expect_log(log, "starting it with the reloaded job", 1);
    wait_rows(log, &dir.join("moved"), "b", 10);
}

/// A task started with `--from-checkpoint` that fails while it stops for a reload moving
/// `sink.url`: the reloaded job starts on the new destination without the roll-back, which
/// was asked of the old one. Before, the new destination was asked to roll back to a
/// checkpoint it does not hold: the start was refused and the process went back to the old
/// job, the reload lost (and a new destination holding such a checkpoint would have had its
/// later commits deleted).
#[test]
fn a_reload_after_a_failure_does_not_carry_a_roll_back_to_a_new_destination() {
    let dir = tempfile::tempdir().unwrap();
    let (job, text) = one_worker_job(dir.path());
    let out = dir.path().join("out");
    // A first run commits `a`'s rows: checkpoint 1.
    let first = dir.path().join("first.log");
    let (run, addr) = start_with(&job, &first, &[]);
    push_acked(&addr, "a", 10);
    wait_rows(&first, &out, "a", 10);
    assert!(run.stop("the first run's stop", 60).success());
    // Again from checkpoint 1; its worker fails as it stops for the reload.
    let hold = dir.path().join("hold");
    let log = dir.path().join("run.log");
    let mut run = KillOnDrop::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", job.to_str().unwrap(), "--from-checkpoint", "1"])
            .env("SLUICE_FAULT", failing_worker(&hold))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    expect_log(&log, "to=Running", 1);
    let addr = admin_addr(&log);
    // The worker's first take; its second fails (see the test above).
    push_acked(&addr, "c", 10);
    wait_rows(&log, &out, "c", 10);
    fail_stopping_for_a_move(dir.path(), (&job, &text), (&mut run, &addr, &log), &hold);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("running the previous one again"),
        "the reload fell back:\n{text}"
    );
    assert!(
        run.child().try_wait().unwrap().is_none(),
        "the process ended"
    );
}

/// A supervised repo whose task fails at every start (its S3 endpoint does not answer), and
/// a SIGHUP moving it to a local folder whose check is slower than a failing start
/// (`slow_reload_check`). The check goes on across the restarts and the reload is taken.
/// Before, each task's end dropped the check under way and the next task asked again: a
/// repo failing faster than a check could not be mended by a reload.
#[test]
fn a_repo_failing_at_each_start_faster_than_a_check_is_mended_by_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (job, _, _) = supervised_push_job(dir.path());
    let good = std::fs::read_to_string(&job).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = good.replace("url = \"file://out\"", "url = \"s3://nowhere/p/\"")
        + &format!("[sink.storage]\nendpoint = \"http://127.0.0.1:{port}\"\nallow_http = true\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\nconnect_timeout_secs = 1\nmax_retries = 0\nretry_timeout_secs = 1\n");
    assert!(dead.contains("s3://nowhere"), "{dead}");
    std::fs::write(&job, &dead).unwrap();
    let log = dir.path().join("run.log");
    let mut run = KillOnDrop::new(crate::kafka::spawn_with(
        "run",
        &job,
        &log,
        &[("SLUICE_FAULT", "slow_reload_check:4000")],
    ));
    expect_log(&log, "the repo's task failed", 1);
    std::fs::write(&job, &good).unwrap();
    hup(run.child());
    let text = wait_log(&log, "SIGHUP: the job file and schema check out", 1, 90);
    assert!(
        text.contains("SIGHUP: the job file and schema check out"),
        "the reload was never taken:\n{text}"
    );
    // Pushes are answered 503 until the reloaded task runs.
    let addr = admin_addr(&log);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let answer = crate::push::http_client::Client::new(&addr).post(
            "/v1/repos/nginx_access/data",
            "",
            &crate::push::events("m", 10),
        );
        if matches!(answer, Ok((200, _, _))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reloaded task never took a push ({answer:?}):\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    wait_rows(&log, &dir.path().join("out"), "m", 10);
}
