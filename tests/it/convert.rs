//! `sluice convert` end to end: formats (ORC's integer encoder on jumps and extremes too), bad
//! input, errors, stdin, gzip input.

use std::io::Write;
use std::path::Path;

use crate::helpers::*;

pub(crate) fn dead_letters(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bad_input_goes_to_dead_letters_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = fixture("nginx_access_bad.jsonl");
    let stdout = sluice_ok(&[
        "convert",
        "--schema",
        schema("nginx_access").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        &format!("file://{}/", out.display()),
    ]);
    assert!(
        stdout.contains("32 records: 20 rows, 12 dead letters"),
        "{stdout}"
    );
    assert_eq!(parquet_rows(&out.join("nginx_access_bad.parquet")), 20);
    let dl = dead_letters(&out.join("_dead_letters/nginx_access_bad.parquet.jsonl"));
    assert_eq!(dl.len(), 12);
    let reasons: Vec<String> = dl
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "incomplete JSON value",
        "`two hundred` is not a number (int32)",
        "`3000000000` does not fit its type (int32)",
        "missing required field `ts`",
        "not valid UTF-8",
        "unexpected 'h'",
        "expected { got [1, 2, 3]",
        "\"not a time\"",
        "more than one JSON value",
        "expected boolean",
        "12.5e400",
        "missing required field `trace_id`",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "no reason with {want:?} in {reasons:#?}"
        );
    }
    // Every dead letter carries its position and original record.
    let text = std::fs::read(&input).unwrap();
    for d in &dl {
        let offset = d["offset"].as_u64().unwrap() as usize;
        let line = d["line"].as_u64().unwrap() as usize;
        assert_eq!(
            text[..offset].iter().filter(|b| **b == b'\n').count() + 1,
            line
        );
        let record = match d.get("record") {
            Some(r) => r.as_str().unwrap().as_bytes().to_vec(),
            None => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(d["record_base64"].as_str().unwrap())
                    .unwrap()
            }
        };
        assert!(text[offset..].starts_with(&record));
    }
}

#[test]
fn every_format_writes_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("nginx_access.jsonl");
    for format in ["parquet", "orc", "json", "csv", "tsv", "text"] {
        let stdout = sluice_ok(&[
            "convert",
            "--schema",
            schema("nginx_access").to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--format",
            format,
            "--output",
            dir.path().to_str().unwrap(),
        ]);
        assert!(
            stdout.contains("2000 records: 2000 rows, 0 dead letters"),
            "{format}: {stdout}"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "nginx_access.csv",
            "nginx_access.jsonl.gz",
            "nginx_access.orc",
            "nginx_access.parquet",
            "nginx_access.tsv",
            "nginx_access.txt"
        ],
        "no temporary or dead-letter files are left behind"
    );
}

