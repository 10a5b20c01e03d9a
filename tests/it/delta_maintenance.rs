//! `sluice compact` and `sluice vacuum` on Delta tables (`[sink] table = "delta"`): beside a
//! live run with kill -9 of both, and partition folders that need escaping, locally and on S3;
//! each table read back by the three readers of `delta.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::mocking::MockCluster;

use crate::delta::{file_job, kafka_job, mirror, read_table};
use crate::helpers::*;
use crate::kafka::{produce_events, spawn_run};

#[test]
fn compact_and_vacuum_beside_a_live_run_with_kill_9_of_both_keep_every_record_once() {
    let Some(py) = python() else { return };
    let topic = "live";
    let c = MockCluster::new(1).unwrap();
    c.create_topic(topic, 4, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    // A killed member's partitions move on within seconds.
    let quick = "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"";
    let job = kafka_job(dir.path(), &bootstrap, topic, quick)
        .to_str()
        .unwrap()
        .to_string();
    let table = dir.path().join("out");
    let log = dir.path().join("run.log");
    let spawn_live = || spawn_run(Path::new(&job), &log);
    let mut live = spawn_live();
    wait_until("the live run to create the table", 60, || {
        table.join("_delta_log/00000000000000000000.json").exists()
    });
    let mut n = 0;
    let (mut kills, mut live_kills, mut compactions) = (0, 0, 0);
    let mut seed = 0x9E3779B97F4A7C15u64;
    for round in 0..20 {
        produce_events(&bootstrap, topic, n, 1000, 4, None);
        n += 1000;
        let mut compact = KillOnDrop::new(
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["compact", &job, "--min-files", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // A compaction of these few files takes 100-300 ms: most kills land in it.
        std::thread::sleep(Duration::from_millis(seed % 250));
        match compact.child().try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "compact failed in round {round}");
                compactions += 1;
            }
            None => {
                compact.child().kill().unwrap();
                kills += 1;
            }
        }
        // kill -9 of the live run, every round.
        live.child().kill().unwrap();
        let _ = live.child().wait();
        live_kills += 1;
        live = spawn_live();
    }
    // Everything reaches the table; a last compaction runs to its end beside the live run.
    wait_until("every record in the Delta table", 180, || {
        read_table(&py, table.to_str().unwrap(), None, "").0["deltalake"]["distinct"].as_u64()
            == Some(n as u64)
    });
    let out = sluice_ok(&["compact", &job, "--min-files", "2"]);
    // A partition folder the table does not have, or outside it, is said so (both answered
    // "nothing to compact").
    for (folder, said) in [
        ("dt=2099-01-01", "holds no files under `dt=2099-01-01/`"),
        ("../../etc", "without `.` or `..`"),
    ] {
        let err = sluice_refused(&["compact", &job, "--partition", folder]);
        assert!(err.contains(said), "{folder}: {err}");
    }
    eprintln!(
        "{live_kills} kills of the live run, {kills} of compactions, {compactions} compactions finished; last: {out}"
    );
    let seen = read_table(&py, table.to_str().unwrap(), None, "");
    seen.once(n as u64);
    let files_before = seen.0["replay"]["live_files"].as_u64().unwrap();
    assert_eq!(live_kills, 20);
    assert!(kills + compactions == 20, "{kills} + {compactions}");
    // Vacuum removes what no version names (compacted away, outputs of killed compactions)
    // once the retention has passed; the table reads the same.
    let orphans_before = seen.0["replay"]["orphans"].as_u64().unwrap();
    // A retention under an hour is refused unless asked for: a writer's file not committed
    // yet would go. A dry run only lists.
    let stderr = sluice_refused(&["vacuum", &job, "--older-than", "1s"]);
    assert!(stderr.contains("--allow-short-retention"), "{stderr}");
    let listed = sluice_ok(&["vacuum", &job, "--older-than", "1s", "--dry-run"]);
    assert!(listed.contains("would delete"), "{listed}");
    assert_eq!(
        read_table(&py, table.to_str().unwrap(), None, "").0["replay"]["orphans"],
        orphans_before
    );
    let mut deleted = 0;
    // The live run has every record and writes nothing more: the short retention is safe.
    wait_until("vacuum to delete every file no version names", 60, || {
        let out = sluice_ok(&[
            "vacuum",
            &job,
            "--older-than",
            "1s",
            "--allow-short-retention",
        ]);
        deleted += out
            .lines()
            .filter(|l| l.starts_with("deleted ") && !l.contains(" files no version "))
            .count();
        read_table(&py, table.to_str().unwrap(), None, "").0["replay"]["orphans"] == 0
    });
    assert!(orphans_before == 0 || deleted > 0);
    let seen = read_table(&py, table.to_str().unwrap(), None, "");
    seen.once(n as u64);
    assert!(seen.0["replay"]["live_files"].as_u64().unwrap() <= files_before);
    assert!(live.stop("the live run to stop", 60).success());
}

