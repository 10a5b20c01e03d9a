//! Dead letters to a Kafka topic (`[dead_letters] topic = "..."`). Each dead letter is one
//! message: the original record's bytes as the value (a Kafka message's line breaks between
//! JSON tokens read as spaces, as it was decoded), its source position as the key
//! (`<source>@<offset>`), and the rest as headers: `sluice.reason`, `sluice.class`,
//! `sluice.stage` (when a stage failed on it), `sluice.source`, `sluice.offset`, `sluice.line`,
//! `sluice.job`, `sluice.repo`.
//!
//! Messages are sent as the dead letters arrive (librdkafka's queue bounds the memory) and a
//! partition's commit waits until the broker has all of them before its checkpoint is written.
//! A delivery that fails fails the commit, and the partition is replayed from its checkpoint.
//! So the topic gets every dead letter at least once: a replay after a failed commit or a crash
//! sends again what was sent before; the key names the position, for deduplication.
//!
//! A message is never larger than the topic takes: the record is cut to the smaller of the
//! producer's `message.max.bytes` and the topic's `max.message.bytes` (asked of the brokers at
//! start), else a broker would refuse it at every replay. Where the brokers do not say (no
//! permission to describe the topic), a refusal as too large halves the size messages and
//! batches are cut to, down to what a dead letter needs, with a new producer: the replay that
//! follows sends the dead letter cut smaller.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::stage_of;
use crate::config::{Job, SourceSection};
use crate::decode::DeadLetter;
use crate::store::StoreError;

/// How to reach the dead-letter topic.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub brokers: String,
    pub topic: String,
    /// librdkafka producer properties.
    pub options: crate::config::PassThrough,
    /// The longest wait for the broker: to check the topic, for room in the queue, for the
    /// deliveries of a commit.
    pub timeout: Duration,
    pub job: String,
    pub repo: String,
}

/// The source's options the dead-letter producer takes: not the consumer's own, nor its
/// message size (raised to fetch large messages, it is no limit of the dead-letter topic's:
/// a dead letter past the topic's was refused at every replay where the topic's own could
/// not be read).
fn inherited(options: &crate::config::PassThrough) -> crate::config::PassThrough {
    crate::config::PassThrough(
        options
            .iter()
            .filter(|(k, _)| !crate::config::consumer_only(k) && k.as_str() != "message.max.bytes")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// The producer to `job`'s dead-letter topic, if it has one: on the topic's own brokers, or on
/// the Kafka source's with its options (then `dead_letters.options` over them). Brokers out
/// of reach are logged, not fatal: a task's commits with dead letters wait for them.
pub fn for_job(job: &Job, repo: &str) -> Result<Option<Arc<DeadTopic>>, StoreError> {
    for_job_as(job, repo, true)
}

/// [`for_job`] for a command that writes a dead letter at once (`checkpoints skip`): brokers
/// out of reach are its error, before it changes anything.
pub fn for_job_now(job: &Job, repo: &str) -> Result<Option<Arc<DeadTopic>>, StoreError> {
    for_job_as(job, repo, false)
}

fn for_job_as(
    job: &Job,
    repo: &str,
    unreachable_ok: bool,
) -> Result<Option<Arc<DeadTopic>>, StoreError> {
    let d = &job.file.dead_letters;
    let Some(topic) = &d.topic else {
        return Ok(None);
    };
    let (brokers, mut options) = match (&d.brokers, &job.file.source) {
        (Some(b), _) => (b.clone(), Default::default()),
        (
            None,
            SourceSection::Kafka {
                brokers, options, ..
            },
        ) => (brokers.clone(), inherited(options)),
        (None, _) => {
            return Err(StoreError::DeadLetterTopic {
                topic: topic.clone(),
                brokers: String::new(),
                reason: "dead_letters.brokers is needed when the source is not Kafka".into(),
            })
        }
    };
    options.extend(d.options.iter().map(|(k, v)| (k.clone(), v.clone())));
    let open = DeadTopic::open(
        TopicSettings {
            brokers,
            topic: topic.clone(),
            options,
            timeout: job.dead_letter_timeout,
            job: job.file.job.name.clone(),
            repo: repo.to_string(),
        },
        unreachable_ok,
    )?;
    tracing::info!(topic = %topic, "dead letters go to a Kafka topic");
    Ok(Some(open))
}

/// The deliveries of one batch.
#[derive(Default)]
struct BatchDeliveries {
    state: Mutex<Delivered>,
    done: Condvar,
}

#[derive(Default)]
struct Delivered {
    /// Messages sent and not yet acknowledged or failed.
    waiting: u64,
    failed: u64,
    last_error: Option<String>,
    /// A broker refused a message (or its batch) as larger than the topic takes.
    too_large: bool,
}

/// Reports each delivery to the batch that sent the message.
struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<BatchDeliveries>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<BatchDeliveries>) {
        let mut g = batch.state.lock().expect("delivery lock");
        g.waiting = g.waiting.saturating_sub(1);
        if let Err((e, _)) = result {
            g.failed += 1;
            let code = e.rdkafka_error_code();
            g.too_large |= code == Some(RDKafkaErrorCode::MessageSizeTooLarge);
            let skew = code == Some(RDKafkaErrorCode::InvalidTimestamp);
            g.last_error = Some(if skew {
                // Stamped with this host's clock: refused by every replay until the clocks
                // agree again, so the cause is named.
                format!(
                    "{e}: the broker refused the message's time, this host's clock ({} ms \
                     since 1970): it differs from the broker's by more than the topic's \
                     message.timestamp.before.max.ms or after.max.ms (before Kafka 3.6: \
                     message.timestamp.difference.max.ms) allows; set this host's clock right \
                     (NTP)",
                    crate::commit::now_ms()
                )
            } else {
                e.to_string()
            });
        }
        batch.done.notify_all();
    }
}

