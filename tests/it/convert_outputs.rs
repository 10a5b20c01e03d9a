//! `sluice convert`'s output and dead-letter files against other conversions: inputs that
//! share a name, dead letters named like the output, and two conversions to one output.

use crate::convert::{convert, dead_letters};
use crate::helpers::*;
use crate::kafka::wait_log;

/// `sluice convert` of `input` to `target` (nginx_access schema) held at fault point `point`
/// while the file `<dir>/hold-<name>` exists, once it says it holds there: the process, the
/// hold file and the log (`<dir>/<name>.log`).
fn held(
    dir: &std::path::Path,
    input: &std::path::Path,
    target: &std::path::Path,
    point: &str,
    name: &str,
) -> (KillOnDrop, std::path::PathBuf, std::path::PathBuf) {
    held_with(dir, input, target, (point, name), &[])
}

/// [`held`] with more arguments.
fn held_with(
    dir: &std::path::Path,
    input: &std::path::Path,
    target: &std::path::Path,
    (point, name): (&str, &str),
    extra: &[&str],
) -> (KillOnDrop, std::path::PathBuf, std::path::PathBuf) {
    let hold = dir.join(format!("hold-{name}"));
    std::fs::write(&hold, "").unwrap();
    let log = dir.join(format!("{name}.log"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "convert",
            "--schema",
            schema("nginx_access").to_str().unwrap(),
            "--input",
        ])
        .arg(input)
        .arg("--output")
        .arg(target)
        .args(extra)
        .env("SLUICE_FAULT", format!("{point}:@{}", hold.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let child = KillOnDrop::new(child);
    let text = wait_log(&log, &format!("SLUICE_FAULT: holding at {point}"), 1, 60);
    assert!(text.contains(&format!("holding at {point}")), "{text}");
    (child, hold, log)
}

/// `sluice convert` of `input` to `out` with `extra` arguments, refused: its error.
fn convert_refused(input: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> String {
    let schema = schema("nginx_access");
    sluice_refused(&crate::convert::convert_args(&schema, input, out, extra))
}

/// Two inputs of one name (from two folders) converted into two files of one folder: each
/// keeps its own dead letters. Named after the input, the second's replaced the first's, and
/// with `--overwrite` and none of its own it deleted them.
#[test]
fn conversions_of_inputs_sharing_a_name_keep_their_own_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (d1, d2) = (dir.path().join("d1"), dir.path().join("d2"));
    for d in [&d1, &d2] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::copy(fixture("nginx_access_bad.jsonl"), d.join("events.jsonl")).unwrap();
    }
    let s = schema("nginx_access");
    convert(&s, &d1.join("events.jsonl"), &out.join("a.parquet"), &[]);
    convert(&s, &d2.join("events.jsonl"), &out.join("b.parquet"), &[]);
    assert_eq!(
        dead_letters(&out.join("_dead_letters/a.parquet.jsonl")).len(),
        12
    );
    assert_eq!(
        dead_letters(&out.join("_dead_letters/b.parquet.jsonl")).len(),
        12
    );
}

/// One input converted into two formats in one folder (`a.parquet`, then `a.orc` with
/// `--overwrite`... and a clean third run): each output keeps its own dead letters. Named
/// after the output less its extension (`a.jsonl` for both), the second replaced the first's,
/// and a clean `--overwrite` run into a third format deleted them.
#[test]
fn conversions_of_one_input_into_two_formats_keep_their_own_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let s = schema("nginx_access");
    let bad = fixture("nginx_access_bad.jsonl");
    convert(&s, &bad, &out.join("a.parquet"), &[]);
    convert(&s, &bad, &out.join("a.orc"), &["--format", "orc"]);
    convert(
        &s,
        &fixture("nginx_access.jsonl"),
        &out.join("a.csv"),
        &["--format", "csv", "--overwrite"],
    );
    assert_eq!(
        dead_letters(&out.join("_dead_letters/a.parquet.jsonl")).len(),
        12
    );
    assert_eq!(
        dead_letters(&out.join("_dead_letters/a.orc.jsonl")).len(),
        12
    );
    assert!(!out.join("_dead_letters/a.csv.jsonl").exists());
    // An output name of 250 bytes: its dead letters' name is cut to fit, and still its own.
    let long = format!("{}.parquet", "a".repeat(242));
    convert(&s, &bad, &out.join(&long), &[]);
    let named: Vec<String> = std::fs::read_dir(out.join("_dead_letters"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("aaaa"))
        .collect();
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(
        named[0].len() <= 255 && named[0].ends_with(".jsonl"),
        "{named:?}"
    );
    assert_eq!(
        dead_letters(&out.join("_dead_letters").join(&named[0])).len(),
        12
    );
}

/// Dead letters sent to the output file's own name (JSON lines output, `--dead-letters` the
/// same file spelled another way): the run replaced one with the other, and with `--overwrite` and no dead letters
/// deleted the output it had just written. It is refused before anything is written.
#[test]
fn dead_letters_named_like_the_output_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = sluice_refused(&[
        "convert",
        "--schema",
        schema("nginx_access").to_str().unwrap(),
        "--input",
        fixture("nginx_access_bad.jsonl").to_str().unwrap(),
        "--format",
        "json",
        "--compression",
        "none",
        "--output",
        out.join("x.jsonl").to_str().unwrap(),
        "--dead-letters",
        &format!("{}/./x.jsonl", out.display()),
    ]);
    assert!(err.contains("names the output file itself"), "{err}");
    assert!(!out.join("x.jsonl").exists());
}

