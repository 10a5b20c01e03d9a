//! Dead letters to a Kafka topic: malformed messages and rows a stage fails on arrive as
//! messages carrying the original bytes, their position as the key, and the reason, class,
//! stage and source position as headers; no dead-letter files are written; the checkpoints
//! count them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::helpers::*;
use crate::kafka::{assert_once, produce};

/// Every message of `topic` (one partition), read from the start until `n` arrived or 30 s.
fn consume_all(
    bootstrap: &str,
    topic: &str,
    n: usize,
) -> Vec<(String, Vec<u8>, HashMap<String, String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            m.payload().unwrap_or_default().to_vec(),
            headers,
        ));
    }
    out
}

#[test]
fn dead_letters_go_to_a_kafka_topic_with_their_reason_stage_and_position() {
    let c = MockCluster::new(1).unwrap();
    c.create_topic("events", 4, 1).unwrap();
    c.create_topic("dead", 1, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    let n = 1000;
    let bad = produce(&bootstrap, "events", n);
    assert_eq!(bad, 2);
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"
[job]
name = "dlq"
state_dir = "state"
[source]
kind = "kafka"
brokers = {bootstrap:?}
topics = ["events"]
[source.options]
"fetch.wait.max.ms" = "10"
[repo]
schema = {:?}
[[repo.stages]]
name = "one"
select = ["*", "CAST(CASE WHEN trace_id = 't7' THEN 'x' ELSE '1' END AS INT) AS one"]
[sink]
url = "out/"
[dead_letters]
topic = "dead"
"#,
            schema("nginx_access").display().to_string()
        ),
    )
    .unwrap();
    let out = sluice_ok(&["backfill", job.to_str().unwrap()]);
    assert!(out.contains("999 rows, 3 dead letters"), "{out}");
    let outdir = dir.path().join("out");
    assert_eq!(trace_ids(&outdir).len(), n - 1);
    assert!(
        !outdir.join("_dead_letters").exists(),
        "no dead-letter files when they go to a topic"
    );

    let letters = consume_all(&bootstrap, "dead", 3);
    assert_eq!(letters.len(), 3, "{letters:?}");
    let (malformed, staged): (Vec<_>, Vec<_>) = letters
        .iter()
        .partition(|(_, _, h)| h["sluice.class"] == "malformed");
    assert_eq!(malformed.len(), 2, "{letters:?}");
    for (key, value, h) in &malformed {
        assert_eq!(value, b"{\"ts\": not json");
        assert_eq!(
            key,
            &format!("{}@{}", h["sluice.source"], h["sluice.offset"])
        );
        assert!(h["sluice.source"].starts_with("events-"), "{h:?}");
        assert_eq!(h["sluice.job"], "dlq-backfill");
        assert_eq!(h["sluice.repo"], "nginx_access");
        assert!(!h.contains_key("sluice.stage"));
    }
    let (_, value, h) = staged[0];
    assert_eq!(h["sluice.class"], "stage");
    assert_eq!(h["sluice.stage"], "one");
    assert!(h["sluice.reason"].contains("stage `one`"), "{h:?}");
    let record: serde_json::Value = serde_json::from_slice(value).unwrap();
    assert_eq!(record["trace_id"], "t7", "the original record");

    // A backfill given another --url keeps its dead letters beside its data: in the job's
    // topic they would be the live job's own dead letters a second time.
    let copy = dir.path().join("copy");
    let out = sluice_ok(&[
        "backfill",
        job.to_str().unwrap(),
        "--name",
        "copy",
        "--url",
        copy.to_str().unwrap(),
    ]);
    assert!(out.contains("999 rows, 3 dead letters"), "{out}");
    let beside = files_under(&copy.join("_dead_letters"), true);
    assert!(!beside.is_empty(), "no dead-letter files beside --url");

    // The broker refuses the first deliveries: the commits waiting for them fail, their
    // partitions are replayed, and every dead letter arrives (at least once); the files are
    // still exactly once.
    c.create_topic("dead2", 1, 1).unwrap();
    std::fs::write(
        &job,
        std::fs::read_to_string(&job)
            .unwrap()
            .replace("topic = \"dead\"", "topic = \"dead2\"")
            .replace("name = \"dlq\"", "name = \"dlq2\"")
            .replace("url = \"out/\"", "url = \"out2/\""),
    )
    .unwrap();
    c.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 2],
    );
    let out = sluice(&["backfill", job.to_str().unwrap()]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("dead letter(s) not delivered"), "{log}");
    assert_once(&dir.path().join("out2"), n - 1);
    let letters = consume_all(&bootstrap, "dead2", 3);
    let keys: std::collections::HashSet<&String> = letters.iter().map(|(k, _, _)| k).collect();
    assert_eq!(keys.len(), 3, "every dead letter arrived: {letters:?}");
}

