//! Kafka messages any producer can send, read without a crash. A header name is a string in
//! the protocol, but nothing checks its bytes: rdkafka's header accessor panicked on a name
//! that is not UTF-8, and since every restart read the same message again, one such message
//! stopped its partition for good. Names are read lossily, as header values are. And a
//! transaction's commit marker, which takes an offset and holds no record: at the end of a
//! partition, a backfill waited for ever for a message at that offset, and so did one whose
//! range ended on a marker just before a batch the client cannot read. And compression: every
//! codec a producer may choose is read (zstd was not). And the metadata columns each message
//! fills: topic, partition, offset, timestamp, key and headers.

use std::ffi::CString;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka_sys as rd;

use crate::helpers::*;
use crate::kafka::{cluster, dead_letters_of, job_full, PARTITIONS};

/// Produces one message whose headers are given as raw bytes (rdkafka takes names as `&str`
/// only), through librdkafka's `rd_kafka_produceva`.
fn produce_raw_headers(
    producer: &BaseProducer,
    topic: &str,
    payload: &[u8],
    headers: &[(&[u8], &[u8])],
) {
    use rd::rd_kafka_vtype_t as V;
    use rd::rd_kafka_vu_s__bindgen_ty_1 as U;
    let topic = CString::new(topic).unwrap();
    let names: Vec<CString> = headers
        .iter()
        .map(|(n, _)| CString::new(n.to_vec()).unwrap())
        .collect();
    let mut vus = vec![
        rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_TOPIC,
            u: U {
                cstr: topic.as_ptr(),
            },
        },
        rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_PARTITION,
            u: U { i32_: 0 },
        },
        rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_VALUE,
            u: U {
                mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                    ptr: payload.as_ptr() as *mut _,
                    size: payload.len(),
                },
            },
        },
        rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_MSGFLAGS,
            u: U {
                i: rd::RD_KAFKA_MSG_F_COPY,
            },
        },
    ];
    for (name, (_, value)) in names.iter().zip(headers) {
        vus.push(rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_HEADER,
            u: U {
                header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: name.as_ptr(),
                    val: value.as_ptr() as *const _,
                    size: value.len() as isize,
                },
            },
        });
    }
    // SAFETY: every pointer in `vus` is live for the call, and librdkafka copies what it keeps
    // (RD_KAFKA_MSG_F_COPY for the value; names and header values are always copied).
    let err =
        unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len()) };
    assert!(err.is_null(), "producing the raw message failed");
}

#[test]
fn header_bytes_that_are_not_utf8_are_kept_in_base64_and_names_read_lossily() {
    let topic = "raw-headers";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let schema_path = dir.path().join("hdr.toml");
    std::fs::write(
        &schema_path,
        r#"
name = "hdr"
[[fields]]
name = "trace_id"
type = "string"
nullable = false
[[fields]]
name = "headers"
source = "_kafka_headers"
type = "json"
"#,
    )
    .unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let n = 20;
    for i in 0..n {
        let payload = format!("{{\"trace_id\":\"t{i}\"}}");
        let value = format!("v{i}");
        let record = BaseRecord::<(), [u8]>::to(topic)
            .partition(0)
            .payload(payload.as_bytes())
            .headers(OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some(value.as_bytes()),
            }));
        producer.send(record).map_err(|(e, _)| e).unwrap();
        if i == n / 2 {
            // In the middle of the partition: the messages after it must be read too.
            produce_raw_headers(
                &producer,
                topic,
                b"{\"trace_id\":\"raw\"}",
                &[(b"\xff\xfeid", b"x"), (b"h", b"raw"), (b"bin", b"\x00\xff")],
            );
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let job = job_full(dir.path(), &bootstrap, topic, "", &schema_path);
    let o = sluice_ok(&["backfill", job.to_str().unwrap()]);
    assert!(
        o.contains(&format!("{} rows, 0 dead letters", n + 1)),
        "{o}"
    );

    let sql = format!(
        "select trace_id, headers from read_parquet('{}/*.parquet')",
        dir.path().join("out").display()
    );
    let Some(rows) = duckdb_rows(&sql) else {
        return;
    };
    let mut seen = 0;
    for line in rows.lines() {
        let r: Vec<serde_json::Value> = serde_json::from_str(line).unwrap();
        let h: serde_json::Value = serde_json::from_str(r[1].as_str().unwrap()).unwrap();
        let id = r[0].as_str().unwrap();
        if id == "raw" {
            assert_eq!(
                h,
                serde_json::json!({"\u{fffd}\u{fffd}id": "x", "h": "raw", "bin": {"base64": "AP8="}})
            );
        } else {
            assert_eq!(h, serde_json::json!({"h": format!("v{}", &id[1..])}));
        }
        seen += 1;
    }
    assert_eq!(seen, n + 1);
}