/// A task's producer to its dead-letter topic.
pub struct DeadTopic {
    /// The producer batches take, replaced by one sending smaller messages when a broker
    /// refuses one as too large.
    current: Mutex<Arc<Producing>>,
    /// The producer's settings, for a replacement.
    cfg: ClientConfig,
    /// The least size a message may be cut to (room for a dead letter's position and names).
    least: usize,
    settings: TopicSettings,
}

/// A producer and the size it cuts messages to.
struct Producing {
    producer: ThreadedProducer<Deliveries>,
    /// The largest message the producer sends (`message.max.bytes`; librdkafka's default,
    /// which is also the brokers' default).
    max_message: usize,
    /// Counts the producers of this topic: a refusal halves the size once, however many
    /// batches of this producer it failed.
    generation: u32,
}

/// The longest reason a header carries (reasons may quote values).
const MAX_REASON: usize = 4096;
/// What the producer's queue holds at most, by default (`queue.buffering.max.kbytes` in the
/// topic's options overrides it).
pub const QUEUE_BYTES: usize = 16 << 20;
/// The most messages the producer's queue holds, by default (`queue.buffering.max.messages`
/// in the topic's options overrides it): a message's key, headers and librdkafka's own state
/// take about a kilobyte beside its value, which the bytes above count alone.
pub const QUEUE_MESSAGES: usize = QUEUE_BYTES / 1024;

/// What a message costs besides its key, header values and value: a batch's header (61
/// bytes), a record's framing (at most 36), the header names (116) and their lengths (90),
/// with room to spare.
const OVERHEAD: usize = 512;

