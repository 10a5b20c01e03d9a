//! Dead letters to a Kafka topic (`[dead_letters] topic = "..."`). Each dead letter is one
//! message: the original record's bytes as the value, its source position as the key
//! (`<source>@<offset>`), and the rest as headers: `sluice.reason`, `sluice.class`,
//! `sluice.stage` (when a stage failed on it), `sluice.source`, `sluice.offset`, `sluice.line`,
//! `sluice.job`, `sluice.repo`.
//!
//! Messages are sent as the dead letters arrive (librdkafka's queue bounds the memory) and a
//! partition's commit waits until the broker has all of them before its checkpoint is written.
//! A delivery that fails fails the commit, and the partition is replayed from its checkpoint.
//! So the topic gets every dead letter at least once: a replay after a failed commit or a crash
//! sends again what was sent before; the key names the position, for deduplication.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::stage_of;
use crate::config::{Job, SourceSection};
use crate::decode::DeadLetter;
use crate::sink::SinkError;

/// How to reach the dead-letter topic.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub brokers: String,
    pub topic: String,
    /// librdkafka producer properties.
    pub options: Vec<(String, String)>,
    /// The longest wait for the broker: to check the topic, for room in the queue, for the
    /// deliveries of a commit.
    pub timeout: Duration,
    pub job: String,
    pub repo: String,
}

/// Prefixes of librdkafka consumer properties, left out of the source's options when the
/// dead-letter producer uses them (a producer warns about each).
const CONSUMER_ONLY: [&str; 10] = [
    "fetch.",
    "session.",
    "heartbeat.",
    "max.poll",
    "auto.",
    "group.",
    "partition.assignment",
    "enable.auto",
    "enable.partition.eof",
    "queued.",
];

/// The producer to `job`'s dead-letter topic, if it has one: on the topic's own brokers, or on
/// the Kafka source's with its options (then `dead_letters.options` over them).
pub fn for_job(job: &Job, repo: &str) -> Result<Option<Arc<DeadTopic>>, SinkError> {
    let d = &job.file.dead_letters;
    let Some(topic) = &d.topic else {
        return Ok(None);
    };
    let (brokers, mut options) = match (&d.brokers, &job.file.source) {
        (Some(b), _) => (b.clone(), Vec::new()),
        (
            None,
            SourceSection::Kafka {
                brokers, options, ..
            },
        ) => (
            brokers.clone(),
            options
                .iter()
                .filter(|(k, _)| !CONSUMER_ONLY.iter().any(|c| k.starts_with(c)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        (None, _) => {
            return Err(SinkError::DeadLetterTopic {
                topic: topic.clone(),
                brokers: String::new(),
                reason: "dead_letters.brokers is needed when the source is not Kafka".into(),
            })
        }
    };
    options.extend(d.options.iter().map(|(k, v)| (k.clone(), v.clone())));
    let open = DeadTopic::open(TopicSettings {
        brokers,
        topic: topic.clone(),
        options,
        timeout: job.dead_letter_timeout,
        job: job.file.job.name.clone(),
        repo: repo.to_string(),
    })?;
    tracing::info!(topic = %topic, "dead letters go to a Kafka topic");
    Ok(Some(open))
}

/// Counts failed deliveries.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::AcqRel);
            *self.last_error.lock().expect("delivery lock") = Some(e.to_string());
        }
    }
}

/// A task's producer to its dead-letter topic.
pub struct DeadTopic {
    producer: ThreadedProducer<Deliveries>,
    settings: TopicSettings,
}

impl DeadTopic {
    /// Connects and checks that the topic exists.
    pub fn open(settings: TopicSettings) -> Result<Arc<DeadTopic>, SinkError> {
        let fail = |reason: String| SinkError::DeadLetterTopic {
            topic: settings.topic.clone(),
            brokers: settings.brokers.clone(),
            reason,
        };
        let mut cfg = ClientConfig::new();
        // Not idempotent: an idempotent producer can enter a fatal state from which only a new
        // producer recovers, and duplicates are possible here anyway (see above).
        cfg.set("bootstrap.servers", &settings.brokers)
            .set("acks", "all")
            .set("linger.ms", "20");
        for (k, v) in &settings.options {
            cfg.set(k, v);
        }
        let producer: ThreadedProducer<Deliveries> = cfg
            .create_with_context(Deliveries::default())
            .map_err(|e| fail(format!("cannot create the producer: {e}")))?;
        let metadata = producer
            .client()
            .fetch_metadata(Some(&settings.topic), settings.timeout)
            .map_err(|e| fail(format!("cannot reach the brokers: {e}")))?;
        match metadata.topics().first() {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {}
            Some(t) => {
                return Err(fail(format!(
                    "the topic is not available: {}",
                    t.error()
                        .map(|e| RDKafkaErrorCode::from(e).to_string())
                        .unwrap_or_else(|| "it has no partitions".into())
                )))
            }
            None => return Err(fail("the brokers do not know the topic".into())),
        }
        Ok(Arc::new(DeadTopic { producer, settings }))
    }

    /// Starts the dead letters of one commit.
    pub fn batch(self: &Arc<Self>) -> TopicBatch {
        TopicBatch {
            topic: self.clone(),
            failed_before: self.producer.context().failed.load(Ordering::Acquire),
        }
    }

    fn fail(&self, reason: String) -> SinkError {
        SinkError::DeadLetterTopic {
            topic: self.settings.topic.clone(),
            brokers: self.settings.brokers.clone(),
            reason,
        }
    }
}

/// The dead letters of one partition between two commits.
pub struct TopicBatch {
    topic: Arc<DeadTopic>,
    /// Failed deliveries before this batch: any more, and the batch cannot commit (another
    /// partition's failure is counted too, which only costs a replay).
    failed_before: u64,
}

impl TopicBatch {
    /// Sends one dead letter of `source`, waiting for room in the producer's queue.
    pub fn send(&mut self, source: &str, d: &DeadLetter) -> Result<(), SinkError> {
        let t = &self.topic;
        let key = format!("{source}@{}", d.position.offset);
        let (offset, line) = (d.position.offset.to_string(), d.position.line.to_string());
        let mut headers = OwnedHeaders::new()
            .insert(header("sluice.reason", &d.reason))
            .insert(header("sluice.class", d.class()))
            .insert(header("sluice.source", source))
            .insert(header("sluice.offset", &offset))
            .insert(header("sluice.line", &line))
            .insert(header("sluice.job", &t.settings.job))
            .insert(header("sluice.repo", &t.settings.repo));
        if let Some(stage) = stage_of(&d.reason) {
            headers = headers.insert(header("sluice.stage", stage));
        }
        let mut record = BaseRecord::to(&t.settings.topic)
            .key(key.as_bytes())
            .payload(&d.record[..])
            .headers(headers);
        let deadline = Instant::now() + t.settings.timeout;
        loop {
            match t.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(t.fail(format!("cannot send dead letter {key}: {e}"))),
            }
        }
    }

    /// Waits until the broker has every message sent so far.
    pub fn finish(self) -> Result<(), SinkError> {
        let t = &self.topic;
        t.producer
            .flush(t.settings.timeout)
            .map_err(|e| t.fail(format!("dead letters not delivered in time: {e}")))?;
        let ctx = t.producer.context();
        if ctx.failed.load(Ordering::Acquire) > self.failed_before {
            let last = ctx.last_error.lock().expect("delivery lock").clone();
            return Err(t.fail(format!(
                "a dead letter was not delivered: {}",
                last.unwrap_or_default()
            )));
        }
        Ok(())
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
