//! `sluice demo`: the main export path with nothing installed. An in-process Kafka-protocol
//! broker (librdkafka's mock cluster) gets the shipped web-log events on a 4-partition topic,
//! and a bounded export job runs the real path — Kafka source, channel, sink workers, Parquet,
//! checkpoints — into a local folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::config::Job;
use crate::source::kafka::{Position, Range};
use crate::task::{self, RunOptions, RunSummary, TaskError};

const SCHEMA: &str = include_str!("../schemas/nginx_access.toml");
const EVENTS: &str = include_str!("../fixtures/nginx_access.jsonl");
const TOPIC: &str = "nginx_access";
const PARTITIONS: i32 = 4;

/// What the demo did.
pub struct DemoReport {
    pub events: usize,
    pub out: PathBuf,
    pub summary: RunSummary,
}

fn job_err(reason: String) -> TaskError {
    TaskError::Job {
        job: "demo".into(),
        reason,
    }
}

/// Runs the demo into `out` (its state goes under `out/.demo-state`).
pub fn run(out: &Path) -> Result<DemoReport, TaskError> {
    let cluster = MockCluster::new(1).map_err(|e| job_err(format!("embedded broker: {e}")))?;
    cluster
        .create_topic(TOPIC, PARTITIONS, 1)
        .map_err(|e| job_err(format!("creating the topic: {e}")))?;
    let bootstrap = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .map_err(|e| job_err(format!("producer: {e}")))?;
    let mut events = 0;
    for (i, line) in EVENTS.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let record = BaseRecord::<(), str>::to(TOPIC)
            .partition((i % PARTITIONS as usize) as i32)
            .payload(line);
        producer
            .send(record)
            .map_err(|(e, _)| job_err(format!("producing: {e}")))?;
        events += 1;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| job_err(format!("producing: {e}")))?;

    std::fs::create_dir_all(out).map_err(|e| job_err(format!("{}: {e}", out.display())))?;
    let out = out
        .canonicalize()
        .map_err(|e| job_err(format!("{}: {e}", out.display())))?;
    let state = out.join(".demo-state");
    std::fs::create_dir_all(&state).map_err(|e| job_err(format!("{}: {e}", state.display())))?;
    let schema = state.join("nginx_access.toml");
    std::fs::write(&schema, SCHEMA).map_err(|e| job_err(format!("{}: {e}", schema.display())))?;
    let text = format!(
        r#"
[job]
name = "demo"
state_dir = {state:?}
[source]
kind = "kafka"
brokers = {bootstrap:?}
topics = [{TOPIC:?}]
[source.options]
"fetch.wait.max.ms" = "10"
[repo]
schema = {schema:?}
[sink]
url = {url:?}
format = "parquet"
[sink.partition]
template = "dt={{ts:%Y-%m-%d}}/hr={{ts:%H}}/"
"#,
        state = state.display().to_string(),
        schema = schema.display().to_string(),
        url = out.display().to_string(),
    );
    let job_path = state.join("demo.toml");
    let mut job = Job::parse(&text, &job_path).map_err(|e| job_err(e.to_string()))?;
    job.range = Some(Range::Asked(Position::Earliest, Position::Latest));
    let summary = task::run(
        &job,
        RunOptions::default(),
        Arc::new(AtomicBool::new(false)),
    )?;
    drop(cluster);
    Ok(DemoReport {
        events,
        out,
        summary,
    })
}