/// Two conversions to one output without `--overwrite`, the first held just before its commit
/// while the second runs to the end. Both had checked that the output was not there; the
/// first then replaced the second's output, and its dead letters the second's. Now the
/// first is refused at its commit, and the second's output and dead letters stand.
#[test]
fn of_two_conversions_racing_to_one_output_without_overwrite_one_wins_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let schema = schema("nginx_access");
    // The first: one record, one dead letter. The second: the fixture (20 rows, 12).
    let small = dir.path().join("small.jsonl");
    let fixture_text = std::fs::read_to_string(fixture("nginx_access.jsonl")).unwrap();
    let first_line = fixture_text.lines().next().unwrap();
    std::fs::write(&small, format!("{first_line}\nnot json\n")).unwrap();
    let target = out.join("events.parquet");

    let (mut first, hold, log) = held(dir.path(), &small, &target, "hold_convert_commit", "first");

    let summary = convert(&schema, &fixture("nginx_access_bad.jsonl"), &target, &[]);
    assert!(summary.contains("20 rows, 12 dead letters"), "{summary}");
    std::fs::remove_file(&hold).unwrap();
    let status = wait_exit(first.child(), "the held conversion", 60);
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success(),
        "the held conversion replaced the output:\n{err}"
    );
    assert!(err.contains("already exists"), "{err}");

    assert_eq!(parquet_rows(&target), 20);
    assert_eq!(
        dead_letters(&out.join("_dead_letters/events.parquet.jsonl")).len(),
        12
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// A conversion killed (`kill -9`) between its two commits (held at `hold_convert_output`):
/// its dead letters stand and its output does not, and the next conversion to that name says
/// so rather than pairing its output with them; with `--overwrite` it writes both. Before,
/// the output was committed first: a kill between left an output that looked finished (a
/// second run: "already exists"), its dead letters lost for good.
#[test]
fn a_conversion_killed_between_its_commits_leaves_no_output_without_its_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let schema = schema("nginx_access");
    let input = fixture("nginx_access_bad.jsonl");
    let target = out.join("events.parquet");
    let (mut child, _hold, _) = held(dir.path(), &input, &target, "hold_convert_output", "killed");
    child.child().kill().unwrap();
    let _ = child.child().wait();
    let dead = out.join("_dead_letters/events.parquet.jsonl");
    assert!(
        !target.exists() || dead.exists(),
        "the output stands without its dead letters"
    );

    let err = convert_refused(&input, &target, &[]);
    assert!(err.contains("stand without it"), "{err}");
    let summary = convert(&schema, &input, &target, &["--overwrite"]);
    assert!(summary.contains("20 rows, 12 dead letters"), "{summary}");
    assert_eq!(parquet_rows(&target), 20);
    assert_eq!(dead_letters(&dead).len(), 12);
}