#[test]
fn stdin_and_gzip_input() {
    let dir = tempfile::tempdir().unwrap();
    let raw = std::fs::read(fixture("nginx_access.jsonl")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let gz_path = dir.path().join("events.jsonl.gz");
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    sluice_ok(&[
        "convert",
        "--schema",
        schema("nginx_access").to_str().unwrap(),
        "--input",
        gz_path.to_str().unwrap(),
        "--output",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(parquet_rows(&dir.path().join("o/events.parquet")), 2000);

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "convert",
            "--schema",
            schema("nginx_access").to_str().unwrap(),
            "--input",
            "-",
            "--format",
            "orc",
            "--output",
            dir.path().join("o/").to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("2000 rows"));
    assert!(dir.path().join("o/stdin.orc").exists());
}

#[test]
fn errors_are_clear_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = schema("nginx_access");
    let input = fixture("nginx_access.jsonl");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--input".into(), "/no/such/file.jsonl".into()],
            "does not exist",
        ),
        (
            vec![
                "--input".into(),
                input.display().to_string(),
                "--format".into(),
                "avro".into(),
            ],
            "unknown format `avro`",
        ),
        (
            vec![
                "--input".into(),
                input.display().to_string(),
                "--compression".into(),
                "zstd:99".into(),
            ],
            "level `99`",
        ),
        (
            vec![
                "--input".into(),
                input.display().to_string(),
                "--format".into(),
                "orc".into(),
                "--compression".into(),
                "gzip".into(),
            ],
            "compression `gzip:1` is not available for orc",
        ),
        (
            vec![
                "--input".into(),
                input.display().to_string(),
                "--compression".into(),
                "brotli".into(),
            ],
            "--compression: unknown compression `brotli`",
        ),
        (
            vec![
                "--input".into(),
                input.display().to_string(),
                "--output".into(),
                "ftp://host/x/".into(),
            ],
            "scheme `ftp`",
        ),
        (
            vec![
                "--input".into(),
                input.display().to_string(),
                "--delimiter".into(),
                ";".into(),
            ],
            "a delimiter applies to csv and text input, not json",
        ),
        (
            vec![
                "--input".into(),
                input.display().to_string(),
                "--input-format".into(),
                "csv".into(),
                "--delimiter".into(),
                ";;".into(),
            ],
            "a csv delimiter is one ASCII character",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec![
            "convert".to_string(),
            "--schema".into(),
            s.display().to_string(),
            "--output".into(),
            out.display().to_string(),
        ];
        // A later --output wins in clap only if given once: drop the default one when the case
        // sets its own.
        if extra.iter().any(|a| a == "--output") {
            args.truncate(3);
        }
        args.extend(extra);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = sluice(&argv);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{argv:?} should fail");
        assert!(err.contains(want), "{argv:?}: stderr lacks {want:?}: {err}");
    }
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().count() == 0);

    let bad_schema = dir.path().join("bad.toml");
    std::fs::write(
        &bad_schema,
        "name = \"x\"\n[[fields]]\nname = \"a\"\ntype = \"int33\"\n",
    )
    .unwrap();
    let o = sluice(&["schema", "check", bad_schema.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("`a`") && err.contains("int33"),
        "{err}"
    );
    // A default that does not parse is the schema's error, as the decoder finds it.
    std::fs::write(
        &bad_schema,
        "name = \"x\"\n[[fields]]\nname = \"n\"\ntype = \"int64\"\ndefault = \"abc\"\n",
    )
    .unwrap();
    let o = sluice(&["schema", "check", bad_schema.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("invalid default"),
        "{err}"
    );
    // A cause the error already quotes is said once.
    let o = sluice(&["schema", "check", "/no/such/schema.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.matches("No such file or directory").count() == 1,
        "{err}"
    );

    // An existing output is not replaced without --overwrite.
    let args = [
        "convert",
        "--schema",
        s.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    sluice_ok(&args);
    let o = sluice(&args);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--overwrite"));
    let mut again = args.to_vec();
    again.push("--overwrite");
    sluice_ok(&again);
}

/// `sluice convert` of `input` with `schema` into `out`, with `extra` arguments: its summary.
pub(crate) fn convert(schema: &Path, input: &Path, out: &Path, extra: &[&str]) -> String {
    sluice_ok(&convert_args(schema, input, out, extra))
}

/// The arguments of `sluice convert` of `input` with `schema` into `out`, and `extra`.
pub(crate) fn convert_args<'a>(
    schema: &'a Path,
    input: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "convert",
        "--schema",
        schema.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn csv_and_text_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "id,name,at\n1,\"Doe, J\",2024-01-01T00:00:00Z\nx,bad,2024-01-01T00:00:00Z\n3,\"multi\nline\",\n").unwrap();
    let sch = dir.path().join("people.toml");
    std::fs::write(
        &sch,
        "name = \"people\"\n[[fields]]\nname = \"id\"\ntype = \"int64\"\nnullable = false\n[[fields]]\nname = \"name\"\ntype = \"string\"\n[[fields]]\nname = \"at\"\ntype = \"timestamp\"\n",
    )
    .unwrap();
    let stdout = convert(
        &sch,
        &csv,
        &dir.path().join("o"),
        &["--format", "json", "--compression", "none"],
    );
    assert!(
        stdout.contains("3 records: 2 rows, 1 dead letters"),
        "{stdout}"
    );
    let lines = std::fs::read_to_string(dir.path().join("o/people.jsonl")).unwrap();
    assert!(lines.contains("\"multi\\nline\""), "{lines}");

    // A CSV of another delimiter (`;`, as many European locales write it); it was ignored,
    // and the header read as one column.
    let semi = dir.path().join("semi.csv");
    std::fs::write(
        &semi,
        "id;name;at\n1;\"Doe; J\";2024-01-01T00:00:00Z\n2;plain;\n",
    )
    .unwrap();
    let stdout = convert(
        &sch,
        &semi,
        &dir.path().join("o"),
        &[
            "--delimiter",
            ";",
            "--format",
            "json",
            "--compression",
            "none",
        ],
    );
    assert!(
        stdout.contains("2 records: 2 rows, 0 dead letters"),
        "{stdout}"
    );
    let lines = std::fs::read_to_string(dir.path().join("o/semi.jsonl")).unwrap();
    assert!(lines.contains("\"name\":\"Doe; J\""), "{lines}");

    let log = dir.path().join("app.log");
    std::fs::write(&log, "GET /a 200\nPOST /b 500\nbroken\n").unwrap();
    let sch2 = dir.path().join("req.toml");
    std::fs::write(
        &sch2,
        "name = \"req\"\n[[fields]]\nname = \"method\"\ntype = \"string\"\n[[fields]]\nname = \"path\"\ntype = \"string\"\n[[fields]]\nname = \"status\"\ntype = \"int32\"\nnullable = false\n",
    )
    .unwrap();
    let stdout = convert(
        &sch2,
        &log,
        &dir.path().join("o"),
        &["--delimiter", " ", "--format", "csv"],
    );
    assert!(
        stdout.contains("3 records: 2 rows, 1 dead letters"),
        "{stdout}"
    );
    let csv_out = std::fs::read_to_string(dir.path().join("o/app.csv")).unwrap();
    assert_eq!(csv_out, "method,path,status\nGET,/a,200\nPOST,/b,500\n");
}

/// A timestamp ORC cannot hold (the second before 1970 with a fraction, ORC-763) is its
/// record's dead letter. Before, the ORC writer refused the batch: `convert` failed and wrote
/// nothing, and an export job's partition failed the same write at every retry.
#[test]
fn a_timestamp_orc_cannot_hold_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("t.jsonl");
    let line = |id: &str, ts: &str| {
        format!("{{\"ts\":\"{ts}\",\"host\":\"h\",\"status\":200,\"trace_id\":\"{id}\"}}\n")
    };
    std::fs::write(
        &input,
        [
            line("a", "2024-05-01T00:00:00Z"),
            line("b", "1969-12-31T23:59:59.5Z"),
            line("c", "1969-12-31T23:59:59Z"),
        ]
        .concat(),
    )
    .unwrap();
    let out = dir.path().join("o");
    let stdout = convert(&schema("nginx_access"), &input, &out, &["--format", "orc"]);
    assert!(
        stdout.contains("3 records: 2 rows, 1 dead letters"),
        "{stdout}"
    );
    let dl = dead_letters(&out.join("_dead_letters/t.orc.jsonl"));
    assert_eq!(dl.len(), 1);
    let reason = dl[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("ORC-763") && reason.contains("`ts`"),
        "{reason}"
    );
    assert_eq!(dl[0]["line"].as_u64(), Some(2));
}

