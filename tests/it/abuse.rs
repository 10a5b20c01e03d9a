//! Fault and abuse: hostile input on every source must become dead letters or a clear error,
//! never a crash. Each test drives the real binary (convert, a push over HTTP, a Kafka topic on
//! the mock broker).

use std::io::Write;
use std::path::Path;

use crate::admin::http;
use crate::helpers::*;
use crate::kafka::cluster;
use crate::push::http_client::Client;
use crate::push::{push_job, start};

/// `n` lines that are not JSON.
fn garbage(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * 2);
    for _ in 0..n {
        v.extend_from_slice(b"x\n");
    }
    v
}

/// JSON lines of the dead-letter files under `dir` (hidden files skipped).
pub(crate) fn dead_letter_lines(dir: &Path) -> Vec<serde_json::Value> {
    files_under(dir, false)
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// 100,000 consecutive malformed lines (and a few good ones) in one file: every bad line is a
/// dead letter with its line number; the run exits 0. Isolating them recursively overflowed
/// the decode thread's stack and aborted the process.
#[test]
fn convert_survives_a_long_run_of_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    f.write_all(&garbage(50_000)).unwrap();
    f.write_all(
        b"{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"good\"}\n",
    )
    .unwrap();
    f.write_all(&garbage(50_000)).unwrap();
    drop(f);
    let out = dir.path().join("out/");
    let stdout = sluice_ok(&[
        "convert",
        "--schema",
        schema("nginx_access").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(parquet_rows(&out.join("bad.parquet")), 1, "{stdout}");
    let dl = dead_letter_lines(&out.join("_dead_letters"));
    assert_eq!(dl.len(), 100_000, "{stdout}");
    let mut lines: Vec<u64> = dl.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    lines.sort_unstable();
    assert_eq!(lines[0], 1);
    assert_eq!(
        lines[50_000], 50_002,
        "the good line 50,001 is not a dead letter"
    );
    assert_eq!(*lines.last().unwrap(), 100_001);
}

/// Pushes `body` to a new push job, which must answer 200 with `dead` dead letters and keep
/// serving: a good push after it lands, and both are committed. Returns the job's output
/// folder (with the tempdir holding it) after a clean stop.
fn push_bad_then_good(body: &[u8], dead: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (mut child, addr) = start(&job, &dir.path().join("run.log"));
    let mut c = Client::new(&addr);
    let (code, _, b) = c.post("/v1/repos/nginx_access/data", "", body).unwrap();
    assert_eq!(code, 200, "{b}");
    assert!(b.contains(&format!("\"dead_letters\":{dead}")), "{b}");
    let good =
        b"{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"after\"}\n";
    let (code, _, b) = c.post("/v1/repos/nginx_access/data", "", good).unwrap();
    assert_eq!(code, 200, "{b}");
    assert!(child.try_wait().unwrap().is_none(), "the process died");
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
    let out = dir.path().join("out");
    push_until(
        &format!("the good row and the {dead} dead letters to be committed"),
        60,
        || {},
        || {
            trace_ids(&out).contains_key("after")
                && dead_letter_lines(&out.join("_dead_letters")).len() == dead
        },
    );
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(trace_ids(&out).get("after"), Some(&1));
    assert_eq!(dead_letter_lines(&out.join("_dead_letters")).len(), dead);
    (dir, out)
}

/// One short push of 8,192 lines that are not JSON (16 KiB): 200 with 8,192 dead letters, and
/// the process keeps serving (a good push after it lands). It used to abort the process.
#[test]
fn a_push_of_garbage_lines_is_dead_letters_not_a_crash() {
    let body = garbage(8192);
    assert_eq!(body.len(), 16 * 1024);
    push_bad_then_good(&body, 8192);
}

/// A record nested 100,000 levels deep where a string belongs: its dead letter, and the
/// process keeps serving. arrow-json's message for the type error serialized the value by
/// recursion, which overflowed the stack and aborted the process (a 356-byte gzip push did
/// the same).
#[test]
fn a_push_of_a_deeply_nested_record_is_a_dead_letter_not_a_crash() {
    let n = 100_000;
    let body = format!(
        "{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":{}1{},\"trace_id\":\"deep\"}}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    let (_dir, out) = push_bad_then_good(body.as_bytes(), 1);
    let dl = dead_letter_lines(&out.join("_dead_letters"));
    let reason = dl[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("nested deeper than 1000 levels"),
        "{reason}"
    );
    assert_eq!(dl[0]["class"], "malformed");
    assert!(!trace_ids(&out).contains_key("deep"));
}

/// A topic of plain-text messages (not JSON): every message is a dead letter with its
/// partition and offset, and the backfill ends normally. Replayed at every start, a crash here
/// was a crash loop.
#[test]
fn a_kafka_topic_of_plain_text_is_dead_letters() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let topic = "plain";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let n = 40_000;
    for i in 0..n {
        let payload = format!("plain text line {i}");
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .partition(0)
            .payload(payload.as_bytes());
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(std::time::Duration::from_millis(50));
        }
    }
    // Then: a message of whitespace only, a raw line break inside a JSON string (invalid
    // JSON that turning the break into a space would "repair"), and a line break between
    // tokens (valid JSON: a row).
    let specials: [&[u8]; 3] = [
        b" \t ",
        b"{\"ts\":\"2024-05-01T10:00:00Z\",\"trace_id\":\"multi\nline\"}",
        b"{\"ts\":\"2024-05-01T10:00:00Z\",\r\n\"trace_id\":\"spread\"}",
    ];
    for payload in specials {
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .partition(0)
            .payload(payload);
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(std::time::Duration::from_millis(50));
        }
    }
    producer.flush(std::time::Duration::from_secs(60)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"
[job]
name = "plain"
state_dir = "state"
[source]
kind = "kafka"
brokers = {bootstrap:?}
topics = [{topic:?}]
[repo]
schema = {:?}
[sink]
url = "out/"
"#,
            schema("nginx_access").display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("backfill.log");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["backfill", job.to_str().unwrap()])
        .current_dir(dir.path())
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.status.success(), "{:?}\n{text}", out.status);
    let dl = dead_letter_lines(&dir.path().join("out/_dead_letters"));
    assert_eq!(dl.len(), n + 2, "{}", String::from_utf8_lossy(&out.stdout));
    let mut offsets: Vec<u64> = dl.iter().map(|d| d["offset"].as_u64().unwrap()).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), n + 2, "each message once");
    assert!(dl.iter().all(|d| d["source"] == "plain-0"), "{}", dl[0]);
    let at = |offset: usize| {
        dl.iter()
            .find(|d| d["offset"] == offset as u64)
            .unwrap_or_else(|| panic!("no dead letter at offset {offset}"))
    };
    let blank = at(n);
    assert_eq!(blank["record"], " \t ", "{blank}");
    assert!(
        blank["reason"]
            .as_str()
            .unwrap()
            .contains("only whitespace"),
        "{blank}"
    );
    let broken = at(n + 1);
    assert_eq!(
        broken["record"].as_str().unwrap().as_bytes(),
        specials[1],
        "the dead letter holds the message's own bytes: {broken}"
    );
    assert!(
        broken["reason"]
            .as_str()
            .unwrap()
            .contains("line break inside a string"),
        "{broken}"
    );
    assert_eq!(trace_ids(&dir.path().join("out")).get("spread"), Some(&1));
}