/// A dead letter larger than the topic's messages may be (here `message.max.bytes` = 2000) is
/// sent with the part of its record that fits and a `sluice.truncated_from` header; before,
/// the send failed at every replay and the partition never committed again.
#[test]
fn a_dead_letter_larger_than_a_message_is_cut_not_a_stuck_partition() {
    let c = MockCluster::new(1).unwrap();
    c.create_topic("big", 1, 1).unwrap();
    c.create_topic("bigdead", 1, 1).unwrap();
    let options = "[dead_letters.options]\n\"message.max.bytes\" = \"2000\"\n";
    one_large_dead_letter_fits(
        &c.bootstrap_servers(),
        ("big", "bigdead"),
        options,
        (2000, 5000),
        &|| (),
    );
}

/// A topic whose `max.message.bytes` the brokers do not tell (no permission to describe it)
/// and that is smaller than the producer's 1 MB: the broker refuses a dead letter of 300 kB
/// as too large (here the Mock broker, twice). Each refusal halves the size dead letters are
/// cut to, and the replay sends it cut below 250 kB. Before, the same message was sent whole
/// at every replay, and a broker that enforces its size refused it for good: the partition
/// never committed again.
#[test]
fn a_dead_letter_the_broker_refuses_as_too_large_is_cut_smaller_at_its_replay() {
    let c = MockCluster::new(1).unwrap();
    c.create_topic("large", 1, 1).unwrap();
    c.create_topic("largedead", 1, 1).unwrap();
    let refuse = || {
        c.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 2],
        )
    };
    let log = one_large_dead_letter_fits(
        &c.bootstrap_servers(),
        ("large", "largedead"),
        "",
        (250_000, 300_000),
        &refuse,
    );
    assert!(
        log.contains("dead letters are cut to 500000 bytes from now on")
            && log.contains("dead letters are cut to 250000 bytes from now on"),
        "{log}"
    );
}

/// The topic's own `max.message.bytes` (3000 here, below the producer's default of 1 MB) is
/// what its brokers take: a broker that enforces it refused the whole dead letter at every
/// replay, and the worker retried it for good. It is read from the brokers at start.
#[test]
fn a_dead_letter_is_cut_to_the_topics_own_max_message_bytes() {
    let Some(t) = crate::tansu::Tansu::start() else {
        return;
    };
    t.create_topic("big", 1);
    t.create_topic_with("bigdead", 1, &[("max.message.bytes", "3000")]);
    one_large_dead_letter_fits(&t.bootstrap(), ("big", "bigdead"), "", (3000, 5000), &|| ());
    // Below the least librdkafka's `message.max.bytes` may be (1000).
    t.create_topic("tiny", 1);
    t.create_topic_with("tinydead", 1, &[("max.message.bytes", "900")]);
    one_large_dead_letter_fits(
        &t.bootstrap(),
        ("tiny", "tinydead"),
        "",
        (900, 5000),
        &|| (),
    );
}

/// One bad record of `len` bytes and one good one in topic `input`; a backfill sends the bad
/// one to `dead` (with `options` for the dead letters; `before` runs once the input is
/// written): it must arrive cut below `limit`. Returns the backfill's log.
fn one_large_dead_letter_fits(
    bootstrap: &str,
    (input, dead): (&str, &str),
    options: &str,
    (limit, len): (usize, usize),
    before: &dyn Fn(),
) -> String {
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let huge = format!("not json {}", "x".repeat(len - 9));
    for payload in [
        huge.as_bytes(),
        b"{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"trace_id\":\"after\"}".as_slice(),
    ] {
        producer
            .send(rdkafka::producer::BaseRecord::<(), [u8]>::to(input).payload(payload))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
    before();
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"big\"\nstate_dir = \"state\"\n[source]\nkind = \"kafka\"\n\
             brokers = {bootstrap:?}\ntopics = [{input:?}]\n[repo]\nschema = {:?}\n[sink]\n\
             url = \"out/\"\n[dead_letters]\ntopic = {dead:?}\ntimeout = \"10s\"\n{options}",
            schema("nginx_access").display().to_string()
        ),
    )
    .unwrap();
    let (status, err) = sluice_within(&["backfill", job.to_str().unwrap()], 120);
    assert!(status.success(), "{err}");
    assert_eq!(
        trace_ids(&dir.path().join("out")).get("after"),
        Some(&1),
        "{err}"
    );
    let letters = consume_all(bootstrap, dead, 1);
    assert_eq!(letters.len(), 1);
    let (_, value, h) = &letters[0];
    assert!(
        value.len() < limit && huge.as_bytes().starts_with(value),
        "a dead letter of {} bytes in a topic taking {limit}",
        value.len()
    );
    assert_eq!(h["sluice.truncated_from"], huge.len().to_string());
    err
}