/// ORC output of a timestamp field in a zone other than UTC: written as the instant it is
/// (ORC keeps no zone). Before, orc-rust's writer panicked on the zone and `convert` crashed.
#[test]
fn orc_output_takes_timestamps_in_any_zone() {
    let dir = tempfile::tempdir().unwrap();
    let sch = dir.path().join("tz.toml");
    std::fs::write(
        &sch,
        "name = \"tz\"\n[[fields]]\nname = \"t\"\ntype = \"timestamp\"\nunit = \"us\"\n\
         timezone = \"Europe/Berlin\"\n[[fields]]\nname = \"k\"\ntype = \"string\"\n",
    )
    .unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"t\":\"2024-05-01T10:00:00\",\"k\":\"a\"}\n{\"t\":\"2024-05-01T10:00:00Z\",\"k\":\"b\"}\n",
    )
    .unwrap();
    let out = dir.path().join("o");
    let stdout = convert(&sch, &input, &out, &["--format", "orc"]);
    assert!(
        stdout.contains("2 records: 2 rows, 0 dead letters"),
        "{stdout}"
    );
    let Some(py) = python() else {
        return;
    };
    let read = std::process::Command::new(py)
        .args([
            "-c",
            "import sys, pyarrow.orc as o; t = o.read_table(sys.argv[1]); \
             print([v.isoformat() for v in t.column('t').to_pylist()])",
            out.join("in.orc").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&read.stdout);
    assert!(
        text.contains("'2024-05-01T08:00:00+00:00', '2024-05-01T10:00:00+00:00'"),
        "{text}{}",
        String::from_utf8_lossy(&read.stderr)
    );
}

