//! Kafka record batches made by hand and appended with a Produce request (v3) of our own:
//! what any producer can send, and what rdkafka's producer never would (a batch that says
//! gzip and is not, a transaction's control record).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The attributes' codec bits for gzip.
pub const GZIP: i16 = 1;
/// The attributes of a transaction's control batch (transactional, control).
pub const CONTROL: i16 = 0x30;

/// CRC-32C (Castagnoli), as record batches carry it.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// A record batch (magic 2) of `count` records with `attributes`, producer id `pid`, and
/// `records` as its payload, its CRC right. The broker sets the base offset.
pub fn record_batch(attributes: i16, count: i32, pid: i64, records: &[u8]) -> Vec<u8> {
    // From the attributes on: what the CRC covers.
    let mut covered = Vec::new();
    covered.extend_from_slice(&attributes.to_be_bytes());
    covered.extend_from_slice(&(count - 1).to_be_bytes()); // last offset delta
    covered.extend_from_slice(&0i64.to_be_bytes()); // base timestamp
    covered.extend_from_slice(&0i64.to_be_bytes()); // max timestamp
    covered.extend_from_slice(&pid.to_be_bytes()); // producer id
    covered.extend_from_slice(&(if pid < 0 { -1i16 } else { 0 }).to_be_bytes()); // epoch
    covered.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    covered.extend_from_slice(&count.to_be_bytes()); // records
    covered.extend_from_slice(records);
    let mut after_len = Vec::new();
    after_len.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    after_len.push(2); // magic
    after_len.extend_from_slice(&crc32c(&covered).to_be_bytes());
    after_len.extend_from_slice(&covered);
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&(after_len.len() as i32).to_be_bytes());
    batch.extend_from_slice(&after_len);
    batch
}

/// One control record: a transaction's commit marker (key: version 0, type 1; value:
/// version 0, coordinator epoch 0), encoded as a v2 record.
pub fn commit_marker() -> Vec<u8> {
    let mut body = vec![0u8, 0, 0]; // attributes, timestamp delta, offset delta
    body.push(8); // key length 4 (zigzag varint)
    body.extend_from_slice(&[0, 0, 0, 1]);
    body.push(12); // value length 6
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    body.push(0); // no headers
    let mut record = vec![(body.len() as u8) << 1];
    record.extend_from_slice(&body);
    record
}

/// Appends `batch` to `partition` of `topic` through a Produce request sent to `broker` (the
/// partition's leader); panics unless the broker accepts it.
pub fn produce_raw(broker: &str, topic: &str, partition: i32, batch: &[u8]) {
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    let mut req = Vec::new();
    req.extend_from_slice(&0i16.to_be_bytes()); // Produce
    req.extend_from_slice(&3i16.to_be_bytes()); // version 3
    req.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    string(&mut req, "raw-producer");
    req.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
    req.extend_from_slice(&1i16.to_be_bytes()); // acks
    req.extend_from_slice(&10_000i32.to_be_bytes()); // timeout
    req.extend_from_slice(&1i32.to_be_bytes()); // one topic
    string(&mut req, topic);
    req.extend_from_slice(&1i32.to_be_bytes()); // one partition
    req.extend_from_slice(&partition.to_be_bytes());
    req.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    req.extend_from_slice(batch);

    let mut conn = TcpStream::connect(broker).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.write_all(&(req.len() as i32).to_be_bytes()).unwrap();
    conn.write_all(&req).unwrap();
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    conn.read_exact(&mut resp).unwrap();
    // correlation id, topics (1), name, partitions (1), index, then the error code.
    let at = 4 + 4 + 2 + topic.len() + 4 + 4;
    let code = i16::from_be_bytes([resp[at], resp[at + 1]]);
    assert_eq!(code, 0, "the broker refused the raw batch");
}
