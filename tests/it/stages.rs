//! Stages in a job: filter + select on the benchmark events, compared row by row with the same
//! SQL run by DuckDB over the input; `on_error` for rows a stage fails on; planning errors
//! reported by `validate`; `schema show --job`; hostile values in stage functions and dates,
//! times and zones a stage computes that no reader could take.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::abuse::dead_letter_lines;
use crate::helpers::*;

fn job(dir: &Path, input: &Path, repo: &str) -> PathBuf {
    job_sink(dir, input, repo, "")
}

/// [`job`] with more of the `[sink]` section (`sink`, after its `format`).
fn job_sink(dir: &Path, input: &Path, repo: &str, sink: &str) -> PathBuf {
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"
[job]
name = "stages"
state_dir = "state"
[source]
kind = "file"
paths = ["{}"]
[repo]
schema = "{}"
{repo}
[sink]
url = "file://out"
{format}
{sink}
"#,
            input.display(),
            schema("nginx_access").display(),
            // The sink's own lines may name another format.
            format = if sink.contains("format =") {
                ""
            } else {
                "format = \"parquet\""
            },
        ),
    )
    .unwrap();
    job
}

/// Writes one event per (trace id, bytes): the field the stages under test compute from.
fn write_events(input: &Path, events: &[(&str, i64)]) {
    let lines: String = events
        .iter()
        .map(|(id, bytes)| {
            format!("{{\"ts\":\"2024-05-01T10:00:00Z\",\"path\":\"/\",\"status\":200,\"bytes\":{bytes},\"trace_id\":\"{id}\"}}\n")
        })
        .collect();
    std::fs::write(input, lines).unwrap();
}

const STAGES: &str = r#"
[[repo.stages]]
name = "errors"
filter = "status >= 400 AND region IN ('eu-west-1', 'us-east-1')"

[[repo.stages]]
name = "shape"
select = [
    "trace_id",
    "ts",
    "date_trunc('hour', ts) AS hour",
    "lower(method) AS method",
    "status",
    "coalesce(user_id, -1) AS user_id",
    "upper(region) AS region",
]
"#;

#[test]
fn a_filter_and_select_job_matches_the_same_sql_in_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("nginx_access.jsonl");
    let job = job(dir.path(), &input, STAGES);
    let shown = sluice_ok(&["schema", "show", "--job", job.to_str().unwrap()]);
    assert!(
        shown.contains("after stage `shape`:") && shown.contains("  hour: Timestamp"),
        "{shown}"
    );
    let out = sluice_ok(&["run", job.to_str().unwrap()]);
    assert!(out.contains("read its input to the end"), "{out}");
    let ids = trace_ids(&dir.path().join("out"));
    assert!(
        ids.len() > 50 && ids.len() < 2000,
        "the filter kept {} of 2000",
        ids.len()
    );

    let Some(py) = python() else { return };
    let script = format!(
        r#"
import duckdb
ours = duckdb.sql("""select trace_id, epoch_ms(ts), epoch_ms(hour), method, status, user_id, region
    from read_parquet('{out}/**/*.parquet') order by trace_id""").fetchall()
theirs = duckdb.sql("""select trace_id, epoch_ms(t), epoch_ms(date_trunc('hour', t)), lower(method), status,
    coalesce(user_id, -1), upper(region)
    from (select *, cast(ts as timestamp) as t from read_json_auto('{input}'))
    where status >= 400 and region in ('eu-west-1', 'us-east-1') order by trace_id""").fetchall()
assert len(ours) == len(theirs), (len(ours), len(theirs))
for a, b in zip(ours, theirs):
    assert a == b, (a, b)
print(len(ours))
"#,
        out = dir.path().join("out").display(),
        input = input.display()
    );
    let out = Command::new(py).args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        ids.len().to_string()
    );
}