impl DeadTopic {
    /// Connects and checks that the topic exists (brokers that cannot be reached are logged,
    /// not fatal).
    pub fn open(
        settings: TopicSettings,
        unreachable_ok: bool,
    ) -> Result<Arc<DeadTopic>, StoreError> {
        let fail = |reason: String| StoreError::DeadLetterTopic {
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
        let asked: Option<usize> = settings
            .options
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok());
        let mut max_message = asked.unwrap_or(1_000_000);
        for (k, v) in settings.options.iter() {
            cfg.set(k, v);
        }
        // The broker refuses a batch larger than the topic's `max.message.bytes`, at every
        // replay: messages and batches are kept within it when it is smaller; where it is
        // larger and no size is asked for, dead letters take it (the source's own size,
        // for fetching, is not inherited: see `inherited`).
        let limit = topic_limit(&cfg, &settings);
        if let Some(limit) = limit.filter(|&l| asked.is_none() && l > max_message) {
            max_message = limit.min(MAX_MESSAGE);
            cfg.set("message.max.bytes", max_message.to_string());
        }
        // librdkafka queues up to 1 GiB by default: bound the dead letters held for sending
        // to QUEUE_BYTES (or two of the largest message), so they count in the memory bound.
        if !settings.options.contains_key("queue.buffering.max.kbytes") {
            let queue_kib = (QUEUE_BYTES.max(2 * max_message) / 1024).to_string();
            cfg.set("queue.buffering.max.kbytes", &queue_kib);
        }
        // librdkafka counts a message's value only against those bytes: its key, headers and
        // own state (about a kilobyte) come on top, up to 100,000 messages by default. Tiny
        // dead letters are held to about QUEUE_BYTES of that too.
        if !settings
            .options
            .contains_key("queue.buffering.max.messages")
        {
            cfg.set("queue.buffering.max.messages", QUEUE_MESSAGES.to_string());
        }
        if let Some(limit) = limit {
            if limit < max_message {
                tracing::info!(topic = %settings.topic, limit, "dead letters are cut to the topic's max.message.bytes");
                max_message = limit;
                // librdkafka takes no `message.max.bytes` below 1000; `batch.size` keeps
                // batches within the topic's size then.
                cfg.set("message.max.bytes", limit.max(1000).to_string())
                    .set("batch.size", limit.to_string());
            }
        }
        // Room for a dead letter's position, names and a little of its reason and record.
        let least = OVERHEAD + settings.job.len() + settings.repo.len() + 256;
        if max_message < least {
            return Err(fail(format!(
                "its messages may be at most {max_message} bytes (the topic's max.message.bytes, or message.max.bytes in the options); a dead letter needs at least {least}"
            )));
        }
        let producer: ThreadedProducer<Deliveries> = cfg
            .create_with_context(Deliveries)
            .map_err(|e| fail(format!("cannot create the producer: {e}")))?;
        let metadata = producer
            .client()
            .fetch_metadata(Some(&settings.topic), settings.timeout);
        let open = |producer| {
            Arc::new(DeadTopic {
                current: Mutex::new(Arc::new(Producing {
                    producer,
                    max_message,
                    generation: 0,
                })),
                cfg: cfg.clone(),
                least,
                settings: settings.clone(),
            })
        };
        let metadata = match metadata {
            Ok(m) => m,
            Err(e) if !unreachable_ok => {
                return Err(fail(format!("cannot reach the brokers: {e}")))
            }
            // Brokers down at the start hold back only the commits that have dead letters,
            // as they would if they went down later: the partitions without any move on.
            Err(e) => {
                tracing::warn!(topic = %settings.topic, brokers = %settings.brokers, error = %e, "cannot reach the dead-letter topic's brokers: the job starts; a commit with dead letters fails and replays until they take them");
                return Ok(open(producer));
            }
        };
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
        Ok(open(producer))
    }

    /// Starts the dead letters of one commit, on the producer of the moment.
    pub fn batch(self: &Arc<Self>) -> TopicBatch {
        TopicBatch {
            topic: self.clone(),
            producing: self.current.lock().expect("producer lock").clone(),
            deliveries: Arc::default(),
        }
    }