/// A timestamp in a zone is written as its wall-clock time there (JSON) and read back
/// converted to it (Parquet readers): an instant whose time in its zone is past year 9999 is
/// its record's dead letter. Before, `9999-12-31T12:00:00Z` in a `+14:00` column was written
/// as `+10000-01-01T02:00:00+14:00`, which no RFC 3339 reader takes.
#[test]
fn a_zoned_timestamp_past_year_9999_in_its_zone_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let sch = dir.path().join("tz.toml");
    std::fs::write(
        &sch,
        "name = \"tz\"\n[[fields]]\nname = \"t\"\ntype = \"timestamp\"\n\
         timezone = \"+14:00\"\n[[fields]]\nname = \"e\"\ntype = \"timestamp\"\n\
         format = \"epoch_ms\"\ntimezone = \"America/New_York\"\n",
    )
    .unwrap();
    let input = dir.path().join("in.jsonl");
    // Lines 2 and 4 are in range as instants, not as their zone's time (New York's offset in
    // year 1 is its local mean time, -04:56:02: 0001-01-01T02:00Z is a day of year 0 there).
    std::fs::write(
        &input,
        "{\"t\":\"9999-12-31T09:00:00Z\"}\n{\"t\":\"9999-12-31T12:00:00Z\"}\n\
         {\"e\":-62135560800000}\n{\"e\":-62135589600000}\n",
    )
    .unwrap();
    let out = dir.path().join("o");
    let stdout = convert(
        &sch,
        &input,
        &out,
        &["--format", "json", "--compression", "none"],
    );
    assert!(
        stdout.contains("4 records: 2 rows, 2 dead letters"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(out.join("in.jsonl")).unwrap();
    assert!(
        text.contains("9999-12-31T23:00:00+14:00") && !text.contains("10000"),
        "{text}"
    );
    let dl = dead_letters(&out.join("_dead_letters/in.jsonl.jsonl"));
    let lines: Vec<_> = dl.iter().map(|d| d["line"].as_u64()).collect();
    assert_eq!(lines, [Some(2), Some(4)]);
    let reason = dl[0]["reason"].as_str().unwrap();
    assert!(reason.contains("in zone `+14:00`"), "{reason}");
}

/// An ordinary int64 column (steady ids with jumps back) and i64 extremes, converted to ORC:
/// the run succeeds and pyarrow reads back every value. orc-rust 0.9.0's encoder panicked on
/// both (a crash for `convert`, a task failing at every replay for a job); sluice builds a
/// patched copy (`vendor/orc-rust`).
#[test]
fn an_int_column_with_jumps_and_extremes_converts_to_orc() {
    let dir = tempfile::tempdir().unwrap();
    let schema_path = dir.path().join("ids.toml");
    std::fs::write(
        &schema_path,
        "name = \"ids\"\n[[fields]]\nname = \"id\"\ntype = \"int64\"\nnullable = false\n",
    )
    .unwrap();
    let mut ids: Vec<i64> = (0..30_000i64)
        .map(|i| (i % 10_000) * 7919 + i / 10_000)
        .collect();
    ids.extend([
        i64::MAX,
        i64::MAX,
        -1,
        i64::MIN,
        -2,
        -1,
        -3,
        -3,
        -3,
        -7,
        0,
        5,
    ]);
    let input = dir.path().join("ids.jsonl");
    let text: String = ids.iter().map(|i| format!("{{\"id\":{i}}}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out/");
    sluice_ok(&[
        "convert",
        "--schema",
        schema_path.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--format",
        "orc",
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let Some(py) = python() else { return };
    let script = "import sys, pyarrow.orc as o\n\
                  print(','.join(str(v) for v in o.read_table(sys.argv[1]).column('id').to_pylist()))";
    let r = std::process::Command::new(py)
        .args(["-c", script, out.join("ids.orc").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let back: Vec<i64> = String::from_utf8_lossy(&r.stdout)
        .trim()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(back.len(), ids.len());
    assert!(back == ids, "pyarrow read other values than were written");
}

/// A CSV header that names the schema's optional fields in another case (`Amount` for
/// `amount`), or not at all, is said: those fields are null in every row (they were without a
/// word). A line cut short is a dead letter (its last fields were nulls).
#[test]
fn a_csv_header_missing_optional_fields_is_said_and_short_lines_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("pay.csv");
    std::fs::write(&csv, "user,Amount,OK\nalice,10,true\nbob,20\n").unwrap();
    let sch = dir.path().join("pay.toml");
    std::fs::write(
        &sch,
        "name = \"pay\"\n[[fields]]\nname = \"user\"\ntype = \"string\"\n[[fields]]\nname = \"amount\"\ntype = \"int64\"\n[[fields]]\nname = \"ok\"\ntype = \"bool\"\n[[fields]]\nname = \"note\"\ntype = \"string\"\n",
    )
    .unwrap();
    let o = sluice(&convert_args(&sch, &csv, &dir.path().join("o/"), &[]));
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "no column for `amount` (the header has `Amount`), `ok` (the header has `OK`), `note`"
        ),
        "{err}"
    );
    assert!(out.contains("2 records: 1 rows, 1 dead letters"), "{out}");
}