/// A conversion with `--overwrite` killed between its two commits, over an earlier one's
/// output: the earlier output is gone, and this run's dead letters stand alone (the next
/// conversion says so). Before, the earlier output stood beside this run's dead letters as if
/// they were its own, and nothing told.
#[test]
fn an_overwrite_killed_between_its_commits_leaves_no_earlier_output_beside_its_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let schema = schema("nginx_access");
    let target = out.join("events.parquet");
    convert(&schema, &fixture("nginx_access.jsonl"), &target, &[]);
    assert!(target.exists());
    let input = fixture("nginx_access_bad.jsonl");
    let (mut child, _hold, _) = held_with(
        dir.path(),
        &input,
        &target,
        ("hold_convert_output", "killed"),
        &["--overwrite"],
    );
    child.child().kill().unwrap();
    let _ = child.child().wait();
    let dead = out.join("_dead_letters/events.parquet.jsonl");
    assert_eq!(dead_letters(&dead).len(), 12);
    assert!(
        !target.exists(),
        "the earlier output stands beside this run's dead letters"
    );
    let err = convert_refused(&input, &target, &[]);
    assert!(err.contains("stand without it"), "{err}");
    let summary = convert(&schema, &input, &target, &["--overwrite"]);
    assert!(summary.contains("20 rows, 12 dead letters"), "{summary}");
}

/// Two conversions to one name: one without dead letters held before its commits, another
/// with dead letters killed between its commits. The first, released, is refused: its output
/// would stand beside the other's dead letters as if they were its own (its summary saying
/// none). Before, it wrote it.
#[test]
fn a_conversion_without_dead_letters_does_not_commit_beside_anothers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let clean = dir.path().join("clean.jsonl");
    let fixture_text = std::fs::read_to_string(fixture("nginx_access.jsonl")).unwrap();
    std::fs::write(
        &clean,
        format!("{}\n", fixture_text.lines().next().unwrap()),
    )
    .unwrap();
    let target = out.join("events.parquet");
    let (mut first, first_hold, first_log) =
        held(dir.path(), &clean, &target, "hold_convert_commit", "first");
    let bad = fixture("nginx_access_bad.jsonl");
    let (mut second, _second_hold, _) =
        held(dir.path(), &bad, &target, "hold_convert_output", "second");
    second.child().kill().unwrap();
    let _ = second.child().wait();
    std::fs::remove_file(&first_hold).unwrap();
    let status = wait_exit(first.child(), "the first conversion", 60);
    let err = std::fs::read_to_string(&first_log).unwrap();
    assert!(
        !status.success(),
        "it wrote its output beside the other's dead letters: {err}"
    );
    assert!(err.contains("stand without it"), "{err}");
    assert!(!target.exists());
}

