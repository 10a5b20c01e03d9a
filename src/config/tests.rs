//! Job file parsing and checks.

use super::*;

const GOOD: &str = r#"
[job]
name = "web"
[source]
kind = "file"
paths = ["a.jsonl"]
[repo]
schema = "schemas/nginx_access.toml"
[sink]
url = "file:///tmp/out/"
[sink.rotation]
max_rows = 1000
idle = "5s"
[sink.partition]
template = "dt={ts:%Y-%m-%d}/"
"#;

/// `file:out/` (no `//`) would be a local folder named `file:out`: refused, naming the form.
#[test]
fn a_scheme_without_slashes_is_refused() {
    let bad = GOOD.replace("file:///tmp/out/", "file:out-u2/");
    let e = Job::parse(&bad, Path::new("j.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sink.url") && e.contains("write `file://…`"),
        "{e}"
    );
    let s3 = GOOD.replace("file:///tmp/out/", "S3:bucket/x/");
    assert!(Job::parse(&s3, Path::new("j.toml")).is_err());
    let plain = GOOD.replace("file:///tmp/out/", "out:2024/");
    assert!(
        Job::parse(&plain, Path::new("j.toml")).is_ok(),
        "a plain folder name with a colon"
    );
    // A scheme mistyped, one slash: it was a local folder `htp:`.
    let typo = GOOD.replace("file:///tmp/out/", "htp:/nowhere");
    let e = Job::parse(&typo, Path::new("j.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("looks like a URL of scheme `htp:`"), "{e}");
    let dotted = GOOD.replace("file:///tmp/out/", "./htp:/nowhere");
    assert!(Job::parse(&dotted, Path::new("j.toml")).is_ok());
    // The dead letters' URL is checked alike.
    let dead = format!("{GOOD}[dead_letters]\nurl = \"htp:/nowhere\"\n");
    let e = Job::parse(&dead, Path::new("j.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dead_letters.url"), "{e}");
    // `file://` alone names no folder (it was the job file's own).
    for empty in ["file://", "file:///"] {
        let e = Job::parse(
            &GOOD.replace("file:///tmp/out/", empty),
            Path::new("j.toml"),
        );
        assert_eq!(e.is_err(), empty == "file://", "{empty}: {e:?}");
    }
}

#[test]
fn good_job_loads_with_defaults() {
    let j = Job::parse(GOOD, Path::new("/etc/sluice/job.toml")).unwrap();
    assert_eq!(j.channel_bytes, 64 * 1024 * 1024);
    assert_eq!(j.idle, Duration::from_secs(5));
    assert_eq!(j.base, PathBuf::from("/etc/sluice"));
    assert_eq!(
        j.resolve_url("file://./out/"),
        "/etc/sluice/./out/".to_string()
    );
    // RFC 8089: `localhost` is this machine, not a folder named so.
    for (url, resolved) in [
        ("file://localhost/data/out/", "file://localhost/data/out/"),
        ("file://LocalHost/data/out/", "file://LocalHost/data/out/"),
        ("file:///data/out/", "file:///data/out/"),
        ("file://out/", "/etc/sluice/out/"),
        ("file://localhostx/out/", "/etc/sluice/localhostx/out/"),
        ("out/", "/etc/sluice/out/"),
        ("s3://b/p/", "s3://b/p/"),
    ] {
        assert_eq!(j.resolve_url(url), resolved, "{url}");
    }
}

#[test]
fn parquet_encodings_are_delta_unless_plain_is_asked_for() {
    let j = Job::parse(GOOD, Path::new("j.toml")).unwrap();
    assert_eq!(j.format.parquet_encodings, ParquetEncodings::Delta);
    let plain = GOOD.replace(
        "[sink.rotation]",
        "parquet_encodings = \"plain\"\n[sink.rotation]",
    );
    let j = Job::parse(&plain, Path::new("j.toml")).unwrap();
    assert_eq!(j.format.parquet_encodings, ParquetEncodings::Plain);
    let bad = GOOD.replace(
        "[sink.rotation]",
        "parquet_encodings = \"v2\"\n[sink.rotation]",
    );
    let e = Job::parse(&bad, Path::new("j.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("parquet_encodings: `v2` (expected delta or plain)"),
        "{e}"
    );
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let bad = GOOD
        .replace("max_rows = 1000", "max_rows = 0")
        .replace("idle = \"5s\"", "idle = \"soon\"")
        .replace("name = \"web\"", "name = \"web export\"");
    let e = Job::parse(&bad, Path::new("j.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sink.rotation.max_rows: must be positive"),
        "{e}"
    );
    assert!(e.contains("sink.rotation.idle"), "{e}");
    assert!(e.contains("job.name"), "{e}");
    let unknown = GOOD.replace("[sink.rotation]", "[sink.rotation]\nmax_rowz = 3");
    let e = Job::parse(&unknown, Path::new("j.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_rowz"), "{e}");
}

#[test]
fn dead_letters_go_to_files_or_a_topic() {
    let with = |section: &str| {
        Job::parse(
            &format!("{GOOD}[dead_letters]\n{section}\n"),
            Path::new("j.toml"),
        )
        .map_err(|e| e.to_string())
    };
    let e = with("url = \"d/\"\ntopic = \"dlq\"").unwrap_err();
    assert!(e.contains("set one"), "{e}");
    let e = with("topic = \"dlq\"").unwrap_err();
    assert!(e.contains("dead_letters: brokers: needed"), "{e}");
    let e = with("brokers = \"b:9092\"").unwrap_err();
    assert!(e.contains("which is not set"), "{e}");
    let e = with("topic = \"dlq\"\nbrokers = \"b:9092\"\ntimeout = \"soon\"").unwrap_err();
    assert!(e.contains("dead_letters.timeout"), "{e}");
    let j = with("topic = \"dlq\"\nbrokers = \"b:9092\"\ntimeout = \"5s\"").unwrap();
    assert_eq!(j.dead_letter_timeout, Duration::from_secs(5));
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
    assert_eq!(parse_bytes("1.5k").unwrap(), 1500);
    assert!(parse_bytes("12 parsecs").is_err());
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
    assert!(parse_duration("-1s").is_err());
}

/// Absurd sizes and durations are errors naming their key, never a panic (a duration too large
/// for `Duration`, a deadline `now + d` past what `Instant` holds, sizes near `u64::MAX`).
#[test]
fn absurd_sizes_and_durations_are_errors_not_panics() {
    let huge = "9".repeat(400);
    for d in [
        "99999999999999999999999d".to_string(),
        format!("{huge}s"),
        format!("{huge}.5ms"),
        "3651d".into(),
    ] {
        let e = parse_duration(&d).unwrap_err();
        assert!(e.contains("longest duration"), "{d}: {e}");
    }
    assert_eq!(
        parse_duration("3650d").unwrap(),
        Duration::from_secs(3650 * 86400)
    );
    for b in [
        huge.clone(),
        "18446744073709551615".into(),
        "2000000GiB".into(),
        "9999999GiB".into(),
    ] {
        let e = parse_bytes(&b).unwrap_err();
        assert!(e.contains("largest size"), "{b}: {e}");
    }
    let text = GOOD
        .replace("[job]\n", &format!("[job]\nstop_deadline = \"{huge}d\"\n"))
        .replace(
            "idle = \"5s\"",
            "idle = \"5s\"\nmax_span = \"1e9d\"\nmax_bytes = \"99999999999999999999999\"",
        )
        + "[dead_letters]\ntimeout = \"30d\"\n";
    let problems = Job::parse(&text, Path::new("/etc/sluice/job.toml")).expect_err("refused");
    let all = format!("{problems:?}");
    for key in [
        "job.stop_deadline",
        "sink.rotation.max_span",
        "sink.rotation.max_bytes",
        "dead_letters.timeout",
    ] {
        assert!(all.contains(key), "{key} not named: {all}");
    }
}

#[test]
fn a_stop_deadline_past_the_poll_interval_is_refused_for_kafka() {
    let kafka = GOOD.replace(
        "kind = \"file\"\npaths = [\"a.jsonl\"]",
        "kind = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"t\"]",
    );
    Job::parse(&kafka, Path::new("/etc/sluice/job.toml")).expect("the defaults fit");
    let long = kafka.replace("[job]\n", "[job]\nstop_deadline = \"10m\"\n");
    let e = format!(
        "{:?}",
        Job::parse(&long, Path::new("/etc/sluice/job.toml")).expect_err("refused")
    );
    assert!(
        e.contains("job.stop_deadline") && e.contains("300000"),
        "{e}"
    );
    let raised = long + "[source.options]\n\"max.poll.interval.ms\" = \"900000\"\n";
    Job::parse(&raised, Path::new("/etc/sluice/job.toml")).expect("a longer poll interval fits");
}

#[test]
fn librdkafka_settings_that_exactly_once_depends_on_are_refused_in_options() {
    let kafka = GOOD.replace(
        "kind = \"file\"\npaths = [\"a.jsonl\"]",
        "kind = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"t\"]",
    );
    for key in [
        "enable.auto.commit",
        "auto.offset.reset",
        "group.id",
        "partition.assignment.strategy",
        "isolation.level",
    ] {
        let text = format!("{kafka}[source.options]\n{key:?} = \"true\"\n");
        let e = format!(
            "{:?}",
            Job::parse(&text, Path::new("/etc/sluice/job.toml")).expect_err("refused")
        );
        assert!(
            e.contains("source.options") && e.contains(key),
            "{key}: {e}"
        );
    }
    let fine = format!("{kafka}[source.options]\n\"fetch.wait.max.ms\" = \"10\"\n");
    Job::parse(&fine, Path::new("/etc/sluice/job.toml")).expect("other settings pass");
    let said = format!("{kafka}[source.options]\n\"isolation.level\" = \"read_committed\"\n");
    Job::parse(&said, Path::new("/etc/sluice/job.toml")).expect("what sluice reads anyway");
}

#[test]
fn a_csv_source_takes_its_delimiter_and_a_bad_one_is_named() {
    let csv = GOOD.replace(
        "paths = [\"a.jsonl\"]",
        "paths = [\"a.csv\"]\nformat = \"csv\"\ndelimiter = \";\"",
    );
    let j = Job::parse(&csv, Path::new("j.toml")).unwrap();
    assert_eq!(
        j.input,
        crate::decode::InputKind::Csv {
            delimiter: b';',
            header: true
        }
    );
    let json = GOOD.replace(
        "paths = [\"a.jsonl\"]",
        "paths = [\"a.jsonl\"]\ndelimiter = \",\"",
    );
    let e = Job::parse(&json, Path::new("j.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("source.delimiter: a delimiter applies to csv and text input, not json"),
        "{e}"
    );
}

/// A push body and the line end added to one that lacks it are one record of the WAL (at
/// most 1 GiB): `max_body` must be less than that.
#[test]
fn a_push_body_limit_of_a_whole_wal_record_is_refused() {
    let push = |max_body: &str| {
        format!(
            "[job]\nname = \"p\"\n[source]\nkind = \"push\"\ndurability = \"wal\"\nmax_body = \"{max_body}\"\nmax_in_flight = \"8GiB\"\n[repo]\nschema = \"schemas/nginx_access.toml\"\n[sink]\nurl = \"file:///tmp/out/\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
        )
    };
    let problems =
        Job::parse(&push("1GiB"), Path::new("/etc/sluice/job.toml")).expect_err("refused");
    let all = format!("{problems:?}");
    assert!(
        all.contains("source.max_body") && all.contains("not less than"),
        "{all}"
    );
    Job::parse(&push("1023MiB"), Path::new("/etc/sluice/job.toml")).unwrap();
}

/// Job and repo names name folders (`_sluice/<job>.<repo>-backfill/`): past 100 bytes each
/// they are refused at load, where a name past 255 bytes failed at start with the OS's error.
#[test]
fn a_job_or_repo_name_past_100_bytes_is_refused_at_load() {
    let ok = "j".repeat(MAX_NAME_BYTES);
    assert!(Job::parse(
        &GOOD.replace("\"web\"", &format!("\"{ok}\"")),
        Path::new("j.toml")
    )
    .is_ok());
    let long = "j".repeat(MAX_NAME_BYTES + 1);
    let e = Job::parse(
        &GOOD.replace("\"web\"", &format!("\"{long}\"")),
        Path::new("j.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("job.name: is 101 bytes; at most 100"), "{e}");
    let repos = GOOD.replace(
        "[sink.partition]",
        &format!("[[repos]]\nname = \"{long}\"\n[sink.partition]"),
    );
    let e = Job::parse_all(&repos, Path::new("j.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 100 bytes"), "{e}");
}

/// `sink.max_open_files` past 4,096 is refused: a commit names every file open and every file
/// its item parked, and the records naming them must stay within what is read back.
#[test]
fn max_open_files_past_the_commit_bound_is_refused() {
    let at = GOOD.replace(
        "[sink.rotation]",
        &format!("max_open_files = {MAX_OPEN_FILES}\n[sink.rotation]"),
    );
    assert!(Job::parse(&at, Path::new("j.toml")).is_ok());
    let past = GOOD.replace(
        "[sink.rotation]",
        &format!("max_open_files = {}\n[sink.rotation]", MAX_OPEN_FILES + 1),
    );
    let e = Job::parse(&past, Path::new("j.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sink.max_open_files: at most 4096"), "{e}");
}

/// `source.chunk_bytes` past 1 GiB is refused, for every source that takes it.
#[test]
fn chunk_bytes_past_a_gigabyte_is_refused() {
    let kafka = "kind = \"kafka\"\nbrokers = \"b:9092\"\ntopics = [\"t\"]";
    let push = "kind = \"push\"";
    for source in ["kind = \"file\"\npaths = [\"a.jsonl\"]", kafka, push] {
        let job = |size: &str| {
            let text = GOOD.replace(
                "kind = \"file\"\npaths = [\"a.jsonl\"]",
                &format!("{source}\nchunk_bytes = \"{size}\""),
            );
            let text = match source == push {
                true => text.replace("[sink]", "[admin]\nlisten = \"127.0.0.1:0\"\n[sink]"),
                false => text,
            };
            Job::parse(&text, Path::new("j.toml")).map_err(|e| e.to_string())
        };
        assert!(job("1GiB").is_ok(), "{source}: {:?}", job("1GiB").err());
        let e = job("1025MiB").unwrap_err();
        assert!(
            e.contains("source.chunk_bytes") && e.contains("1GiB"),
            "{source}: {e}"
        );
    }
}

/// A misspelled `[sink.storage]` key is the job file's error, told at load (and by
/// `validate`): it was found only by each task's start, which a supervised repo retried for
/// ever.
#[test]
fn a_misspelled_storage_key_is_refused_at_load() {
    let bad = GOOD.replace(
        "[sink.rotation]",
        "[sink.storage]\nendpont = \"http://127.0.0.1:8333\"\n[sink.rotation]",
    );
    let e = Job::parse(&bad, Path::new("j.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sink.storage") && e.contains("unknown field `endpont`"),
        "{e}"
    );
    let good = GOOD.replace(
        "[sink.rotation]",
        "[sink.storage]\nendpoint = \"http://127.0.0.1:8333\"\nmax_retries = 1\n[sink.rotation]",
    );
    Job::parse(&good, Path::new("j.toml")).unwrap();
}

/// An admin token no request could send (spaces at its ends, bytes a header cannot hold) is
/// refused: every request was refused with 401.
#[test]
fn an_admin_token_no_request_could_send_is_refused() {
    for (token, ok) in [
        ("abc ", false),
        ("pässwort", false),
        ("a b", true),
        ("s3cret", true),
    ] {
        let text = format!("{GOOD}[admin]\nlisten = \"127.0.0.1:0\"\ntoken = {token:?}\n");
        let r = Job::parse(&text, Path::new("j.toml"));
        match ok {
            true => assert!(r.is_ok(), "{token:?}: {:?}", r.err()),
            false => {
                let e = r.unwrap_err().to_string();
                assert!(
                    e.contains("admin.token") && e.contains("printable ASCII"),
                    "{token:?}: {e}"
                );
            }
        }
    }
}

/// A dead-letter topic's `acks` weaker than `all` is refused: a dead letter acknowledged by
/// the leader alone can be lost after the commit that counted it.
#[test]
fn dead_letters_sent_with_weaker_acks_are_refused() {
    let topic = GOOD.replace(
        "[sink.rotation]",
        "[dead_letters]\ntopic = \"dead\"\nbrokers = \"127.0.0.1:9092\"\n[dead_letters.options]\nACKS\n[sink.rotation]",
    );
    for (opt, ok) in [
        ("acks = \"1\"", false),
        ("\"request.required.acks\" = \"0\"", false),
        ("acks = \"all\"", true),
        ("acks = \"-1\"", true),
    ] {
        let r = Job::parse(&topic.replace("ACKS", opt), Path::new("j.toml"));
        match ok {
            true => assert!(r.is_ok(), "{opt}: {:?}", r.err()),
            false => {
                let e = r.unwrap_err().to_string();
                assert!(
                    e.contains("dead_letters") && e.contains("acks = all"),
                    "{opt}: {e}"
                );
            }
        }
    }
}