#[test]
fn rows_a_stage_fails_on_follow_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let line = |id: &str, path: &str| {
        format!("{{\"ts\":\"2024-05-01T10:00:00Z\",\"path\":\"{path}\",\"status\":200,\"trace_id\":\"{id}\"}}\n")
    };
    std::fs::write(
        &input,
        [line("a", "12"), line("b", "/x"), line("c", "34")].concat(),
    )
    .unwrap();
    let stage =
        "[[repo.stages]]\nname = \"num\"\nselect = [\"trace_id\", \"CAST(path AS BIGINT) AS n\"]\n";

    let job = job(dir.path(), &input, stage);
    let out = sluice_ok(&["run", job.to_str().unwrap()]);
    assert!(out.contains("2 rows, 1 dead letter in"), "{out}");
    let dl = std::fs::read_dir(dir.path().join("out/_dead_letters/nginx_access"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(dl).unwrap();
    assert!(
        text.contains("stage `num`") && text.contains("\\\"trace_id\\\":\\\"b\\\""),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let job = self::job(dir.path(), &input, &format!("on_error = \"drop\"\n{stage}"));
    let out = sluice_ok(&["run", job.to_str().unwrap()]);
    assert!(out.contains("2 rows, 0 dead letters"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let job = self::job(dir.path(), &input, &format!("on_error = \"fail\"\n{stage}"));
    let out = sluice(&["run", job.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stage `num`") && err.contains("on_error = \"fail\""),
        "{err}"
    );
    assert!(
        trace_ids(&dir.path().join("out")).is_empty(),
        "nothing committed"
    );
}

#[test]
fn validate_names_the_stage_and_column_of_a_planning_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("nginx_access.jsonl");
    let job = job(
        dir.path(),
        &input,
        "[[repo.stages]]\nfilter = \"status > 1\"\n[[repo.stages]]\nname = \"cols\"\nselect = [\"no_such_column AS x\"]\n",
    );
    let out = sluice(&["validate", job.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stage 2 (`cols`)") && err.contains("no_such_column"),
        "{err}"
    );
}

/// `validate` tells every problem of a job, not the first: a missing input, a template
/// naming no field and a URL of an unknown scheme, in one run. Before, each was found only
/// once the one before it was mended (three runs).
#[test]
fn validate_tells_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_sink(
        dir.path(),
        &dir.path().join("missing.jsonl"),
        "",
        "[sink.partition]\ntemplate = \"{regoin}/\"\n",
    );
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("url = \"file://out\"", "url = \"s4://bucket/x\"");
    std::fs::write(&job, text).unwrap();
    let out = sluice(&["validate", job.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for said in [
        "3 problems",
        "no such file",
        "unknown field `regoin`",
        "scheme `s4`",
    ] {
        assert!(err.contains(said), "{said}: {err}");
    }
}

#[test]
fn convert_takes_stages_and_says_what_they_removed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "convert",
            "--schema",
            schema("nginx_access").to_str().unwrap(),
            "--input",
            fixture("nginx_access.jsonl").to_str().unwrap(),
            "--output",
            &format!("{}/", out.display()),
            "--overwrite",
            "--quiet",
            "--filter",
            "status >= 500",
            "--select",
            "trace_id",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let plain = args(&[]);
    let stdout = sluice_ok(&plain.iter().map(String::as_str).collect::<Vec<_>>());
    let kept = trace_ids(&out).len();
    assert!(kept > 0 && kept < 2000);
    assert!(
        stdout.contains(&format!(
            "2000 records: {kept} rows, 0 dead letters, {} filtered out",
            2000 - kept
        )),
        "{stdout}"
    );
    let dropping = args(&[
        "--select",
        "CAST(path AS BIGINT) AS p",
        "--on-error",
        "drop",
    ]);
    let stdout = sluice_ok(&dropping.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        stdout.contains(&format!("{kept} dropped by a stage")),
        "{stdout}"
    );
}

/// A timestamp a stage computes outside years 1 to 9999 is that row's dead letter. Before, a
/// path template naming it failed the whole write at every retry: the partition stopped for
/// good on one record. A float DataFusion saturated (`to_timestamp` of one past the range of
/// nanoseconds) is one too (it was written as year 2262). The stage's types are kept.
#[test]
fn a_stage_timestamp_out_of_range_is_a_dead_letter_not_a_stuck_partition() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    write_events(
        &input,
        &[
            ("a", 1_714_521_600),
            ("b", 10_000_000_000_000),
            ("c", 1_714_608_000),
            ("d", 9_000_000_000_000_000_000),
        ],
    );
    let stage = "[[repo.stages]]\nname = \"when\"\n\
                 select = [\"trace_id\", \"to_timestamp(CAST(bytes AS DOUBLE) / 10000.0) AS f\", \
                 \"to_timestamp_seconds(bytes) AS at\"]\n";
    let job = job_sink(
        dir.path(),
        &input,
        stage,
        "[sink.partition]\ntemplate = \"y={at:%Y}/\"",
    );
    let (status, err) = sluice_within(&["run", job.to_str().unwrap()], 120);
    assert!(status.success(), "{err}");
    let out = dir.path().join("out");
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains_key("a") && ids.contains_key("c"), "{ids:?}");
    let dl = files_under(&out.join("_dead_letters"), true);
    let text: String = dl
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        text.contains(
            "stage `when`: field `at`: timestamp value 10000000000000 (s) is out of range"
        ) && text.contains("\\\"trace_id\\\":\\\"b\\\""),
        "{text}"
    );
    assert!(
        text.contains(
            "stage `when`: field `f`: timestamp value 9223372036854775807 (ns) is at the end"
        ) && text.contains("\\\"trace_id\\\":\\\"d\\\""),
        "{text}"
    );
    let file = files_under(&out, true)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap();
    let types: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        ["trace_id Utf8", "f Timestamp(ns)", "at Timestamp(s)"]
    );
}