    /// A broker refused a message of `refused`'s as too large: the topic takes less than the
    /// size it cuts to (the brokers did not say how much). Messages and batches are cut to
    /// half that from now on, down to the least a dead letter needs, by a new producer (once
    /// per producer, however many batches the refusal failed). Returns what is said of it.
    fn shrink(&self, refused: &Producing) -> String {
        let mut current = self.current.lock().expect("producer lock");
        if current.generation != refused.generation {
            return format!(
                "dead letters are cut to {} bytes from now on",
                current.max_message
            );
        }
        if current.max_message <= self.least {
            return format!(
                "they are cut to {} bytes already, the least a dead letter needs; raise the \
                 topic's max.message.bytes",
                current.max_message
            );
        }
        let size = (current.max_message / 2).max(self.least);
        let mut cfg = self.cfg.clone();
        // librdkafka takes no `message.max.bytes` below 1000; `batch.size` keeps batches
        // within the size then.
        cfg.set("message.max.bytes", size.max(1000).to_string())
            .set("batch.size", size.to_string());
        let producer = match cfg.create_with_context(Deliveries) {
            Ok(p) => p,
            Err(e) => return format!("a producer of smaller messages cannot be made: {e}"),
        };
        tracing::warn!(topic = %self.settings.topic, from = current.max_message, to = size, "the brokers refused a dead letter as too large (the topic's max.message.bytes is smaller than the producer's): dead letters are cut to half the size from now on");
        let old = std::mem::replace(
            &mut *current,
            Arc::new(Producing {
                producer,
                max_message: size,
                generation: refused.generation + 1,
            }),
        );
        drop(current);
        // The old producer stops once the batches still on it are done (their messages not
        // delivered by then fail, and their commits replay).
        drop(old);
        format!("dead letters are cut to {size} bytes from now on")
    }

    fn fail(&self, reason: String) -> StoreError {
        StoreError::DeadLetterTopic {
            topic: self.settings.topic.clone(),
            brokers: self.settings.brokers.clone(),
            reason,
        }
    }
}

/// The topic's `max.message.bytes` (the largest record batch its brokers take), when the
/// brokers say; `None` (with a warning) when they cannot (no DescribeConfigs, no permission).
fn topic_limit(cfg: &ClientConfig, settings: &TopicSettings) -> Option<usize> {
    let unknown = |reason: String| {
        tracing::warn!(topic = %settings.topic, %reason, "the topic's max.message.bytes is not known; dead letters are cut to the producer's message.max.bytes only");
        None
    };
    let admin: AdminClient<DefaultClientContext> = match cfg.create() {
        Ok(a) => a,
        Err(e) => return unknown(format!("cannot create an admin client: {e}")),
    };
    let opts = AdminOptions::new().request_timeout(Some(settings.timeout.min(DESCRIBE_WAIT)));
    let asked = [ResourceSpecifier::Topic(&settings.topic)];
    let described = match futures::executor::block_on(admin.describe_configs(&asked, &opts)) {
        Ok(mut r) if !r.is_empty() => r.remove(0),
        Ok(_) => return unknown("the brokers answered nothing".into()),
        Err(e) => return unknown(e.to_string()),
    };
    let value = match &described {
        Ok(c) => c.get("max.message.bytes").and_then(|e| e.value.clone()),
        Err(code) => return unknown(code.to_string()),
    };
    match value.as_deref().map(str::parse::<usize>) {
        Some(Ok(limit)) if limit > 0 => Some(limit),
        _ => unknown(format!("the brokers said {value:?}")),
    }
}

/// The largest dead letter taken from the topic's own size (librdkafka's `message.max.bytes`
/// goes up to 1,000,000,000; two of them are queued).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The longest wait for the topic's settings (a broker that does not know the request may not
/// answer it).
const DESCRIBE_WAIT: Duration = Duration::from_secs(3);

/// The dead letters of one partition between two commits. A commit waits for this batch's
/// messages only, not for other partitions' sent meanwhile.
pub struct TopicBatch {
    topic: Arc<DeadTopic>,
    producing: Arc<Producing>,
    deliveries: Arc<BatchDeliveries>,
}