#[test]
fn partition_folders_that_need_escaping_read_back_compact_and_vacuum_locally_and_on_s3() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let hosts = ["M\u{fc}nchen: 1", "x%y", "plain"];
    let n = 3000;
    let mut text = String::new();
    for i in 0..n {
        let host = match i % 4 {
            3 => "null".to_string(),
            k => format!("{:?}", hosts[k]),
        };
        text.push_str(&format!(
            "{{\"ts\":\"2024-05-01T00:00:00Z\",\"host\":{host},\"status\":200,\"trace_id\":\"t{i}\"}}\n"
        ));
    }
    // A value too long for a partition column (the log records it for every file): a dead
    // letter, not a commit whose records grow past what is read back.
    text.push_str(&format!(
        "{{\"ts\":\"2024-05-01T00:00:00Z\",\"host\":\"{}\",\"status\":200,\"trace_id\":\"long\"}}\n",
        "h".repeat(2000)
    ));
    std::fs::write(&input, text).unwrap();
    let mut places: Vec<(String, String, Option<PathBuf>)> =
        vec![("out/".into(), String::new(), None)];
    let s3 = crate::s3_run::s3();
    if let Some(s3) = &s3 {
        let url = format!(
            "{}/{}/",
            s3.url.trim_end_matches('/'),
            crate::s3_run::unique("delta-pct")
        );
        let storage = format!(
            "[sink.storage]\nendpoint = {:?}\nallow_http = true\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
            s3.endpoint, s3.key, s3.secret
        );
        places.push((url, storage, Some(dir.path().join("s3-copy"))));
    }
    for (i, (url, storage, copy)) in places.into_iter().enumerate() {
        let sub = dir.path().join(format!("place{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let job = file_job(&sub, &input, &schema("nginx_access"), &url, &storage)
            .to_str()
            .unwrap()
            .replace("hr={ts:%H}/", "host={host}/");
        let text = std::fs::read_to_string(&job)
            .unwrap()
            .replace("template = \"hr={ts:%H}/\"", "template = \"host={host}/\"");
        std::fs::write(&job, text).unwrap();
        let ran = sluice_ok(&["run", &job]);
        assert!(
            ran.contains(&format!("{n} rows, 1 dead letter in")),
            "{ran}"
        );
        let (uri, opts) = match &s3 {
            Some(s3) if copy.is_some() => (
                url.clone(),
                serde_json::json!({
                    "AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": s3.key,
                    "AWS_SECRET_ACCESS_KEY": s3.secret, "AWS_REGION": "us-east-1",
                    "AWS_ALLOW_HTTP": "true",
                })
                .to_string(),
            ),
            _ => (sub.join("out").to_str().unwrap().to_string(), String::new()),
        };
        let check = || {
            let local = copy.as_ref().map(|c| {
                let _ = std::fs::remove_dir_all(c);
                let (_rt, dest) = crate::s3_run::bucket(
                    &url,
                    s3.as_ref().unwrap(),
                    &s3.as_ref().unwrap().endpoint,
                );
                mirror(&dest, c)
            });
            read_table(&py, &uri, local.as_deref(), &opts)
        };
        check().once(n as u64);
        // `host` is the table's partition column (the template's plain field): each file's
        // value is in the log, null included, and readers filter on it.
        let script = format!(
            "import json, os, deltalake, polars\nopts = json.loads(os.environ['DELTA_STORAGE_OPTIONS'] or '{{}}') or None\nt = deltalake.DeltaTable({uri:?}, storage_options=opts)\np = polars.read_delta({uri:?}, storage_options=opts)\nprint(json.dumps([t.metadata().partition_columns, p.filter(polars.col('host') == 'x%y').height, p.filter(polars.col('host') == 'M\\u00fcnchen: 1').height, p.get_column('host').null_count(), t.to_pyarrow_table(filters=[('host', '=', 'plain')]).num_rows]), flush=True)\n# deltalake's runtime aborts at interpreter exit after a filtered read\nos._exit(0)"
        );
        let o = Command::new(&py)
            .args(["-c", &script])
            .env("DELTA_STORAGE_OPTIONS", &opts)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            r#"[["host"], 750, 750, 750, 750]"#
        );
        let out = sluice_ok(&["compact", &job, "--min-files", "2"]);
        assert!(!out.contains("compacted 0 files"), "{out}");
        let compacted = check();
        compacted.once(n as u64);
        // Each group was swapped in by its own version: their removes pass the retention one
        // after the other.
        wait_until("vacuum to delete every compacted file", 60, || {
            sluice_ok(&[
                "vacuum",
                &job,
                "--older-than",
                "1s",
                "--allow-short-retention",
            ]);
            check().0["replay"]["orphans"] == 0
        });
        let after = check();
        after.once(n as u64);
        assert!(compacted.0["replay"]["orphans"].as_u64().unwrap() > 0);
    }
}