/// A stage's date or timestamp out of range inside a struct fails its row like a top-level
/// one: before, it was written (readers fail on the file; JSON output held arrow-json's
/// "ERROR: Cast error" text in its place). A row a `CASE` leaves out (its struct null) is
/// kept. (Values hidden under nulls are the unit tests' in `stage/temporal_tests.rs`: DataFusion
/// does not compute a `CASE` branch for the rows it leaves out.)
#[test]
fn a_stage_timestamp_out_of_range_inside_a_struct_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    write_events(
        &input,
        &[
            ("a", 1_714_521_600),
            ("b", 10_000_000_000_000),
            ("c", 1_714_608_000),
            ("e", 10_000_000_000_000),
        ],
    );
    let stage = "[[repo.stages]]\nname = \"nest\"\n\
                 select = [\"trace_id\", \"CASE WHEN trace_id <> 'e' THEN \
                 named_struct('at', to_timestamp_millis(bytes * 1000)) END AS s\"]\n";
    let job = job_sink(dir.path(), &input, stage, "");
    let (status, err) = sluice_within(&["run", job.to_str().unwrap()], 120);
    assert!(status.success(), "{err}");
    let out = dir.path().join("out");
    let ids = trace_ids(&out);
    let mut kept: Vec<&str> = ids.keys().map(String::as_str).collect();
    kept.sort();
    assert_eq!(kept, ["a", "c", "e"], "{ids:?}");
    let dl = files_under(&out.join("_dead_letters"), true);
    let text: String = dl
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(
            "stage `nest`: field `s.at`: timestamp value 10000000000000000 (ms) is out of range"
        ) && text.contains("\\\"trace_id\\\":\\\"b\\\""),
        "{text}"
    );
}

/// A stage whose output holds a timestamp in a zone arrow does not know is refused at start,
/// naming the column: Parquet files were written with the zone in their schema, and with JSON
/// output every write failed and rewound the partition, for ever.
#[test]
fn a_stage_timestamp_in_an_unknown_zone_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    write_events(&input, &[("a", 1)]);
    let stage = "[[repo.stages]]\nname = \"zone\"\n\
                 select = [\"trace_id\", \"arrow_cast(bytes, \
                 'Timestamp(Millisecond, Some(\\\"Nowhere/Zone\\\"))') AS z\"]\n";
    let job = job_sink(dir.path(), &input, stage, "");
    let (status, err) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("stage 1 (`zone`): column `z`: `Nowhere/Zone` is not a time zone"),
        "{err}"
    );
    assert!(trace_ids(&dir.path().join("out")).is_empty());
}

/// A time of day a stage computes outside one day (`arrow_cast` takes any integer) fails its
/// row; JSON output held arrow-json's "ERROR: Cast error" text in its place.
#[test]
fn a_stage_time_of_day_outside_one_day_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    write_events(&input, &[("a", 3_600), ("b", 86_400)]);
    let stage = "[[repo.stages]]\nname = \"clock\"\n\
                 select = [\"trace_id\", \"arrow_cast(CAST(bytes AS INT), 'Time32(Second)') AS t\"]\n";
    let job = job_sink(dir.path(), &input, stage, "");
    let (status, err) = sluice_within(&["run", job.to_str().unwrap()], 120);
    assert!(status.success(), "{err}");
    let out = dir.path().join("out");
    let ids = trace_ids(&out);
    assert_eq!(ids.keys().collect::<Vec<_>>(), ["a"], "{ids:?}");
    let dl: String = files_under(&out.join("_dead_letters"), true)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        dl.contains("stage `clock`: field `t`: time value 86400 (s) is outside one day"),
        "{dl}"
    );
}

