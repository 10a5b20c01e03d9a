//! Delta tables (`[sink] table = "delta"`), each read back by three independent readers
//! (`tests/interop/delta_check.py`: a replay of `_delta_log` with plain JSON and pyarrow, the
//! `deltalake` package, `polars.read_delta`): kill -9 during a Kafka backfill, a crash between
//! a commit's seal and its publish, two group members writing one table, fields added between
//! runs and a type change refused, tables on S3 and Azure test servers, and `compact` and
//! `vacuum` beside a live run, with kill -9 of both.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;

use crate::helpers::*;
use crate::kafka::{produce_events, spawn_run, wait_log};

/// What each reader of a table saw (`delta_check.py`'s answer).
pub(crate) struct Seen(pub(crate) serde_json::Value);

impl Seen {
    /// Every reader saw `n` rows, `n` distinct trace ids, and the same ones.
    pub(crate) fn once(&self, n: u64) {
        for r in ["replay", "deltalake", "polars"] {
            assert_eq!(self.0[r]["rows"], n, "{r} rows: {}", self.0);
            assert_eq!(self.0[r]["distinct"], n, "{r} distinct: {}", self.0);
        }
        assert_eq!(self.0["same"], true, "readers disagree: {}", self.0);
    }
}

/// Reads the table at `uri` with the three readers (the replay reads `local`, or `uri`).
pub(crate) fn read_table(python: &Path, uri: &str, local: Option<&Path>, opts: &str) -> Seen {
    let mut cmd = Command::new(python);
    cmd.arg(root().join("tests/interop/delta_check.py"))
        .arg(uri)
        .arg("trace_id");
    if let Some(l) = local {
        cmd.arg(l);
    }
    let out = cmd
        .env("DELTA_STORAGE_OPTIONS", opts)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "delta check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Seen(serde_json::from_slice(&out.stdout).expect("the checker prints JSON"))
}

