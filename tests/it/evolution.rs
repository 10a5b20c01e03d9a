//! Schema evolution across restarts: a field added to the schema appears in new files, old and
//! new files read together by DuckDB with `union_by_name`; a type change is refused before any
//! data moves; unknown input fields per the schema's `unknown_fields`.

use std::path::Path;
use std::process::Command;

use crate::admin::http;
use crate::helpers::*;
use crate::kafka::wait_log;
use crate::push::http_client::Client;
use crate::push::{long_files, push_job, start};

const V1: &str = "name = \"pairs\"\n[[fields]]\nname = \"trace_id\"\ntype = \"string\"\nnullable = false\n[[fields]]\nname = \"n\"\ntype = \"int64\"\n";

fn file_job(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        r#"
[job]
name = "evo"
state_dir = "state"
[source]
kind = "file"
paths = ["in/1.jsonl", "in/2.jsonl"]
[repo]
schema = "pairs.toml"
[sink]
url = "file://out"
format = "parquet"
[sink.partition]
template = "part/"
"#,
    )
    .unwrap();
    job
}

#[test]
fn a_new_nullable_field_reaches_new_files_and_old_and_new_read_together() {
    let dir = tempfile::tempdir().unwrap();
    let job = file_job(dir.path());
    let schema = dir.path().join("pairs.toml");
    std::fs::write(&schema, V1).unwrap();
    std::fs::write(
        dir.path().join("in/1.jsonl"),
        "{\"trace_id\":\"a\",\"n\":1,\"note\":\"x\"}\n{\"trace_id\":\"b\",\"n\":2}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("in/2.jsonl"), "").unwrap();
    sluice_ok(&["run", job.to_str().unwrap()]);

    // The schema gains a nullable field; more input arrives; the job runs again.
    std::fs::write(
        &schema,
        format!("{V1}[[fields]]\nname = \"note\"\ntype = \"string\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("in/2.jsonl"),
        "{\"trace_id\":\"c\",\"n\":3,\"note\":\"y\"}\n",
    )
    .unwrap();
    let v = sluice_ok(&["validate", job.to_str().unwrap()]);
    assert!(v.contains("field `note` (Utf8) is new"), "{v}");
    let out = sluice(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("the schema changed; new files carry it"),
        "{log}"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("out/part"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 2, "one file per run");

    // A type change is refused before any data moves, by validate and by run.
    let retyped = V1.replace("type = \"int64\"", "type = \"string\"");
    std::fs::write(
        &schema,
        format!("{retyped}[[fields]]\nname = \"note\"\ntype = \"string\"\n"),
    )
    .unwrap();
    for cmd in ["validate", "run"] {
        let out = sluice(&[cmd, job.to_str().unwrap()]);
        assert!(!out.status.success(), "{cmd} accepted a type change");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("field `n` is Int64 in the files already written and Utf8 now"),
            "{cmd}: {err}"
        );
    }

    let Some(rows) = duckdb_rows(&format!(
        "select trace_id, n, note from read_parquet('{}/out/part/*.parquet', union_by_name=true) order by trace_id",
        dir.path().display()
    )) else {
        return;
    };
    assert_eq!(
        rows, "[\"a\", 1, null]\n[\"b\", 2, null]\n[\"c\", 3, \"y\"]\n",
        "the first run ignored `note`; the second carries it"
    );
}

#[test]
fn unknown_fields_become_dead_letters_or_stop_the_task_as_the_schema_says() {
    let dir = tempfile::tempdir().unwrap();
    let job = file_job(dir.path());
    let schema = dir.path().join("pairs.toml");
    std::fs::write(&schema, format!("unknown_fields = \"dead_letter\"\n{V1}")).unwrap();
    std::fs::write(
        dir.path().join("in/1.jsonl"),
        "{\"trace_id\":\"a\",\"n\":1}\n{\"trace_id\":\"b\",\"n\":2,\"extra\":{\"deep\":1}}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("in/2.jsonl"), "").unwrap();
    let out = sluice_ok(&["run", job.to_str().unwrap()]);
    assert!(out.contains("1 row, 1 dead letter in"), "{out}");
    let dead = std::fs::read_dir(dir.path().join("out/_dead_letters/pairs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(dead).unwrap();
    assert!(text.contains("unknown field `extra`"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let job = file_job(dir.path());
    let schema = dir.path().join("pairs.toml");
    std::fs::write(&schema, format!("unknown_fields = \"error\"\n{V1}")).unwrap();
    std::fs::write(
        dir.path().join("in/1.jsonl"),
        "{\"trace_id\":\"a\",\"n\":1}\n{\"trace_id\":\"b\",\"extra\":2}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("in/2.jsonl"), "").unwrap();
    let out = sluice(&["run", job.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown_fields = \"error\"") && err.contains("unknown field `extra`"),
        "{err}"
    );
    assert!(
        trace_ids(&dir.path().join("out")).is_empty(),
        "nothing was committed"
    );
}

#[test]
fn sighup_reloads_a_compatible_schema_and_keeps_running_on_an_incompatible_one() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("pairs.toml");
    std::fs::write(&schema, V1).unwrap();
    let job = long_files(push_job(dir.path(), "memory", "", ""));
    let text = std::fs::read_to_string(&job).unwrap().replace(
        &crate::helpers::schema("nginx_access").display().to_string(),
        &schema.display().to_string(),
    );
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("run.log");
    let (child, addr) = start(&job, &log);
    let path = "/v1/repos/pairs/data";
    let push = |addr: &str, body: &str| {
        let (code, _, b) = Client::new(addr).post(path, "", body.as_bytes()).unwrap();
        assert_eq!(code, 200, "{b}");
    };
    push(
        &addr,
        "{\"trace_id\":\"a\",\"n\":1,\"note\":\"x\"}\n{\"trace_id\":\"b\",\"n\":2}\n",
    );

    // A nullable field is added; SIGHUP: open files are committed, the channel spilled and
    // restored, and the task runs on with the new schema.
    std::fs::write(
        &schema,
        format!("{V1}[[fields]]\nname = \"note\"\ntype = \"string\"\n"),
    )
    .unwrap();
    let hup = |child: &std::process::Child| {
        assert!(Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
    };
    hup(&child);
    let text = wait_log(&log, "to=Running", 2, 30);
    assert!(text.contains("restarting the task with them"), "{text}");
    // The listener stays up across the reload, at the same address.
    assert_eq!(text.matches("admin API listening").count(), 1, "{text}");
    let addr = logged_addr(&log, "admin API listening").expect("the listener");
    push(&addr, "{\"trace_id\":\"c\",\"n\":3,\"note\":\"y\"}\n");

    // An incompatible change is refused; the task runs on with the schema it has.
    std::fs::write(
        &schema,
        format!(
            "{}[[fields]]\nname = \"note\"\ntype = \"string\"\n",
            V1.replace("int64", "string")
        ),
    )
    .unwrap();
    hup(&child);
    let text = wait_log(&log, "not reloaded", 1, 30);
    assert!(
        text.contains("field `n` is Int64 in the files already written"),
        "{text}"
    );
    push(&addr, "{\"trace_id\":\"d\",\"n\":4,\"note\":\"z\"}\n");
    let (code, body) = http(&addr, "POST", "/v1/tasks/pairs/stop", None);
    assert_eq!(code, 200, "{body}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());

    let Some(rows) = duckdb_rows(&format!(
        "select trace_id, n, note from read_parquet('{}/out/**/*.parquet', union_by_name=true) order by trace_id",
        dir.path().display()
    )) else {
        return;
    };
    assert_eq!(
        rows,
        "[\"a\", 1, null]\n[\"b\", 2, null]\n[\"c\", 3, \"y\"]\n[\"d\", 4, \"z\"]\n"
    );
}

/// Two processes of one job start at once with different types for one new field: each reads
/// the recorded schema, finds its own change allowed, and records it. The one that records
/// second must see the first's record and refuse, or the files hold two types for one column.
#[test]
fn two_starts_adding_one_field_with_two_types_cannot_both_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"trace_id\":\"a\",\"n\":1,\"c\":\"7\"}\n").unwrap();
    // One job, two hosts: each its own state folder and schema file, one destination.
    let host = |name: &str, schema: String| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("pairs.toml"), schema).unwrap();
        let job = d.join("job.toml");
        std::fs::write(
            &job,
            format!(
                "[job]\nname = \"evo\"\nstate_dir = \"state\"\n[source]\nkind = \"file\"\n\
                 paths = [{input:?}]\n[repo]\nschema = \"pairs.toml\"\n[sink]\n\
                 url = \"file://{}\"\nformat = \"parquet\"\n",
                out.display()
            ),
        )
        .unwrap();
        job
    };
    // The files so far have no `c`.
    sluice_ok(&["run", host("first", V1.into()).to_str().unwrap()]);
    let with_c = |t: &str| format!("{V1}[[fields]]\nname = \"c\"\ntype = \"{t}\"\n");
    let (as_int, as_text) = (host("a", with_c("int64")), host("b", with_c("string")));
    let hold = dir.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let log = dir.path().join("a.log");
    let fault = format!("hold_schema_record:@{}", hold.display());
    let a = crate::kafka::spawn_with("run", &as_int, &log, &[("SLUICE_FAULT", &fault)]);
    let mut a = KillOnDrop::new(a);
    let text = wait_log(&log, "SLUICE_FAULT: holding at hold_schema_record", 1, 60);
    assert!(text.contains("holding at hold_schema_record"), "{text}");
    // While `a` holds between its read and its record, `b` records `c` as a string.
    sluice_ok(&["run", as_text.to_str().unwrap()]);
    std::fs::remove_file(&hold).unwrap();
    let status = wait_exit(a.child(), "the held start to end", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success(),
        "a start recorded `c` as int64 over a record of it as a string: {text}"
    );
    assert!(
        text.contains("field `c` is Utf8 in the files already written and Int64 now"),
        "{text}"
    );
}

/// A reload that moves the state folder is refused: the stop before a reload spills the
/// channel there for the next task, and a memory push repo's acknowledged records would be
/// left in the old folder, read by nothing (the new folder not even locked).
#[test]
fn sighup_refuses_a_job_file_that_moves_the_state_folder() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "memory", "", "");
    let log = dir.path().join("run.log");
    let (child, addr) = start(&job, &log);
    let mut child = child;
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("state_dir = \"state\"", "state_dir = \"elsewhere\"");
    std::fs::write(&job, text).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &child.child().id().to_string()])
        .status()
        .unwrap()
        .success());
    let text = wait_log(&log, "not reloaded", 1, 30);
    assert!(
        text.contains("job.state_dir changed") && text.contains("elsewhere"),
        "{text}"
    );
    let (code, body) = http(&addr, "POST", "/v1/tasks/nginx_access/stop", None);
    assert_eq!(code, 200, "{body}");
    assert!(wait_exit(child.child(), "the run to stop", 60).success());
}