/// A file job over CSV files whose headers order the columns differently: each file is read
/// by its own header (the first file's header used to be applied to every file, swapping
/// values between columns), and a file whose header lacks a required column stops the start
/// with its name.
#[test]
fn each_csv_file_is_read_by_its_own_header() {
    let dir = tempfile::tempdir().unwrap();
    let schema_path = dir.path().join("pairs.toml");
    std::fs::write(
        &schema_path,
        "name = \"pairs\"\n[[fields]]\nname = \"id\"\ntype = \"string\"\nnullable = false\n\
         [[fields]]\nname = \"n\"\ntype = \"int64\"\n",
    )
    .unwrap();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    std::fs::write(&a, "id,n\na1,1\na2,2\n").unwrap();
    std::fs::write(&b, "n,extra,id\n10,x,b1\n20,y,b2\n").unwrap();
    let job = |paths: &[&Path]| {
        let paths: Vec<String> = paths
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        let p = dir.path().join("job.toml");
        std::fs::write(
            &p,
            format!(
                "[job]\nname = \"csv\"\nstate_dir = \"state\"\n[source]\nkind = \"file\"\n\
                 format = \"csv\"\nheader = true\npaths = [{}]\n[repo]\nschema = {:?}\n\
                 [sink]\nurl = \"out/\"\nformat = \"csv\"\n",
                paths.join(", "),
                schema_path.display().to_string()
            ),
        )
        .unwrap();
        p
    };
    let j = job(&[&a, &b]);
    sluice_ok(&["run", j.to_str().unwrap()]);
    let mut rows: Vec<String> = files_under(&dir.path().join("out"), true)
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines().skip(1).map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    rows.sort();
    assert_eq!(rows, ["a1,1", "a2,2", "b1,10", "b2,20"]);

    let c = dir.path().join("c.csv");
    std::fs::write(&c, "n\n5\n").unwrap();
    let j = job(&[&a, &c]);
    let out = sluice(&["validate", j.to_str().unwrap()]);
    let run = sluice(&["run", j.to_str().unwrap()]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("c.csv") && err.contains("`id`"),
        "{err}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `f` holds, pushing with `push` every 100 ms meanwhile; fails loudly with `what`.
fn push_until(what: &str, secs: u64, mut push: impl FnMut(), mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {secs} s for {what}"
        );
        push();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A partition whose records all become dead letters, and one that only trickles, still commit
/// while input keeps arriving: the first by records consumed (not rows written), the second by
/// `max_age`. Before, neither committed until the input stopped for `idle`, so checkpoints,
/// dead letters and lag froze.
#[test]
fn partitions_without_rows_or_with_a_trickle_still_commit() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("max_rows = 5000", "max_rows = 100\nmax_age = \"300s\"")
        .replace("idle = \"1s\"", "idle = \"300s\"");
    std::fs::write(&job, &text).unwrap();
    let out = dir.path().join("out");
    let dead_dir = out.join("_dead_letters");

    let (child, addr) = start(&job, &dir.path().join("run1.log"));
    let mut c = Client::new(&addr);
    push_until(
        "the dead letters of a partition without rows to be committed",
        30,
        || {
            let (code, _, b) = c
                .post("/v1/repos/nginx_access/data", "", &garbage(50))
                .unwrap();
            assert_eq!(code, 200, "{b}");
        },
        || !dead_letter_lines(&dead_dir).is_empty(),
    );
    let (_, metrics) = http(&addr, "GET", "/metrics", None);
    assert!(
        crate::admin::metric_sum(&metrics, "sluice_dead_letters_found_total") >= 100.0,
        "{metrics}"
    );
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());

    let text = text
        .replace("max_rows = 100\n", "max_rows = 1000000\n")
        .replace("max_age = \"300s\"", "max_age = \"2s\"");
    std::fs::write(&job, &text).unwrap();
    let (child, addr) = start(&job, &dir.path().join("run2.log"));
    let mut c = Client::new(&addr);
    let mut i = 0;
    push_until(
        "a trickle's rows to be committed by max_age",
        30,
        || {
            let row = format!(
                "{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"trickle-{i}\"}}\n"
            );
            i += 1;
            let (code, _, b) = c
                .post("/v1/repos/nginx_access/data", "", row.as_bytes())
                .unwrap();
            assert_eq!(code, 200, "{b}");
        },
        || trace_ids(&out).contains_key("trickle-0"),
    );
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    // The last rows may have been spilled at the stop (not yet taken by a worker): the next
    // start commits them.
    let (child, addr) = start(&job, &dir.path().join("run3.log"));
    crate::kafka::wait_for(&out, i, 30);
    let (code, body) = http(&addr, "POST", "/v1/tasks/nginx_access/stop", None);
    assert_eq!(code, 200, "{body}");
    assert!(child.wait_with_output().unwrap().status.success());
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), i, "every pushed row once");
    assert!(ids.values().all(|n| *n == 1));
}