/// An output named as a file gets the format and compression its name says, and a
/// `--format` or `--compression` that says otherwise is refused. Before, `x.csv` held Parquet
/// (the default format) and `x.jsonl` gzip bytes (JSON's default codec).
#[test]
fn an_output_named_as_a_file_is_written_as_its_name_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let schema = schema("nginx_access");
    let input = fixture("nginx_access.jsonl");
    convert(&schema, &input, &out.join("x.csv"), &[]);
    let csv = std::fs::read_to_string(out.join("x.csv")).unwrap();
    assert!(csv.starts_with("ts,host,"), "{}", &csv[..csv.len().min(80)]);
    convert(&schema, &input, &out.join("x.jsonl"), &[]);
    let json = std::fs::read_to_string(out.join("x.jsonl")).unwrap();
    assert!(json.starts_with("{\""), "not plain JSON lines");
    convert(&schema, &input, &out.join("x.jsonl.gz"), &[]);
    let gz = std::fs::read(out.join("x.jsonl.gz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let target = out.join("y.csv");
    for extra in [&["--format", "parquet"][..], &["--compression", "gzip"][..]] {
        let err = convert_refused(&input, &target, extra);
        assert!(err.contains("--output y.csv names a"), "{extra:?}: {err}");
    }
    assert!(!target.exists());
    // Names in capitals count; a gzip name around Parquet is refused.
    convert(&schema, &input, &out.join("Z.CSV.GZ"), &[]);
    let gz = std::fs::read(out.join("Z.CSV.GZ")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let wrapped = out.join("w.parquet.gz");
    let err = convert_refused(&input, &wrapped, &[]);
    assert!(err.contains("compressed inside the file"), "{err}");
    // `.gz` alone names no format (Parquet was written under it); with --format it is one.
    let bare = out.join("bare.gz");
    let err = convert_refused(&input, &bare, &[]);
    assert!(err.contains("follows the format's extension"), "{err}");
    let err = convert_refused(&input, &bare, &["--format", "parquet"]);
    assert!(err.contains("compressed inside the file"), "{err}");
    convert(&schema, &input, &bare, &["--format", "json"]);
    assert_eq!(&std::fs::read(&bare).unwrap()[..2], &[0x1f, 0x8b]);
}

/// A conversion interrupted (SIGINT, as Ctrl-C) stops at its next chunk, removes what it
/// wrote and fails; nothing is left in the output folder. Before, the signal ended the
/// process where it stood, leaving its hidden temporary file, which readers of the folder
/// (DuckDB's `read_parquet('out/*')`) fail on.
#[test]
fn an_interrupted_conversion_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let input = fixture("nginx_access.jsonl");
    let target = out.join("x.parquet");
    let (mut child, hold, log) = held(dir.path(), &input, &target, "hold_convert_read", "convert");
    assert!(std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    said(&log, "asked to stop");
    let _ = std::fs::remove_file(&hold);
    let status = wait_exit(child.child(), "the interrupted conversion", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}\n{text}");
}

/// A conversion reading a pipe that sends nothing, asked to stop (SIGTERM): its read is not
/// cut short, so it ends itself within the grace of 5 s, failing. (With the first version of
/// the stop, it waited for the pipe for ever.)
#[test]
fn a_conversion_asked_to_stop_while_its_pipe_is_quiet_ends() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let schema = schema("nginx_access");
    let log = dir.path().join("convert.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "convert",
            "--schema",
            schema.to_str().unwrap(),
            "--input",
            "-",
        ])
        .arg("--output")
        .arg(out.join("x.parquet"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop::new(child);
    // One line, and the pipe held open: the conversion has its output under way (its
    // signal handlers in place) and waits for the rest of its chunk.
    let mut stdin = child.child().stdin.take().unwrap();
    use std::io::Write;
    let line = std::fs::read_to_string(fixture("nginx_access.jsonl")).unwrap();
    stdin
        .write_all(format!("{}\n", line.lines().next().unwrap()).as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    wait_until("the conversion to start its output", 60, || out.exists());
    sigterm(child.child());
    let status = wait_exit(child.child(), "the stopped conversion", 30);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    assert!(text.contains("did not stop within 5 s"), "{text}");
    drop(stdin);
}

/// A conversion never writes over its input: named as it is, through a symbolic link or a
/// path with `..`, as the output or as the dead letters, with `--overwrite` or not. (It
/// replaced the input with what it converted, or with its dead letters; and without
/// `--overwrite` it told the user to remove "the dead letters" that were the input.)
#[test]
fn a_conversion_never_writes_over_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut text = String::from_utf8(crate::push::events("x", 5)).unwrap();
    text.push_str("not json\n");
    std::fs::write(&input, &text).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(&input, dir.path().join("link.jsonl")).unwrap();
    let out = dir.path().join("out.parquet");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let dotted = s(&dir.path().join("sub/../in.jsonl"));
    let link = s(&dir.path().join("link.jsonl"));
    for (target, extra) in [
        (input.clone(), vec!["--format", "json", "--overwrite"]),
        (dir.path().join("sub/../in.jsonl"), vec!["--format", "json"]),
        (
            dir.path().join("link.jsonl"),
            vec!["--format", "json", "--overwrite"],
        ),
        (out.clone(), vec!["--dead-letters", &dotted, "--overwrite"]),
        (out.clone(), vec!["--dead-letters", &link]),
    ] {
        let err = convert_refused(&input, &target, &extra);
        assert!(
            err.contains("names the input file itself"),
            "{extra:?}: {err}"
        );
        assert_eq!(std::fs::read_to_string(&input).unwrap(), text, "{extra:?}");
        assert!(!out.exists());
    }
}

/// A conversion whose every record is a dead letter (CSV read as JSON) fails, saying so: it
/// exited 0, and a script went on with an empty output.
#[test]
fn a_conversion_of_nothing_but_dead_letters_fails() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "ts,host\n2024-05-01T00:00:00Z,a\n2024-05-01T00:00:01Z,b\n",
    )
    .unwrap();
    let out = dir.path().join("out.parquet");
    let err = convert_refused(&input, &out, &[]);
    assert!(
        err.contains("every one of the 3 records is a dead letter"),
        "{err}"
    );
    let dl = files_under(&dir.path().join("_dead_letters"), true);
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dead_letters(&dl[0]).len(), 3);
    // One good record among them is a conversion.
    let mut text = std::fs::read_to_string(&input).unwrap();
    text.push_str(std::str::from_utf8(&crate::push::events("x", 1)).unwrap());
    std::fs::write(&input, text).unwrap();
    let o = convert(&schema("nginx_access"), &input, &out, &["--overwrite"]);
    assert!(o.contains("1 rows"), "{o}");
}