/// A stop spills the channel; the schema gains a nullable field the records already hold
/// before the next start. The spilled batches were decoded without it: restored by name, their
/// rows had it null. A file source reads them again, with the new schema.
#[test]
fn a_spill_decoded_before_a_field_was_added_is_read_again_with_it() {
    use crate::run::{finish, gzip_json_rows, job_file, start, stop_until_spilled, write_events};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    write_events(&input, 120_000, 0);
    let full = std::fs::read_to_string(schema("nginx_access")).unwrap();
    let at = full
        .find("[[fields]]\nname = \"cache_hit\"")
        .expect("the field");
    let end = full[at + 1..]
        .find("[[fields]]")
        .map_or(full.len(), |e| at + 1 + e);
    let without = format!("{}{}", &full[..at], &full[end..]);
    let schema_file = dir.path().join("events.toml");
    std::fs::write(&schema_file, &without).unwrap();
    let job = job_file(
        dir.path(),
        &[input],
        "format = \"json\"\ncompression = \"gzip:9\"\nworkers = 1\n[sink.rotation]\nmax_rows = 20000\n",
    );
    let text = std::fs::read_to_string(&job).unwrap().replace(
        &format!("{:?}", schema("nginx_access").display().to_string()),
        &format!("{:?}", schema_file.display().to_string()),
    );
    std::fs::write(&job, text).unwrap();
    let (spilled, _) = stop_until_spilled(dir.path(), &job);
    assert!(
        spilled,
        "no stop left a spill: the test did not exercise a restore"
    );
    let before: std::collections::HashSet<String> = gzip_json_rows(&dir.path().join("out"))
        .iter()
        .map(|v| v["trace_id"].as_str().unwrap().to_string())
        .collect();
    std::fs::write(&schema_file, &full).unwrap();
    let (ok, log) = finish(start(&job, &[]));
    assert!(ok, "{log}");
    let rows = gzip_json_rows(&dir.path().join("out"));
    assert_eq!(rows.len(), 120_000, "every record once");
    let without_field: Vec<_> = rows
        .iter()
        .filter(|v| !before.contains(v["trace_id"].as_str().unwrap()))
        .filter(|v| v["cache_hit"].is_null())
        .take(5)
        .collect();
    assert!(
        without_field.is_empty(),
        "rows read after the field was added lack it: {without_field:?}"
    );
}