/// Panics unwind: a panic while decoding some records (a library bug some value triggers; here
/// injected with `SLUICE_FAULT=panic_on:<text>`) makes exactly those records dead letters and
/// the run goes on. Under `panic = "abort"` the process died.
#[test]
fn a_panic_on_a_record_is_its_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let mut text = String::new();
    for i in 0..1000 {
        let id = if i == 17 || i == 600 {
            format!("POISON-{i}")
        } else {
            format!("ok-{i}")
        };
        text.push_str(&format!(
            "{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"{id}\"}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out/");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "convert",
            "--schema",
            schema("nginx_access").to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .env("SLUICE_FAULT", "panic_on:POISON")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(parquet_rows(&out.join("mixed.parquet")), 998);
    let dl = dead_letter_lines(&out.join("_dead_letters"));
    let mut lines: Vec<u64> = dl.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    lines.sort_unstable();
    assert_eq!(lines, vec![18, 601]);
    assert!(
        dl[0]["reason"]
            .as_str()
            .unwrap()
            .contains("inside a library"),
        "{}",
        dl[0]
    );
}

/// A record longer than file input's 64 MiB record limit is a dead letter holding its first
/// 64 MiB, and the file job goes on past it: the rows before and after land once, and a
/// second run finds nothing left. It was an error, so the job failed at every start (a
/// stuck input, with no `checkpoints skip` for files).
#[test]
fn a_file_record_over_the_limit_is_a_dead_letter_not_a_stuck_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let row = |id: &str| {
        format!("{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"{id}\"}}\n")
    };
    f.write_all(row("before").as_bytes()).unwrap();
    f.write_all(b"{\"host\":\"").unwrap();
    f.write_all(&vec![b'x'; 65 << 20]).unwrap();
    f.write_all(b"\"}\n").unwrap();
    f.write_all(row("after").as_bytes()).unwrap();
    drop(f);
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"long\"\nstate_dir = \"state\"\n[source]\nkind = \"file\"\n\
             format = \"json\"\npaths = [{:?}]\n[repo]\nschema = {:?}\n[sink]\nurl = \"out/\"\n",
            input.display().to_string(),
            schema("nginx_access").display().to_string()
        ),
    )
    .unwrap();
    for _ in 0..2 {
        sluice_ok(&["run", job.to_str().unwrap()]);
    }
    let out = dir.path().join("out");
    let ids = trace_ids(&out);
    assert_eq!(
        (ids.get("before"), ids.get("after"), ids.len()),
        (Some(&1), Some(&1), 2),
        "{ids:?}"
    );
    let dl = dead_letter_lines(&out.join("_dead_letters"));
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["line"], 2);
    assert_eq!(dl[0]["offset"], row("before").len());
    assert_eq!(dl[0]["record"].as_str().unwrap().len(), 64 << 20);
    let reason = dl[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("record longer than the 67108864 byte record limit"),
        "{reason}"
    );
}