/// A table made without partition columns stays so when the template later names a plain
/// field: that field's long values are not refused (the log records no value for it).
#[test]
fn a_long_value_in_a_field_the_table_does_not_partition_by_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let line = |host: &str, id: &str| {
        format!("{{\"ts\":\"2024-05-01T00:00:00Z\",\"host\":\"{host}\",\"status\":200,\"trace_id\":\"{id}\"}}\n")
    };
    std::fs::write(&input, line("a", "t0")).unwrap();
    let job = file_job(dir.path(), &input, &schema("nginx_access"), "out/", "");
    let job = job.to_str().unwrap();
    sluice_ok(&["run", job]);
    let text = std::fs::read_to_string(job)
        .unwrap()
        .replace("template = \"hr={ts:%H}/\"", "template = \"host={host}/\"");
    std::fs::write(job, text).unwrap();
    std::fs::write(&input, line("a", "t0") + &line(&"h".repeat(2000), "t1")).unwrap();
    let ran = sluice_ok(&["run", job]);
    assert!(ran.contains("1 row, 0 dead letters"), "{ran}");
}

/// A template past what a table's commit records hold (17 partition columns, or one named in
/// 101 bytes) is refused by `validate` as by `run`, before a table is made. `validate` called
/// such a job valid.
#[test]
fn partition_columns_past_a_tables_limits_are_refused_by_validate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, "{}\n").unwrap();
    let long = "n".repeat(101);
    let names: Vec<String> = (0..17)
        .map(|i| format!("f{i:02}"))
        .chain([long.clone()])
        .collect();
    let fields: String = names
        .iter()
        .map(|n| format!("[[fields]]\nname = \"{n}\"\ntype = \"string\"\n"))
        .collect();
    let schema = dir.path().join("wide.toml");
    std::fs::write(&schema, format!("name = \"wide\"\n{fields}")).unwrap();
    let job = file_job(dir.path(), &input, &schema, "out/", "");
    let text = std::fs::read_to_string(&job).unwrap();
    for (template, says) in [
        (
            names[..17]
                .iter()
                .map(|n| format!("{n}={{{n}}}/"))
                .collect::<String>(),
            "gives 17 partition columns",
        ),
        (format!("{long}={{{long}}}/"), "has a name of 101 bytes"),
    ] {
        let wide = text.replace("hr={ts:%H}/", &template);
        assert_ne!(wide, text);
        std::fs::write(&job, wide).unwrap();
        let job = job.to_str().unwrap();
        for verb in ["validate", "run"] {
            let err = sluice_refused(&[verb, job]);
            assert!(err.contains(says), "{verb} {template}: {err}");
        }
        assert!(!dir.path().join("out/_delta_log").exists());
    }
}