pub(crate) fn kafka_job(dir: &Path, bootstrap: &str, topic: &str, options: &str) -> PathBuf {
    let text = format!(
        r#"
[job]
name = "delta-it"
state_dir = "state"
[source]
kind = "kafka"
brokers = {bootstrap:?}
topics = [{topic:?}]
chunk_bytes = "16KiB"
[source.options]
"fetch.wait.max.ms" = "10"
{options}
[repo]
schema = {:?}
[sink]
url = "out/"
table = "delta"
[sink.delta]
checkpoint_every = 4
[sink.rotation]
max_rows = 500
idle = "1s"
[sink.partition]
template = "hr={{ts:%H}}/"
"#,
        schema("nginx_access").display().to_string()
    );
    let p = dir.join("job.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Kills land at random up to this long after a start (a whole backfill takes about twice it).
const KILL_SPREAD_MS: u64 = 1500;

#[test]
fn a_kafka_backfill_into_a_delta_table_survives_kill_9_and_every_reader_sees_each_record_once() {
    let Some(py) = python() else { return };
    let topic = "events";
    let c = MockCluster::new(1).unwrap();
    c.create_topic(topic, 4, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    let n = 40_000;
    produce_events(&bootstrap, topic, 0, n, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = kafka_job(dir.path(), &bootstrap, topic, "");
    let jobs = job.to_str().unwrap();

    // kill -9 during the backfill, 20 times (at random moments: the runs are short).
    let mut kills = 0;
    let mut seed = 0x2545F4914F6CDD1Du64;
    let deadline = Instant::now() + Duration::from_secs(180);
    while kills < 20 && Instant::now() < deadline {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["backfill", jobs])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % KILL_SPREAD_MS));
        if child.try_wait().unwrap().is_some() {
            // It finished: start over on a fresh table so that the kills keep landing.
            let _ = std::fs::remove_dir_all(dir.path().join("out"));
            continue;
        }
        child.kill().unwrap();
        let _ = child.wait();
        kills += 1;
    }
    let out = sluice(&["backfill", jobs]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(kills >= 10, "only {kills} kills landed");
    let table = dir.path().join("out");
    let seen = read_table(&py, table.to_str().unwrap(), None, "");
    seen.once(n as u64);
    // Each partition's position is in the table, and the log was checkpointed.
    let txn = &seen.0["replay"]["txn"];
    for p in 0..4 {
        assert!(
            txn[format!("sluice/delta-it-backfill/{topic}-{p}")]
                .as_u64()
                .is_some_and(|v| v > 0),
            "{txn}"
        );
    }
    assert!(table.join("_delta_log/_last_checkpoint").exists());
    eprintln!("kill -9 landed {kills} times; {}", seen.0);

    // Again: nothing new, no new version.
    let version = seen.0["deltalake"]["version"].clone();
    let again = sluice_ok(&["backfill", jobs]);
    assert!(again.contains(" 0 rows"), "{again}");
    let seen = read_table(&py, table.to_str().unwrap(), None, "");
    seen.once(n as u64);
    assert_eq!(seen.0["deltalake"]["version"], version);
}

/// A file job into a Delta table at `out/`, reading `input` with `schema`.
pub(crate) fn file_job(
    dir: &Path,
    input: &Path,
    schema: &Path,
    url: &str,
    storage: &str,
) -> PathBuf {
    let text = format!(
        r#"
[job]
name = "delta-file"
state_dir = "state"
[source]
kind = "file"
chunk_bytes = "16KiB"
paths = [{:?}]
[repo]
schema = {:?}
[sink]
url = {url:?}
table = "delta"
[sink.rotation]
max_rows = 700
[sink.partition]
template = "hr={{ts:%H}}/"
{storage}
"#,
        input.display().to_string(),
        schema.display().to_string()
    );
    let p = dir.join("job.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The rows of partition `key`'s sealed commits of the `delta-file` job in `table`.
pub(crate) fn sealed_rows(table: &Path, key: &str) -> u64 {
    std::fs::read_dir(table.join(format!("_sluice/delta-file/checkpoints/{key}")))
        .unwrap()
        .map(|e| {
            let c: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            c["commit"]["rows"]
                .as_u64()
                .or(c["rows"].as_u64())
                .unwrap_or(0)
        })
        .sum()
}

pub(crate) fn events(path: &Path, first: usize, n: usize, extra: bool) {
    let mut s = String::new();
    for i in first..first + n {
        s.push_str(&format!(
            "{{\"ts\":\"2024-05-01T{:02}:{:02}:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"t{i}\"{}}}\n",
            (i / 60) % 24,
            i % 60,
            if extra { format!(",\"region\":\"r{}\"", i % 3) } else { String::new() }
        ));
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn a_crash_between_a_commits_seal_and_its_publish_is_published_by_the_next_start() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let n = 5000;
    events(&input, 0, n, false);
    let job = file_job(dir.path(), &input, &schema("nginx_access"), "out/", "");
    let jobs = job.to_str().unwrap();
    let faulted = |fault: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", jobs])
            .env("SLUICE_FAULT", fault)
            .output()
            .unwrap();
        assert!(
            !o.status.success(),
            "the fault {fault} did not stop the run"
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // The third commit is sealed, then the process dies before publishing it: the table
    // holds the first two only.
    faulted("after_checkpoint:3");
    let table = dir.path().join("out");
    let sealed = sealed_rows(&table, "events-0");
    let lacking = read_table(&py, table.to_str().unwrap(), None, "");
    let shown = lacking.0["deltalake"]["rows"].as_u64().unwrap();
    assert!(
        shown > 0 && shown < sealed,
        "{sealed} rows sealed: {}",
        lacking.0
    );
    // The next start publishes it before anything else; this one dies after its second
    // publish.
    let log = faulted("after_publish:2");
    assert!(
        log.contains("publishing sealed commits the table lacks"),
        "{log}"
    );
    let o = sluice(&["run", jobs]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_table(&py, table.to_str().unwrap(), None, "").once(n as u64);
}

#[test]
fn a_table_that_holds_more_than_the_checkpoints_is_where_the_partition_resumes() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let n = 3000;
    events(&input, 0, n, false);
    let job = file_job(dir.path(), &input, &schema("nginx_access"), "out/", "");
    let jobs = job.to_str().unwrap();
    sluice_ok(&["run", jobs]);
    // The job's records in the destination are lost (deleted by hand, say); the table's
    // `txn` actions still say how far each partition went.
    let table = dir.path().join("out");
    std::fs::remove_dir_all(table.join("_sluice")).unwrap();
    let o = sluice(&["run", jobs]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("resuming where the table ends"), "{log}");
    read_table(&py, table.to_str().unwrap(), None, "").once(n as u64);
}

/// The same, with an older checkpoint record left: the partition resumes where the table
/// ends, and a commit that fails then rewinds it there, not to the checkpoint. Before, the
/// rewind went back to the checkpoint and the table took its records past it a second time.
#[test]
fn a_failed_commit_after_resuming_where_the_table_ends_does_not_rewind_behind_it() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    events(&input, 0, 3000, false);
    let job = file_job(dir.path(), &input, &schema("nginx_access"), "out/", "");
    let jobs = job.to_str().unwrap();
    sluice_ok(&["run", jobs]);
    // Every checkpoint record but the oldest is lost.
    let table = dir.path().join("out");
    let records = table.join("_sluice/delta-file/checkpoints/events-0");
    let mut names: Vec<_> = std::fs::read_dir(&records)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() > 2, "{names:?}");
    for newer in &names[1..] {
        std::fs::remove_file(newer).unwrap();
    }
    // More records arrive; the first commit of the next run fails once.
    let mut more = std::fs::read(&input).unwrap();
    events(&dir.path().join("more.jsonl"), 3000, 1000, false);
    more.extend(std::fs::read(dir.path().join("more.jsonl")).unwrap());
    std::fs::write(&input, more).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", jobs])
        .env("SLUICE_FAULT", "fail_commit:1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("resuming where the table ends"), "{log}");
    read_table(&py, table.to_str().unwrap(), None, "").once(4000);
}

#[test]
fn a_roll_back_is_refused_where_a_table_is_even_when_the_job_no_longer_says_so() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    events(&input, 0, 3000, false);
    let job = file_job(dir.path(), &input, &schema("nginx_access"), "out/", "");
    let jobs = job.to_str().unwrap();
    sluice_ok(&["run", jobs]);
    for table in ["delta", "none"] {
        let text = std::fs::read_to_string(&job)
            .unwrap()
            .replace("table = \"delta\"", &format!("table = {table:?}"));
        let other = dir.path().join(format!("{table}.toml"));
        std::fs::write(&other, text).unwrap();
        let o = sluice(&["run", other.to_str().unwrap(), "--from-checkpoint", "1"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{err}");
        assert!(err.contains("cannot roll back a table"), "{err}");
    }
    read_table(&py, dir.path().join("out").to_str().unwrap(), None, "").once(3000);
}

#[test]
fn fields_added_between_runs_are_read_by_every_reader_and_changes_the_table_refuses_are_not_recorded(
) {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Run 1: a schema without `region`.
    let narrow = dir.path().join("narrow.toml");
    std::fs::write(
        &narrow,
        "name = \"ev\"\n[[fields]]\nname = \"ts\"\ntype = \"timestamp\"\nnullable = false\n[[fields]]\nname = \"status\"\ntype = \"int32\"\n[[fields]]\nname = \"trace_id\"\ntype = \"string\"\nnullable = false\n",
    )
    .unwrap();
    let first = dir.path().join("a.jsonl");
    events(&first, 0, 1000, false);
    let job = file_job(dir.path(), &first, &narrow, "out/", "");
    sluice_ok(&["run", job.to_str().unwrap()]);
    // Run 2: `region` added (nullable), over new input.
    let wide = dir.path().join("wide.toml");
    std::fs::write(
        &wide,
        format!(
            "{}[[fields]]\nname = \"region\"\ntype = \"string\"\n",
            std::fs::read_to_string(&narrow).unwrap()
        ),
    )
    .unwrap();
    let second = dir.path().join("b.jsonl");
    events(&second, 1000, 1000, true);
    let job = file_job(dir.path(), &second, &wide, "out/", "");
    sluice_ok(&["run", job.to_str().unwrap()]);
    let table = dir.path().join("out");
    read_table(&py, table.to_str().unwrap(), None, "").once(2000);
    // Both readers see `region`: null in the first run's rows, set in the second's.
    let script = format!(
        "import os, deltalake, polars\nt = deltalake.DeltaTable({0:?}).to_pyarrow_table()\np = polars.read_delta({0:?})\nprint(t.column('region').null_count, p.get_column('region').null_count(), p.filter(polars.col('region') == 'r1').height, flush=True)\n# the readers' threads may abort the interpreter's teardown\nos._exit(0)",
        table.to_str().unwrap()
    );
    let o = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1000 1000 334");

    // Run 3: `status` becomes a string: refused before any data moves.
    let changed = dir.path().join("changed.toml");
    std::fs::write(
        &changed,
        std::fs::read_to_string(&wide).unwrap().replace(
            "name = \"status\"\ntype = \"int32\"",
            "name = \"status\"\ntype = \"string\"",
        ),
    )
    .unwrap();
    let third = dir.path().join("c.jsonl");
    events(&third, 2000, 500, true);
    let job = file_job(dir.path(), &third, &changed, "out/", "");
    let versions = std::fs::read_dir(table.join("_delta_log")).unwrap().count();
    let o = sluice(&["run", job.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("status"), "{err}");
    assert_eq!(
        std::fs::read_dir(table.join("_delta_log")).unwrap().count(),
        versions
    );
    read_table(&py, table.to_str().unwrap(), None, "").once(2000);

    // Run 4: `trace_id` made optional. The job's files could take that, the table cannot:
    // `validate` and the run refuse it before the schema is recorded, so the schema it ran
    // with still runs (recorded, it would have been the one every later start must follow).
    let relaxed = dir.path().join("relaxed.toml");
    std::fs::write(
        &relaxed,
        std::fs::read_to_string(&wide).unwrap().replace(
            "name = \"trace_id\"\ntype = \"string\"\nnullable = false\n",
            "name = \"trace_id\"\ntype = \"string\"\n",
        ),
    )
    .unwrap();
    let job = file_job(dir.path(), &third, &relaxed, "out/", "");
    for cmd in ["validate", "run"] {
        let o = sluice(&[cmd, job.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{cmd}: {err}");
        assert!(
            err.contains("`trace_id` is required in the table"),
            "{cmd}: {err}"
        );
    }
    let job = file_job(dir.path(), &third, &wide, "out/", "");
    sluice_ok(&["run", job.to_str().unwrap()]);
    read_table(&py, table.to_str().unwrap(), None, "").once(2500);
}

#[test]
fn two_processes_in_one_group_write_one_delta_table_exactly_once() {
    let Some(py) = python() else { return };
    let topic = "shared";
    let c = MockCluster::new(1).unwrap();
    c.create_topic(topic, 8, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let job = kafka_job(
        dir.path(),
        &bootstrap,
        topic,
        "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"",
    );
    let table = dir.path().join("out");
    let (loga, logb) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let a = spawn_run(&job, &loga);
    let mut n = 3000;
    produce_events(&bootstrap, topic, 0, n, 8, None);
    wait_log(&loga, "committed", 1, 60);
    // A second member joins while data flows: the rebalance moves partitions between them.
    let b = spawn_run(&job, &logb);
    let mut rounds = 0;
    while rounds < 40
        && !wait_log(&logb, "partitions assigned", 1, 0).contains("partitions assigned")
    {
        produce_events(&bootstrap, topic, n, 500, 8, None);
        n += 500;
        rounds += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    for _ in 0..4 {
        produce_events(&bootstrap, topic, n, 1000, 8, None);
        n += 1000;
    }
    // Until every record is in the table (read through the log, as its readers do).
    let check = || read_table(&py, table.to_str().unwrap(), None, "");
    wait_until("every record in the Delta table", 120, || {
        check().0["deltalake"]["distinct"].as_u64() == Some(n as u64)
    });
    let lb = wait_log(&logb, "committed", 1, 30);
    for mut m in [a, b] {
        let child = m.0.take().unwrap();
        sigterm(&child);
        assert!(child.wait_with_output().unwrap().status.success());
    }
    assert!(
        lb.contains("partitions assigned") && lb.contains("committed"),
        "the second member got partitions and committed files:\n{lb}"
    );
    check().once(n as u64);
}

#[test]
fn delta_tables_on_s3_and_azure_read_back_once() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let n = 3000;
    events(&input, 0, n, false);
    let mut ran = 0;
    if let Some(s3) = crate::s3_run::s3() {
        let url = format!(
            "{}/{}/",
            s3.url.trim_end_matches('/'),
            crate::s3_run::unique("delta")
        );
        let storage = format!(
            "[sink.storage]\nendpoint = {:?}\nallow_http = true\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
            s3.endpoint, s3.key, s3.secret
        );
        let job = file_job(dir.path(), &input, &schema("nginx_access"), &url, &storage);
        sluice_ok(&["run", job.to_str().unwrap()]);
        let (_rt, dest) = crate::s3_run::bucket(&url, &s3, &s3.endpoint);
        let local = mirror(&dest, &dir.path().join("s3-copy"));
        let opts = serde_json::json!({
            "AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": s3.key,
            "AWS_SECRET_ACCESS_KEY": s3.secret, "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        });
        read_table(&py, &url, Some(&local), &opts.to_string()).once(n as u64);
        ran += 1;
    }
    if let Some((url, opts)) = crate::stores::azure_options() {
        let url = format!("{}/delta/", url.trim_end_matches('/'));
        let storage = format!(
            "[sink.storage]\nendpoint = {:?}\nallow_http = true\naccount = {:?}\naccess_key = {:?}\n",
            opts.endpoint.clone().unwrap_or_default(),
            opts.account.clone().unwrap_or_default(),
            opts.access_key.clone().unwrap_or_default()
        );
        let _ = std::fs::remove_dir_all(dir.path().join("state"));
        let job = file_job(dir.path(), &input, &schema("nginx_access"), &url, &storage);
        sluice_ok(&["run", job.to_str().unwrap()]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dest =
            sluice::store::Destination::parse_with(&url, &opts, rt.handle().clone()).unwrap();
        let local = mirror(&dest, &dir.path().join("az-copy"));
        let py_opts = serde_json::json!({
            "azure_storage_account_name": opts.account, "azure_storage_account_key": opts.access_key,
            "azure_storage_endpoint": opts.endpoint, "azure_allow_http": "true",
        });
        read_table(&py, &url, Some(&local), &py_opts.to_string()).once(n as u64);
        ran += 1;
    }
    if ran == 0 {
        eprintln!("SKIP: no S3 or Azure test server");
    }
}

/// Copies the table at `dest` (its log and Parquet files) into `to`, for the log replay.
pub(crate) fn mirror(dest: &sluice::store::Destination, to: &Path) -> PathBuf {
    for f in dest.list("").unwrap() {
        if f.starts_with("_sluice") || f.starts_with("_dead_letters") {
            continue;
        }
        // Listed (and named here) by its key, as the log names it.
        let p = to.join(&f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, dest.read(&f).unwrap()).unwrap();
    }
    to.to_path_buf()
}

/// A backfill into the live Delta table with a schema the table refuses (`trace_id` made
/// optional) is refused before its schema is recorded: the live job's check against its
/// backfills' schemas still passes. Before, the backfill recorded it and then failed at the
/// table's check, and every later start (and `validate`) of the live job was refused as
/// "cannot be read beside the files backfill `other` wrote", though it wrote none.
#[test]
fn a_backfill_with_a_schema_the_table_refuses_records_nothing() {
    let topic = "events";
    let c = MockCluster::new(1).unwrap();
    c.create_topic(topic, 4, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 200, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = kafka_job(dir.path(), &bootstrap, topic, "");
    let jobs = job.to_str().unwrap();
    sluice_ok(&["backfill", jobs, "--to", "0=20,1=20,2=20,3=20"]);
    let relaxed = dir.path().join("relaxed.toml");
    std::fs::write(
        &relaxed,
        std::fs::read_to_string(schema("nginx_access"))
            .unwrap()
            .replace(
                "name = \"trace_id\"\ntype = \"string\"\nnullable = false",
                "name = \"trace_id\"\ntype = \"string\"",
            ),
    )
    .unwrap();
    let text = std::fs::read_to_string(&job).unwrap();
    let original = format!(
        "schema = {:?}",
        schema("nginx_access").display().to_string()
    );
    assert!(text.contains(&original), "{text}");
    let with = |s: &Path| format!("schema = {:?}", s.display().to_string());
    std::fs::write(&job, text.replace(&original, &with(&relaxed))).unwrap();
    let err = sluice_refused(&[
        "backfill",
        jobs,
        "--name",
        "other",
        "--from",
        "0=20,1=20,2=20,3=20",
        "--to",
        "0=40,1=40,2=40,3=40",
    ]);
    assert!(err.contains("`trace_id` is required in the table"), "{err}");
    std::fs::write(&job, text).unwrap();
    sluice_ok(&["validate", jobs]);
}