/// A job writing CSV without a header (read by position) whose schema gains a field between
/// two others is refused before any data moves; with a header the same change runs. Before,
/// it was accepted: the old files read `trace_id,n`, the new ones `trace_id,note,n`, and a
/// reader of the folder took every `note` for an `n`.
#[test]
fn a_field_inserted_into_headerless_csv_output_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = file_job(dir.path());
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("format = \"parquet\"", "format = \"csv\"\nheader = false");
    std::fs::write(&job, text).unwrap();
    let schema = dir.path().join("pairs.toml");
    std::fs::write(&schema, V1).unwrap();
    std::fs::write(
        dir.path().join("in/1.jsonl"),
        "{\"trace_id\":\"a\",\"n\":1}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("in/2.jsonl"), "").unwrap();
    let jobs = job.to_str().unwrap();
    sluice_ok(&["run", jobs]);
    let inserted = V1.replace(
        "[[fields]]\nname = \"n\"",
        "[[fields]]\nname = \"note\"\ntype = \"string\"\n[[fields]]\nname = \"n\"",
    );
    assert_ne!(inserted, V1);
    std::fs::write(&schema, inserted).unwrap();
    let err = sluice_refused(&["run", jobs]);
    assert!(err.contains("read by position"), "{err}");
    let v = sluice(&["validate", jobs]);
    let (said, err) = (
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr),
    );
    assert!(
        !v.status.success() && err.contains("read by position"),
        "{err}"
    );
    assert!(
        !said.contains("is valid"),
        "validate called it valid first: {said}"
    );
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("header = false", "header = true");
    std::fs::write(&job, text).unwrap();
    sluice_ok(&["run", jobs]);
}