/// A job without `table = "delta"` (an older job file, a second process) on a destination
/// that holds a table: `run` and `validate` refuse it, naming the table, and nothing is
/// written. Before, it committed plain files there, which stopped the table's writers at
/// their next catch-up (files without partition values).
#[test]
fn a_job_without_a_table_is_refused_where_a_table_is() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        "{\"ts\":\"2024-05-01T00:00:00Z\",\"host\":\"a\",\"status\":200,\"trace_id\":\"t0\"}\n",
    )
    .unwrap();
    let job = file_job(dir.path(), &input, &schema("nginx_access"), "out/", "");
    let job = job.to_str().unwrap();
    sluice_ok(&["run", job]);
    // An older job file: no table, and a schema of one field more (recorded, every later
    // start of the table's job would be checked against it).
    let wider = dir.path().join("wider.toml");
    let fields = std::fs::read_to_string(schema("nginx_access")).unwrap();
    std::fs::write(
        &wider,
        fields + "\n[[fields]]\nname = \"extra\"\ntype = \"string\"\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(job).unwrap();
    let text = text.replace("table = \"delta\"\n", "").replace(
        &format!("{:?}", schema("nginx_access").display().to_string()),
        &format!("{:?}", wider.display().to_string()),
    );
    assert!(text.contains("wider.toml"), "{text}");
    std::fs::write(job, text).unwrap();
    let files = || files_under(&dir.path().join("out"), false).len();
    let before = files();
    for verb in ["validate", "run"] {
        let err = sluice_refused(&[verb, job]);
        assert!(err.contains("holds a Delta table"), "{verb}: {err}");
    }
    assert_eq!(
        files(),
        before,
        "the refused run wrote files (its schema's record)"
    );
}

/// `vacuum` and `compact` on a job that writes plain files (no `table = "delta"`, say after
/// it was switched from one): refused before anything is read or deleted. A vacuum took its
/// committed files for files no table version names and deleted them once their records
/// were pruned.
#[test]
fn vacuum_and_compact_of_a_job_without_a_table_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("_delta_log")).unwrap();
    std::fs::write(out.join("kept.parquet"), b"data").unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"plain\"\n[source]\nkind = \"file\"\npaths = [\"in.jsonl\"]\n[repo]\nschema = {:?}\n[sink]\nurl = {:?}\n",
            schema("nginx_access"),
            out.to_str().unwrap()
        ),
    )
    .unwrap();
    let job = job.to_str().unwrap();
    for args in [
        &["vacuum", job, "--older-than", "1h"][..],
        &["compact", job][..],
    ] {
        let err = sluice_refused(args);
        assert!(err.contains("writes plain files"), "{args:?}: {err}");
    }
    assert!(out.join("kept.parquet").exists());
}