/// A body under a transfer coding the server does not read (`gzip, chunked`): refused (501),
/// naming the header to use. Before, its gzip bytes reached the decoder as text: 200, and
/// every line a dead letter of bytes.
#[test]
fn a_push_under_a_transfer_coding_other_than_chunked_is_refused() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let line =
        b"{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"te\"}\n";
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(line).unwrap();
    let gz = enc.finish().unwrap();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut req = format!(
        "POST /v1/repos/nginx_access/data HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        gz.len()
    )
    .into_bytes();
    req.extend_from_slice(&gz);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    s.write_all(&req).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 501") && answer.contains("Content-Encoding: gzip"),
        "{answer}"
    );
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    assert!(trace_ids(&dir.path().join("out")).is_empty());
    assert!(dead_letter_lines(&dir.path().join("out/_dead_letters")).is_empty());
}

/// A body chunked twice (`chunked, chunked`, or two such headers) is refused (400): the server
/// takes one layer off, and the inner framing was taken as the body's records (dead letters
/// for JSON, rows for text). A client that shuts its side of the connection once its request
/// is sent (`nc -N`) still gets its answer: its end of input aborted the request, whose
/// records were taken with no answer (a retry then took them again).
#[test]
fn a_body_chunked_twice_is_refused_and_a_half_closed_client_is_answered() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let line = |id: &str| {
        format!("{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"{id}\"}}\n")
    };
    let chunk = |body: &str| format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let send = |head: &str, body: &str, half_close: bool| -> String {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let req = format!(
            "POST /v1/repos/nginx_access/data HTTP/1.1\r\nHost: {addr}\r\n{head}Connection: close\r\n\r\n{body}"
        );
        s.write_all(req.as_bytes()).unwrap();
        if half_close {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    let twice = chunk(&chunk(&line("twice")));
    for head in [
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let answer = send(head, &twice, false);
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("chunked more than once"),
            "{head}: {answer}"
        );
    }
    // Empty list items count for nothing: chunked once.
    let answer = send(
        "Transfer-Encoding: , chunked\r\n",
        &chunk(&line("once")),
        false,
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "chunked once: {answer}");
    let body = line("half");
    let answer = send(&format!("Content-Length: {}\r\n", body.len()), &body, true);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "half-closed: {answer:?}"
    );
    let out = dir.path().join("out");
    wait_until(
        "the half-closed client's record to be committed",
        60,
        || trace_ids(&out).get("half") == Some(&1),
    );
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    let ids = trace_ids(&out);
    assert_eq!((ids.len(), ids.get("once")), (2, Some(&1)), "{ids:?}");
    assert!(dead_letter_lines(&out.join("_dead_letters")).is_empty());
}
