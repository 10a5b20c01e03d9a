//! `sluice schema infer`: reads a sample (JSON lines or CSV/TSV with a header, plain or gzip)
//! and prints the repo schema `sluice::schema::infer` makes of it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// How long sampling a topic may take in all.
const KAFKA_DEADLINE: Duration = Duration::from_secs(60);

/// `schema infer --kafka`: reads each partition of `topic` from its low watermark up to its
/// high watermark at the start (or `rows` messages in all) and prints the schema.
pub fn infer_from_kafka(brokers: &str, topic: &str, name: Option<String>, rows: u64) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-schema-infer")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating a Kafka consumer")?;
    let timeout = Duration::from_secs(10);
    let meta = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("metadata of topic `{topic}` from {brokers}"))?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic `{topic}` does not exist on {brokers}");
    }
    let mut tpl = TopicPartitionList::new();
    let mut left = std::collections::HashMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .with_context(|| format!("watermarks of {topic}/{p}"))?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
            left.insert(p, high);
        }
    }
    let mut inf = sluice::schema::infer::Inference::default();
    if !left.is_empty() {
        consumer
            .assign(&tpl)
            .context("assigning the topic's partitions")?;
    }
    let deadline = Instant::now() + KAFKA_DEADLINE;
    while !left.is_empty() && inf.rows() + inf.skipped() < rows {
        if Instant::now() >= deadline {
            bail!(
                "sampling `{topic}` did not reach the end of every partition within {} s",
                KAFKA_DEADLINE.as_secs()
            );
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.with_context(|| format!("reading `{topic}`"))?;
        if let Some(payload) = msg.payload() {
            inf.json_line(payload);
        }
        if left
            .get(&msg.partition())
            .is_some_and(|h| msg.offset() + 1 >= *h)
        {
            left.remove(&msg.partition());
        }
    }
    if inf.rows() == 0 {
        bail!("topic `{topic}`: no JSON object messages to infer a schema from");
    }
    let name = name.unwrap_or_else(|| repo_name(topic));
    print!(
        "{}",
        inf.to_toml(&name, &format!("topic {topic} on {brokers}"))
    );
    Ok(())
}

/// A repo name from a file stem or topic: letters, digits, `-` and `_`, starting with a letter.
fn repo_name(from: &str) -> String {
    let clean: String = from
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.starts_with(|c: char| c.is_ascii_alphabetic()) {
        clean
    } else {
        format!("repo_{clean}")
    }
}

/// `schema infer`: reads up to `rows` records of the sample and prints the schema. A file
/// named `.csv` or `.tsv` (or given a CSV `delimiter`) is CSV, any other JSON lines.
pub fn infer_schema(
    input: &str,
    name: Option<String>,
    delimiter: Option<&str>,
    rows: u64,
) -> Result<()> {
    use sluice::decode::framing::Chunk;
    use sluice::decode::InputKind;
    use sluice::input::{ChunkReader, InputSource};
    let source = InputSource::parse(input);
    let lower = input.to_ascii_lowercase();
    let format = if lower.ends_with(".tsv") || lower.ends_with(".tsv.gz") {
        "tsv"
    } else if delimiter.is_some() || lower.ends_with(".csv") || lower.ends_with(".csv.gz") {
        "csv"
    } else {
        "json"
    };
    let delimiter = match sluice::decode::input_kind(format, delimiter, true)
        .map_err(|e| anyhow::anyhow!("--delimiter: {e}"))?
    {
        InputKind::Csv { delimiter, .. } => Some(delimiter),
        _ => None,
    };
    let mut reader =
        ChunkReader::open(&source, delimiter).with_context(|| format!("reading {input}"))?;
    let mut inf = sluice::schema::infer::Inference::default();
    let mut header: Option<Vec<String>> = None;
    let mut chunk = Chunk::default();
    'read: while inf.rows() + inf.skipped() < rows && reader.next_chunk(&mut chunk)? {
        if chunk.skipped_bytes > 0 {
            // A record past the 64 MiB record limit: no sample (its first bytes are all
            // there is); a CSV header that long is no header.
            if delimiter.is_some() && header.is_none() {
                bail!("{input}: the CSV header is longer than the 64 MiB record limit");
            }
            continue;
        }
        match delimiter {
            None => {
                for line in chunk.data.split(|b| *b == b'\n') {
                    if inf.rows() + inf.skipped() >= rows {
                        break 'read;
                    }
                    inf.json_line(line);
                }
            }
            Some(d) => {
                let mut csv = csv::ReaderBuilder::new()
                    .delimiter(d)
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(chunk.data.as_slice());
                for record in csv.records() {
                    let record = record.with_context(|| format!("reading {input} as CSV"))?;
                    let values: Vec<String> = record.iter().map(str::to_string).collect();
                    match &header {
                        None => header = Some(values),
                        Some(h) => {
                            if inf.rows() >= rows {
                                break 'read;
                            }
                            inf.csv_record(h, &values);
                        }
                    }
                }
            }
        }
    }
    if inf.rows() == 0 {
        bail!("{input}: no records to infer a schema from");
    }
    let name = name.unwrap_or_else(|| repo_name(&source.stem()));
    print!("{}", inf.to_toml(&name, input));
    Ok(())
}