/// A vacuum deletes only the table's files. Another job's plain files in a folder inside the
/// table (its own destination, with its own `_sluice/`) are kept; another job having committed
/// plain files into the table's own folder refuses the vacuum. Before, a vacuum deleted both (all
/// of the nested job's files, and the other job's once its records were pruned): committed
/// output its checkpoints say is exported, lost for good.
#[test]
fn vacuum_keeps_the_files_of_other_jobs_inside_the_table_folder() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let mut text = String::new();
    for i in 0..300 {
        text.push_str(&format!(
            "{{\"ts\":\"2024-05-01T00:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"t{i}\"}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out");
    let table_dir = dir.path().join("table");
    std::fs::create_dir_all(&table_dir).unwrap();
    let job = file_job(
        &table_dir,
        &input,
        &schema("nginx_access"),
        out.to_str().unwrap(),
        "",
    );
    run_ok(&job);
    let plain = |name: &str, url: &Path| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("job.toml");
        std::fs::write(
            &p,
            format!(
                "[job]\nname = {name:?}\nstate_dir = \"state\"\n[source]\nkind = \"file\"\npaths = [{:?}]\n[repo]\nschema = {:?}\n[sink]\nurl = {:?}\n",
                input.to_str().unwrap(),
                schema("nginx_access"),
                url.to_str().unwrap()
            ),
        )
        .unwrap();
        run_ok(&p);
    };
    let parquet_under = |folder: &Path| -> Vec<PathBuf> {
        files_under(folder, true)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect()
    };
    plain("nested", &out.join("orders"));
    let nested = parquet_under(&out.join("orders"));
    assert!(!nested.is_empty());
    let job = job.to_str().unwrap();
    let planned = sluice_ok(&["vacuum", job, "--older-than", "1ms", "--dry-run"]);
    assert!(!planned.contains("orders/"), "{planned}");
    assert!(
        planned.contains("kept 1 in folders inside the table"),
        "{planned}"
    );
    sluice_ok(&[
        "vacuum",
        job,
        "--older-than",
        "1ms",
        "--allow-short-retention",
    ]);
    assert!(
        nested.iter().all(|f| f.exists()),
        "the nested job's files were deleted"
    );

    let before = parquet_under(&out);
    // A job without a table is refused in the table's folder; one that committed there
    // before the table was made (or an older version, which did not refuse) is as if it ran
    // with the log out of sight.
    let hidden = dir.path().join("hidden_log");
    std::fs::rename(out.join("_delta_log"), &hidden).unwrap();
    plain("beside", &out);
    std::fs::rename(&hidden, out.join("_delta_log")).unwrap();
    let again = sluice(&["run", dir.path().join("beside/job.toml").to_str().unwrap()]);
    let refused = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && refused.contains("holds a Delta table"),
        "{refused}"
    );
    let beside: Vec<PathBuf> = parquet_under(&out)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert!(!beside.is_empty());
    let err = sluice_refused(&[
        "vacuum",
        job,
        "--older-than",
        "1ms",
        "--allow-short-retention",
    ]);
    assert!(
        err.contains("job `beside` commits files into this folder"),
        "{err}"
    );
    assert!(
        beside.iter().all(|f| f.exists()),
        "the other job's files were deleted"
    );
}

