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