impl TopicBatch {
    /// Sends one dead letter of `source`, waiting for room in the producer's queue.
    pub fn send(&mut self, source: &str, d: &DeadLetter) -> Result<(), StoreError> {
        let t = &self.topic;
        let (offset, line) = (d.position.offset.to_string(), d.position.line.to_string());
        let stage = stage_of(&d.reason);
        // A message larger than the topic takes would fail its commit at every replay (a
        // partition stuck for good). What it carries besides the reason and the record fits
        // (`open` made sure); of the room left, the source's name (twice: key and header) may
        // take a quarter, the reason half of what remains, and the value keeps what fits then,
        // a header saying how long the record was.
        let fixed = OVERHEAD
            + offset.len()
            + line.len()
            + t.settings.job.len()
            + t.settings.repo.len()
            + d.class().len()
            + stage.map_or(0, str::len)
            + 20;
        let mut room = self.producing.max_message.saturating_sub(fixed);
        let source = crate::decode::cut(source, room / 8);
        room = room.saturating_sub(2 * source.len());
        let reason = crate::decode::cut(&d.reason, MAX_REASON.min(room / 2));
        room = room.saturating_sub(reason.len());
        let key = format!("{source}@{}", d.position.offset);
        let (value, truncated) = if d.record.len() > room {
            (&d.record[..room], Some(d.record.len().to_string()))
        } else {
            (&d.record[..], None)
        };
        let mut headers = OwnedHeaders::new()
            .insert(header("sluice.reason", reason))
            .insert(header("sluice.class", d.class()))
            .insert(header("sluice.source", source))
            .insert(header("sluice.offset", &offset))
            .insert(header("sluice.line", &line))
            .insert(header("sluice.job", &t.settings.job))
            .insert(header("sluice.repo", &t.settings.repo));
        if let Some(stage) = stage {
            headers = headers.insert(header("sluice.stage", stage));
        }
        if let Some(len) = &truncated {
            headers = headers.insert(header("sluice.truncated_from", len));
        }
        let mut record = BaseRecord::with_opaque_to(&t.settings.topic, self.deliveries.clone())
            .key(key.as_bytes())
            .payload(value)
            .headers(headers);
        self.deliveries.state.lock().expect("delivery lock").waiting += 1;
        let deadline = Instant::now() + t.settings.timeout;
        loop {
            match self.producing.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    self.deliveries.state.lock().expect("delivery lock").waiting -= 1;
                    return Err(t.fail(format!("cannot send dead letter {key}: {e}")));
                }
            }
        }
    }

    /// Waits until the broker has every message of this batch.
    pub fn finish(self) -> Result<(), StoreError> {
        let t = &self.topic;
        let deadline = Instant::now() + t.settings.timeout;
        let mut g = self.deliveries.state.lock().expect("delivery lock");
        while g.waiting > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(t.fail(format!(
                    "{} dead letter(s) not delivered within {:?}",
                    g.waiting, t.settings.timeout
                )));
            }
            g = self
                .deliveries
                .done
                .wait_timeout(g, left)
                .expect("delivery lock")
                .0;
        }
        if g.failed > 0 {
            let (failed, error, too_large) = (g.failed, g.last_error.take(), g.too_large);
            drop(g);
            let said = too_large.then(|| t.shrink(&self.producing));
            return Err(t.fail(format!(
                "{failed} dead letter(s) not delivered: {}{}",
                error.unwrap_or_default(),
                said.map(|s| format!(" ({s})")).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_takes_neither_the_consumers_options_nor_its_message_size() {
        let source = crate::config::PassThrough(
            [
                ("security.protocol", "ssl"),
                ("fetch.wait.max.ms", "10"),
                ("message.max.bytes", "10000000"),
                ("group.instance.id", "a"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let kept = inherited(&source);
        let keys: Vec<&str> = kept.keys().map(String::as_str).collect();
        assert_eq!(keys, ["security.protocol"]);
    }
}