/// A dead-letter topic whose brokers cannot be reached at the start (nothing listens at their
/// address): the job starts, says so, and exports a file of good records. Before, every start
/// failed ("cannot reach the brokers"), although no record needed the topic.
#[test]
fn a_dead_letter_topic_out_of_reach_holds_back_no_partition_without_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("good.jsonl");
    std::fs::copy(fixture("nginx_access.jsonl"), &input).unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"
[job]
name = "dlq-down"
state_dir = "state"
[source]
kind = "file"
paths = [{:?}]
[repo]
schema = {:?}
[sink]
url = "out/"
[dead_letters]
topic = "dead"
brokers = "127.0.0.1:1"
timeout = "2s"
"#,
            input.display().to_string(),
            schema("nginx_access").display().to_string()
        ),
    )
    .unwrap();
    let o = sluice(&["run", job.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("cannot reach the dead-letter topic's brokers"),
        "{err}"
    );
    let lines = std::fs::read_to_string(&input).unwrap().lines().count();
    assert_eq!(trace_ids(&dir.path().join("out")).len(), lines);
}

/// A dead-letter topic that refuses every write (its ACL denies the producer): the commits of
/// the partitions with dead letters fail and are retried, and `/v1/tasks` says so for each
/// (since when, the attempts, the broker's error) until one lands. Before, the task showed
/// as running with no error while those partitions replayed for ever.
#[test]
fn partitions_whose_dead_letters_the_topic_refuses_show_their_failing_commits() {
    let c = MockCluster::new(1).unwrap();
    c.create_topic("events", 4, 1).unwrap();
    c.create_topic("dead", 1, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    let n = 1000;
    let bad = produce(&bootstrap, "events", n);
    c.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 100_000],
    );
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, "events", "");
    let text = std::fs::read_to_string(&job).unwrap()
        + "[dead_letters]\ntopic = \"dead\"\ntimeout = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("run.log");
    let run = crate::kafka::spawn_run(&job, &log);
    let addr = crate::admin::admin_addr(&log);
    let partitions = || {
        let (code, body) = crate::admin::http(&addr, "GET", "/v1/tasks", None);
        assert_eq!(code, 200, "{body}");
        let tasks: serde_json::Value = serde_json::from_str(&body).unwrap();
        tasks[0]["partitions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let failing = |ps: &[serde_json::Value]| -> Vec<serde_json::Value> {
        ps.iter()
            .filter(|p| !p["failing"].is_null())
            .map(|p| p["failing"].clone())
            .collect()
    };
    wait_until("a partition's commits shown failing twice", 60, || {
        failing(&partitions())
            .iter()
            .any(|f| f["attempts"].as_u64() >= Some(2))
    });
    for f in failing(&partitions()) {
        let error = f["error"].as_str().unwrap();
        assert!(error.contains("dead-letter topic `dead`"), "{f}");
        assert!(error.to_lowercase().contains("authorization"), "{f}");
        assert!(f["since_ms"].as_u64().unwrap() > 0, "{f}");
    }
    // The status page says so too, in a real browser.
    if let Some(browser) = crate::status_page::chromium() {
        let out = crate::status_page::browse(&browser, &format!("http://{addr}/"), &["--dump-dom"]);
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(
            dom.contains("<td class=\"failing\">since ")
                && dom.to_lowercase().contains("authorization"),
            "no failing commits on the page:\n{dom}"
        );
    }
    // The topic takes them again: the commits land, and nothing is shown failing.
    c.clear_request_errors(RDKafkaApiKey::Produce);
    wait_until(
        "every record committed and no partition failing",
        90,
        || trace_ids(&dir.path().join("out")).len() == n && failing(&partitions()).is_empty(),
    );
    assert!(run.stop("the run's stop", 60).success());
    let letters = consume_all(&bootstrap, "dead", bad);
    let keys: std::collections::HashSet<&String> = letters.iter().map(|(k, _, _)| k).collect();
    assert_eq!(keys.len(), bad, "every dead letter arrived: {letters:?}");
}