/// Partition 0: 10 messages, then a transaction's commit marker (what every transactional
/// producer writes last). Partition 1: 5 messages, a marker, 5 more. The backfill's range
/// ends past each marker; it ends, with every message once, and so does a second one.
#[test]
fn a_backfill_ends_when_its_range_ends_on_a_transaction_marker() {
    use crate::kafka_unreadable::{backfill, cluster_and_producer, ids_job, produce};
    use crate::kafka_wire::{commit_marker, produce_raw, record_batch, CONTROL};
    let topic = "markers";
    let (_c, bootstrap, broker, producer) = cluster_and_producer(topic);
    let marker = record_batch(CONTROL, 1, 7, &commit_marker());
    produce(&producer, topic, 0, 0..10);
    produce_raw(&broker, topic, 0, &marker);
    produce(&producer, topic, 1, 0..5);
    produce_raw(&broker, topic, 1, &marker);
    produce(&producer, topic, 1, 5..10);

    let dir = tempfile::tempdir().unwrap();
    let job = ids_job(dir.path(), &bootstrap, topic);
    for attempt in 1..=2 {
        let text = backfill(
            &job,
            &dir.path().join(format!("backfill{attempt}.log")),
            &[],
        );
        let ids = trace_ids(&dir.path().join("out"));
        assert_eq!(ids.len(), 20, "{ids:?}\n{text}");
        assert!(ids.values().all(|&n| n == 1), "once each: {ids:?}");
    }
}

/// Partition 2: 5 messages, a marker, a batch the client cannot read, 3 messages. Partition
/// 3: 3 messages, a marker, 3 more. A backfill `--to 2=6,3=4` ends on each marker: what
/// follows is past its range, and reading it means every record before was read. Partition
/// 2 waited for ever (librdkafka fetches the unreadable batch again and again, so the end of
/// the log never comes); partition 3 until the end of the log.
#[test]
fn a_backfill_ends_when_its_range_ends_just_before_an_unreadable_batch() {
    use crate::kafka_unreadable::{backfill, cluster_and_producer, ids_job, produce};
    use crate::kafka_wire::{commit_marker, produce_raw, record_batch, CONTROL, GZIP};
    let topic = "bounded";
    let (_c, bootstrap, broker, producer) = cluster_and_producer(topic);
    let marker = record_batch(CONTROL, 1, 7, &commit_marker());
    produce(&producer, topic, 2, 0..5);
    produce_raw(&broker, topic, 2, &marker);
    produce_raw(&broker, topic, 2, &record_batch(GZIP, 3, -1, b"not gzip"));
    produce(&producer, topic, 2, 5..8);
    produce(&producer, topic, 3, 0..3);
    produce_raw(&broker, topic, 3, &marker);
    produce(&producer, topic, 3, 3..6);

    let dir = tempfile::tempdir().unwrap();
    let job = ids_job(dir.path(), &bootstrap, topic);
    let text = backfill(&job, &dir.path().join("backfill.log"), &["--to", "2=6,3=4"]);
    let mut ids: Vec<String> = trace_ids(&dir.path().join("out")).into_keys().collect();
    ids.sort();
    let want: Vec<String> = (0..5)
        .map(|i| format!("p2-{i}"))
        .chain((0..3).map(|i| format!("p3-{i}")))
        .collect();
    assert_eq!(ids, want, "{text}");
    assert!(
        !dir.path().join("out/_dead_letters").exists(),
        "nothing in the range is a dead letter\n{text}"
    );
}