/// Two host values of 117 bytes whose 64-bit FNV-1a hashes meet (found by a cycle search):
/// their cut folder names are one (`host=vvv…~a2122bb8577006c0`). Each value's rows still
/// read back with their own value: they are in files of their own in that folder, each with
/// its values in the log. (A file took its first row's values: the other value's rows read
/// back with it, in every reader that takes values from the log.)
#[test]
fn rows_of_two_long_values_whose_folder_names_meet_keep_their_own_values() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prefix = "v".repeat(101);
    let (one, two) = (
        format!("{prefix}342def6975714adc"),
        format!("{prefix}4dda46863aad7c83"),
    );
    let input = dir.path().join("events.jsonl");
    let mut text = String::new();
    for i in 0..600 {
        let (host, id) = if i % 3 == 0 {
            (&two, format!("b{i}"))
        } else {
            (&one, format!("a{i}"))
        };
        text.push_str(&format!(
            "{{\"ts\":\"2024-05-01T00:00:00Z\",\"host\":\"{host}\",\"status\":200,\"trace_id\":\"{id}\"}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    let job = file_job(dir.path(), &input, &schema("nginx_access"), "out/", "");
    let body = std::fs::read_to_string(&job)
        .unwrap()
        .replace("template = \"hr={ts:%H}/\"", "template = \"host={host}/\"");
    std::fs::write(&job, body).unwrap();
    let ran = sluice_ok(&["run", job.to_str().unwrap()]);
    assert!(ran.contains("600 rows, 0 dead letters"), "{ran}");
    let out = dir.path().join("out");
    let folders: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("host="))
        .collect();
    assert_eq!(folders.len(), 1, "the hashes meet: one folder, {folders:?}");
    let script = format!(
        "import json, os, deltalake\nt = deltalake.DeltaTable({:?}).to_pyarrow_table().to_pylist()\nprint(json.dumps([sum(1 for r in t if r['host'] == {one:?} and r['trace_id'][0] == 'a'), sum(1 for r in t if r['host'] == {two:?} and r['trace_id'][0] == 'b'), len(t)]), flush=True)\n# the readers' threads may abort the interpreter's teardown\nos._exit(0)",
        out.display().to_string()
    );
    let o = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[400, 200, 600]");
}

/// A stage's timestamps in seconds and in nanoseconds, in a Delta table, which declares
/// every timestamp in microseconds: the files hold them in microseconds (before, a plain
/// int64 for seconds, which readers of the table's type refuse or misread, and nanoseconds,
/// which Spark refuses), at the same instants, and compaction keeps them so.
#[test]
fn timestamps_in_seconds_and_nanoseconds_are_written_in_microseconds_in_a_table() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let text: String = (0..40)
        .map(|i| {
            format!(
                "{{\"ts\":\"2024-05-01T00:00:{:02}.123Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"t{i}\"}}\n",
                i % 60
            )
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let job = file_job(dir.path(), &input, &schema("nginx_access"), "out/", "");
    let body = std::fs::read_to_string(&job).unwrap().replace(
        "[sink]\n",
        "[[repo.stages]]\nname = \"units\"\nselect = [\"trace_id\", \"ts\", \
         \"arrow_cast(ts, 'Timestamp(Second, Some(\\\"UTC\\\"))') AS ts_s\", \
         \"arrow_cast(ts, 'Timestamp(Nanosecond, Some(\\\"UTC\\\"))') AS ts_n\"]\n[sink]\n",
    );
    std::fs::write(&job, body.replace("max_rows = 700", "max_rows = 10")).unwrap();
    let shown = sluice_ok(&["schema", "show", "--job", job.to_str().unwrap()]);
    let output = shown.split("output (").nth(1).unwrap_or_default();
    for name in ["ts_s", "ts_n"] {
        let line = output
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default();
        assert!(line.contains("µs"), "{name}: {shown}");
    }
    let ran = sluice_ok(&["run", job.to_str().unwrap()]);
    assert!(ran.contains("40 rows, 0 dead letters"), "{ran}");
    let out = dir.path().join("out");
    let script = format!(
        r#"
import glob, json, os, deltalake, pyarrow.parquet as pq
units = set()
for f in glob.glob({out:?} + "/**/*.parquet", recursive=True):
    s = pq.ParquetFile(f).schema
    for name in ("ts_s", "ts_n"):
        units.add(str(s.column(s.names.index(name)).logical_type))
rows = deltalake.DeltaTable({out:?}).to_pyarrow_table().to_pylist()
ok = all(r["ts_s"].timestamp() == int(r["ts"].timestamp()) and r["ts_n"] == r["ts"] for r in rows)
print(json.dumps([sorted(units), len(rows), ok]), flush=True)
# Past the answer: the readers' threads have been seen to abort the interpreter's teardown
# ("terminate called without an active exception").
os._exit(0)
"#,
        out = out.display().to_string()
    );
    let read = |what: &str, n: u64| {
        let o = Command::new(&py).args(["-c", &script]).output().unwrap();
        assert!(
            o.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let units = v[0].as_array().unwrap().clone();
        assert!(
            !units.is_empty()
                && units
                    .iter()
                    .all(|u| u.as_str().unwrap().contains("microseconds")),
            "{what}: {v}"
        );
        assert_eq!(v[1], n, "{what}: {v}");
        assert_eq!(v[2], true, "{what}: {v}");
    };
    read("as written", 40);
    let compacted = sluice_ok(&["compact", job.to_str().unwrap()]);
    assert!(!compacted.contains("skipped"), "{compacted}");
    read("compacted", 40);
    // The stage casts to microseconds itself now: the files are the same, so the schema is
    // (before, the recorded seconds and nanoseconds refused it as a type change).
    let body = std::fs::read_to_string(&job)
        .unwrap()
        .replace("Timestamp(Second,", "Timestamp(Microsecond,")
        .replace("Timestamp(Nanosecond,", "Timestamp(Microsecond,");
    std::fs::write(&job, body).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        b"{\"ts\":\"2024-05-01T00:01:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"t40\"}\n",
    )
    .unwrap();
    let ran = sluice_ok(&["run", job.to_str().unwrap()]);
    assert!(ran.contains("1 row, 0 dead letters"), "{ran}");
    read("after the stage's own cast", 41);
}