/// A binary field written to JSON lines and to CSV reads back as the same bytes with the same
/// schema (base64, the field's default encoding). Before, both wrote hex, which the field read
/// as base64 without an error (`7369676e6564` is valid base64): other bytes, silently.
#[test]
fn binary_fields_written_as_text_read_back_as_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("bin.toml");
    std::fs::write(
        &schema,
        "name = \"bin\"\n[[fields]]\nname = \"sig\"\ntype = \"binary\"\n",
    )
    .unwrap();
    let input = dir.path().join("in.jsonl");
    // "signed", three bytes that are not UTF-8, and nothing.
    std::fs::write(
        &input,
        "{\"sig\":\"c2lnbmVk\"}\n{\"sig\":\"/+7d\"}\n{\"sig\":\"\"}\n",
    )
    .unwrap();
    let read = |path: &std::path::Path| -> Vec<Vec<u8>> {
        use arrow::array::AsArray;
        let f = std::fs::File::open(path).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 1024).unwrap();
        r.flat_map(|b| {
            let b = b.unwrap();
            let c = b.column(0).as_binary::<i32>().clone();
            c.iter().map(|v| v.unwrap().to_vec()).collect::<Vec<_>>()
        })
        .collect()
    };
    let want = vec![b"signed".to_vec(), vec![0xff, 0xee, 0xdd], Vec::new()];
    for (text, extra) in [
        ("t.jsonl", &["--compression", "none"][..]),
        ("t.csv", &[][..]),
    ] {
        let out = dir.path().join(text);
        convert(&schema, &input, &out, extra);
        let kind = if text.ends_with(".csv") {
            "csv"
        } else {
            "json"
        };
        let back = dir.path().join(format!("{text}.parquet"));
        convert(&schema, &out, &back, &["--input-format", kind]);
        assert_eq!(
            read(&back),
            want,
            "{text}: {}",
            std::fs::read_to_string(&out).unwrap()
        );
    }
}

/// A device or a folder as the input is refused at once, having written nothing: `/dev/zero`
/// was read for ever (one line without end, skipped 64 KiB at a time), and a stop left the
/// output's temporary file behind.
#[test]
fn a_device_or_a_folder_as_the_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.parquet");
    for input in ["/dev/zero", "/tmp"] {
        let err = convert_refused(std::path::Path::new(input), &out, &[]);
        assert!(err.contains("is not a file"), "{input}: {err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