/// Messages compressed with each codec a producer may choose (none, gzip, snappy, lz4,
/// zstd) are read. librdkafka was built without zstd: a zstd batch was one it could not
/// read, and its partition stopped for good.
#[test]
fn messages_compressed_with_every_codec_are_read() {
    use crate::kafka_unreadable::{backfill, ids_job, produce};
    let topic = "codecs";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    for (k, codec) in codecs.iter().enumerate() {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("compression.type", *codec)
            .set("linger.ms", "50")
            .create()
            .unwrap_or_else(|e| panic!("a producer compressing with {codec}: {e}"));
        produce(&producer, topic, k as i32 % 4, k * 100..k * 100 + 100);
    }
    let dir = tempfile::tempdir().unwrap();
    let job = ids_job(dir.path(), &bootstrap, topic);
    let text = backfill(&job, &dir.path().join("backfill.log"), &[]);
    let ids = trace_ids(&dir.path().join("out"));
    assert_eq!(ids.len(), 500, "every message: {ids:?}\n{text}");
    assert!(ids.values().all(|&n| n == 1), "once each: {ids:?}");
    assert!(
        !dir.path().join("out/_dead_letters").exists(),
        "no dead letter\n{text}"
    );
}

/// A live member whose partition ends on a transaction's commit marker has read all there is:
/// its lag is 0 and its position is past its last record. The lag stood at 1 for ever (the
/// marker's offset), so every idle transactional partition looked stalled.
#[test]
fn a_partition_ending_on_a_transaction_marker_shows_no_lag() {
    use crate::admin::{admin_addr, http};
    use crate::kafka_unreadable::{cluster_and_producer, ids_job, produce};
    use crate::kafka_wire::{commit_marker, produce_raw, record_batch, CONTROL};
    let topic = "txnlag";
    let (_c, bootstrap, broker, producer) = cluster_and_producer(topic);
    produce(&producer, topic, 0, 0..5);
    produce_raw(
        &broker,
        topic,
        0,
        &record_batch(CONTROL, 1, 7, &commit_marker()),
    );
    let dir = tempfile::tempdir().unwrap();
    let job = ids_job(dir.path(), &bootstrap, topic);
    let text = std::fs::read_to_string(&job).unwrap() + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("run.log");
    let _run = crate::kafka::spawn_run(&job, &log);
    let addr = admin_addr(&log);
    crate::kafka::wait_for(&dir.path().join("out"), 5, 60);
    let series = |m: &str, name: &str| {
        m.lines()
            .find(|l| l.starts_with(name) && l.contains("partition=\"txnlag-0\""))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    // The lag is fetched and reported every 5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = http(&addr, "GET", "/metrics", None);
        let lag = series(&m, "sluice_consumer_lag{");
        let position = series(&m, "sluice_consumer_position{");
        if lag.as_deref() == Some("0") && position.as_deref() == Some("5") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 60 s waiting for partition 0's lag 0 at position 5: lag {lag:?}, \
             position {position:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metadata_columns_carry_topic_partition_offset_timestamp_key_and_headers() {
    use rdkafka::message::{Header, OwnedHeaders};
    let topic = "meta";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let schema_path = dir.path().join("meta.toml");
    std::fs::write(
        &schema_path,
        r#"
name = "meta"
[[fields]]
name = "trace_id"
type = "string"
nullable = false
[[fields]]
name = "off"
source = "_kafka_offset"
type = "int64"
nullable = false
[[fields]]
name = "part"
source = "_kafka_partition"
type = "int32"
[[fields]]
name = "topic"
source = "_kafka_topic"
type = "string"
[[fields]]
name = "msg_time"
source = "_kafka_timestamp"
type = "timestamp"
unit = "ms"
timezone = "UTC"
[[fields]]
name = "msg_time_kolkata"
source = "_kafka_timestamp"
type = "timestamp"
unit = "us"
timezone = "Asia/Kolkata"
[[fields]]
name = "key"
source = "_kafka_key"
type = "string"
[[fields]]
name = "headers"
source = "_kafka_headers"
type = "json"
"#,
    )
    .unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let t0 = 1_714_521_600_000i64;
    let n = 200;
    for i in 0..n {
        let payload = format!("{{\"trace_id\":\"t{i}\"}}");
        let key = format!("k{i}");
        let value = format!("v{i}");
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition((i % PARTITIONS as usize) as i32)
            .payload(payload.as_bytes())
            .key(key.as_bytes())
            .timestamp(t0 + 1000 * i as i64)
            .headers(OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some(value.as_bytes()),
            }));
        if i == 7 {
            record = record.key(&[0xff, 0xfe][..]); // not UTF-8: a dead letter
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let job = job_full(dir.path(), &bootstrap, topic, "", &schema_path);
    let o = sluice_ok(&["backfill", job.to_str().unwrap()]);
    assert!(
        o.contains(&format!("{} rows, 1 dead letters", n - 1)),
        "{o}"
    );
    let dl = dead_letters_of(&dir.path().join("out"), "meta");
    assert_eq!(dl.len(), 1);
    assert!(dl[0]["reason"]
        .as_str()
        .unwrap()
        .contains("key is not valid UTF-8"));

    // Read back by DuckDB, row by row.
    let sql = format!(
        "select trace_id, off, part, topic, epoch_ms(msg_time), key, headers, epoch_ms(msg_time_kolkata) from read_parquet('{}/*.parquet')",
        dir.path().join("out").display()
    );
    let Some(rows) = duckdb_rows(&sql) else {
        return;
    };
    let mut seen = 0;
    for line in rows.lines() {
        let r: Vec<serde_json::Value> = serde_json::from_str(line).unwrap();
        let i: i64 = r[0].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(
            r[1].as_i64().unwrap(),
            i / PARTITIONS as i64,
            "offset of t{i}"
        );
        assert_eq!(
            r[2].as_i64().unwrap(),
            i % PARTITIONS as i64,
            "partition of t{i}"
        );
        assert_eq!(r[3].as_str().unwrap(), topic);
        assert_eq!(r[4].as_i64().unwrap(), t0 + 1000 * i, "timestamp of t{i}");
        assert_eq!(r[5].as_str().unwrap(), format!("k{i}"));
        let h: serde_json::Value = serde_json::from_str(r[6].as_str().unwrap()).unwrap();
        assert_eq!(h["h"], format!("v{i}"));
        // The same instant in a field of another zone (it was moved by 5.5 hours).
        assert_eq!(
            r[7].as_i64().unwrap(),
            t0 + 1000 * i,
            "zoned timestamp of t{i}"
        );
        seen += 1;
    }
    assert_eq!(seen, n - 1);
}

/// Messages whose list items decode to many times their text (8,000 `{}` items of a
/// `list<struct>` with 50 integer fields: 24 KB, about 14 MB decoded) are handed on a few at a
/// time, within what a chunk may decode to, not a partition's whole buffer: every message is
/// exported once with its offset and all its items, a whitespace-only one among them is its
/// dead letter at its own offset, and a second run finds nothing new.
#[test]
fn messages_of_heavy_lists_are_exported_once_in_chunks_cut_by_their_decoded_size() {
    let topic = "heavy";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<String> = (0..50)
        .map(|i| format!("{{ name = \"c{i}\", type = \"int64\" }}"))
        .collect();
    let schema_path = dir.path().join("heavy.toml");
    std::fs::write(
        &schema_path,
        format!(
            "name = \"heavy\"\n[[fields]]\nname = \"id\"\ntype = \"int64\"\nnullable = false\n\
             [[fields]]\nname = \"off\"\nsource = \"_kafka_offset\"\ntype = \"int64\"\n\
             [[fields]]\nname = \"l\"\ntype = \"list<struct>\"\nfields = [ {} ]\n",
            children.join(", ")
        ),
    )
    .unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.max.bytes", "1000000")
        .create()
        .unwrap();
    let items = vec!["{}"; 8_000].join(",");
    let n = 32usize;
    let mut next = [0i64; PARTITIONS as usize];
    let mut offset_of = std::collections::HashMap::new();
    let mut blank_at = None;
    for i in 0..n {
        let p = i % PARTITIONS as usize;
        let payload = format!("{{\"id\":{i},\"l\":[{items}]}}");
        producer
            .send(
                BaseRecord::<(), [u8]>::to(topic)
                    .partition(p as i32)
                    .payload(payload.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        offset_of.insert(i as i64, next[p]);
        next[p] += 1;
        if i == 9 {
            producer
                .send(
                    BaseRecord::<(), [u8]>::to(topic)
                        .partition(p as i32)
                        .payload(&b" \n "[..]),
                )
                .map_err(|(e, _)| e)
                .unwrap();
            blank_at = Some(next[p]);
            next[p] += 1;
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let job = job_full(dir.path(), &bootstrap, topic, "", &schema_path);
    // Chunks of 1 MiB: a partition's eight messages would all be one chunk by their bytes.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("chunk_bytes = \"16KiB\"", "chunk_bytes = \"1MiB\"");
    std::fs::write(&job, text).unwrap();
    let o = sluice_ok(&["backfill", job.to_str().unwrap()]);
    assert!(o.contains(&format!("{n} rows, 1 dead letters")), "{o}");
    let dl = dead_letters_of(&dir.path().join("out"), "heavy");
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["offset"].as_i64(), blank_at, "{}", dl[0]);
    let again = sluice_ok(&["backfill", job.to_str().unwrap()]);
    assert!(again.contains(" 0 rows"), "{again}");
    let sql = format!(
        "select id, off, len(l) from read_parquet('{}/*.parquet')",
        dir.path().join("out").display()
    );
    let Some(rows) = duckdb_rows(&sql) else {
        return;
    };
    let mut seen = std::collections::HashSet::new();
    for line in rows.lines() {
        let r: Vec<serde_json::Value> = serde_json::from_str(line).unwrap();
        let id = r[0].as_i64().unwrap();
        assert!(seen.insert(id), "id {id} twice");
        assert_eq!(r[1].as_i64(), offset_of.get(&id).copied(), "offset of {id}");
        assert_eq!(r[2].as_i64(), Some(8_000), "items of {id}");
    }
    assert_eq!(seen.len(), n);
}

/// A tombstone (a message without a value, as a compacted topic's deletes are) and an empty
/// message are dead letters that say so. Both were read as the line `null`: a dead letter
/// "expected { got null" whose record read `null`, as if the producer had sent that text.
#[test]
fn tombstones_and_empty_messages_are_dead_letters_that_say_so() {
    use crate::kafka_unreadable::{backfill, ids_job, produce};
    let topic = "tombs";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    produce(&producer, topic, 0, 0..3);
    producer
        .send(
            BaseRecord::<[u8], [u8]>::to(topic)
                .partition(0)
                .key(b"gone"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer
        .send(BaseRecord::<(), [u8]>::to(topic).partition(0).payload(b""))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    produce(&producer, topic, 0, 3..5);
    let dir = tempfile::tempdir().unwrap();
    let job = ids_job(dir.path(), &bootstrap, topic);
    let text = backfill(&job, &dir.path().join("backfill.log"), &[]);
    assert_eq!(trace_ids(&dir.path().join("out")).len(), 5, "{text}");
    let letters = dead_letters_of(&dir.path().join("out"), "ids");
    let mut reasons: Vec<(&str, &str)> = letters
        .iter()
        .map(|d| {
            (
                d["reason"].as_str().unwrap(),
                d["record"].as_str().unwrap_or(""),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            (
                "a tombstone: the message has no value (no JSON value; source.tombstones = \"skip\" passes over them)",
                ""
            ),
            ("the message is empty (no JSON value)", ""),
        ],
        "{letters:?}"
    );

    // With `tombstones = "skip"`, the same topic from the start: the tombstone is passed over
    // (counted as filtered), the empty message is still a dead letter.
    let again = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "chunk_bytes = \"16KiB\"",
        "chunk_bytes = \"16KiB\"\ntombstones = \"skip\"",
    );
    let skipping = again.path().join("job.toml");
    std::fs::write(&skipping, text).unwrap();
    let log = backfill(&skipping, &again.path().join("backfill.log"), &[]);
    assert_eq!(trace_ids(&again.path().join("out")).len(), 5, "{log}");
    let letters = dead_letters_of(&again.path().join("out"), "ids");
    let reasons: Vec<&str> = letters
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["the message is empty (no JSON value)"], "{log}");
}