/// DataFusion functions asked for absurd sizes (`repeat`, `lpad` far past 2 GiB) fail the
/// rows as dead letters; nothing aborts the process.
#[test]
fn hostile_values_in_stage_functions_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    for expr in [
        "repeat(host, status * 100000000) AS x",
        "lpad(host, status * 100000000) AS x",
        // A constant count takes its size from the data's string; a dictionary of strings is
        // measured as its text (it was counted as empty).
        "repeat(user_agent, 10000000) AS x",
        "repeat(arrow_cast(host, 'Dictionary(Int32, Utf8)'), status * 100000000) AS x",
    ] {
        let out = dir.path().join("out/");
        let o = sluice(&[
            "convert",
            "--schema",
            schema("nginx_access").to_str().unwrap(),
            "--input",
            fixture("nginx_access.jsonl").to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--select",
            expr,
            "--overwrite",
            "--quiet",
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        // A stage that fails every row converts nothing, which fails the run.
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() || stderr.contains("is a dead letter"),
            "{expr}: {stderr}"
        );
        let dl = dead_letter_lines(&out.join("_dead_letters"));
        assert!(!dl.is_empty(), "{expr}: {stdout}");
        assert!(
            dl.iter().all(|d| d["class"] == "stage"),
            "{expr}: {}",
            dl[0]
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// Column types a stage can make (`arrow_cast` reaches any Arrow type) that a writer would
/// refuse at every write (the partition rewound for ever), panic on, or write wrong are refused
/// at start, naming the column and what to do. `validate` passed every one of these before;
/// `run` then panicked on a dictionary with 8-bit keys once a chunk held more than 127 distinct
/// values, rewound for ever on a CSV list or a Parquet interval, crashed a sink worker on a
/// Parquet dictionary of string views, and wrote `0000` into JSON for a decimal of negative
/// scale.
#[test]
fn stage_types_no_writer_takes_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "").unwrap();
    let cases = [
        (
            "arrow_cast(path, 'Dictionary(Int8, Utf8)')",
            "parquet",
            "Int8 keys overflows",
        ),
        (
            "arrow_cast(path, 'Dictionary(Int32, Utf8View)')",
            "parquet",
            "Utf8View values",
        ),
        (
            "arrow_cast(ts, 'Dictionary(Int32, Timestamp(Millisecond, Some(\\\"UTC\\\")))')",
            "json",
            "values is not written as such",
        ),
        (
            "arrow_cast(status, 'LargeList(Int64)')",
            "csv",
            "cells hold flat values",
        ),
        (
            "INTERVAL '1 day 2 hours'",
            "parquet",
            "month-day-nanosecond",
        ),
        (
            "arrow_cast(bytes, 'Decimal128(5, -3)')",
            "json",
            "negative scale",
        ),
        (
            "named_struct('a', status, 'a', bytes)",
            "parquet",
            "names field `a` twice",
        ),
        (
            "arrow_cast(path, 'RunEndEncoded(\\\"run_ends\\\": non-null Int32, \\\"values\\\": Dictionary(Int8, Utf8))')",
            "json",
            "cast the column to its plain form",
        ),
    ];
    for (expr, format, why) in cases {
        let stage =
            format!("[[repo.stages]]\nname = \"t\"\nselect = [\"trace_id\", \"{expr} AS x\"]\n");
        let job = job_sink(
            dir.path(),
            &input,
            &stage,
            &format!("format = \"{format}\""),
        );
        let out = sluice(&["validate", job.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{expr} ({format}) was accepted");
        assert!(
            err.contains("field `x`") && err.contains(why),
            "{expr} ({format}): {err}"
        );
    }
}

/// The rows of the gzip JSON files in `out`: trace id → status.
fn statuses(out: &Path) -> std::collections::HashMap<String, i64> {
    crate::run::gzip_json_rows(out)
        .into_iter()
        .map(|v| {
            (
                v["trace_id"].as_str().unwrap().to_string(),
                v["status"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A stop spills the channel; the job file gains a filter before the next start. The spilled
/// batches went through no filter: restored as they were, they skipped the new one (rows it
/// drops were written). The file is read again from the checkpoint instead, through it.
#[test]
fn a_spill_written_before_the_stages_changed_is_read_again_through_the_new_ones() {
    use crate::run::{finish, job_file, start, write_events};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    write_events(&input, 120_000, 0);
    let job = job_file(
        dir.path(),
        &[input],
        "format = \"json\"\ncompression = \"gzip:9\"\nworkers = 1\n[sink.rotation]\nmax_rows = 20000\n",
    );
    let (spilled, _) = crate::run::stop_until_spilled(dir.path(), &job);
    assert!(
        spilled,
        "no stop left a spill: the test did not exercise a restore"
    );
    let before = statuses(&dir.path().join("out"));
    let mut text = std::fs::read_to_string(&job).unwrap();
    text.push_str("\n[[repo.stages]]\nfilter = \"status = 200\"\n");
    std::fs::write(&job, text).unwrap();
    let (ok, log) = finish(start(&job, &[]));
    assert!(ok, "{log}");
    assert!(
        log.contains("the stages (or on_error) changed since the spill was written: the spill's records are read again"),
        "{log}"
    );
    let after = statuses(&dir.path().join("out"));
    let unfiltered: Vec<_> = after
        .iter()
        .filter(|(id, status)| !before.contains_key(*id) && **status != 200)
        .take(5)
        .collect();
    assert!(
        unfiltered.is_empty(),
        "rows the new filter drops were written: {unfiltered:?}"
    );
    // Every record the first run had not committed, and the filter keeps, is there.
    let kept = (0..120_000usize)
        .filter(|i| i % 5 == 0 && !before.contains_key(&format!("t{i}")))
        .count();
    assert_eq!(after.len() - before.len(), kept);
}
