//! Lag is read off the poll thread. A Kafka-protocol proxy in front of tansu (tansu names the
//! proxy as its address, so every connection after the bootstrap goes through it) swallows
//! ListOffsets requests, as a broker whose partition leader is down leaves them waiting. The
//! member goes on polling: no eviction, no rebalance, records keep flowing. With the watermark
//! requests on the poll thread (2 s each, per owned partition, every 5 s), the member stopped
//! polling for longer than `max.poll.interval.ms` and the group threw it out.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::helpers::*;
use crate::kafka::{assert_once, job_with, produce_events, spawn_run, wait_for};
use crate::tansu::Tansu;

/// Kafka's API key of ListOffsets (watermark requests).
const LIST_OFFSETS: i16 = 2;

#[derive(Default)]
struct Seen {
    swallow: AtomicBool,
    list_offsets: AtomicU64,
    swallowed: AtomicU64,
}

/// Forwards one client connection to `upstream`, request by request (4-byte size, then the
/// request, whose first two bytes are its API key); answers flow back untouched.
fn relay(mut client: TcpStream, upstream: &str, seen: &Seen) {
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(mut back_from), Ok(mut back_to)) = (up.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(Shutdown::Both);
    });
    loop {
        let mut size = [0u8; 4];
        if client.read_exact(&mut size).is_err() {
            break;
        }
        let mut request = vec![0u8; u32::from_be_bytes(size) as usize];
        if request.len() < 2 || client.read_exact(&mut request).is_err() {
            break;
        }
        if i16::from_be_bytes([request[0], request[1]]) == LIST_OFFSETS {
            seen.list_offsets.fetch_add(1, Ordering::SeqCst);
            if seen.swallow.load(Ordering::SeqCst) {
                seen.swallowed.fetch_add(1, Ordering::SeqCst);
                continue; // never answered
            }
        }
        if up.write_all(&size).is_err() || up.write_all(&request).is_err() {
            break;
        }
    }
    let _ = up.shutdown(Shutdown::Both);
}

#[test]
fn tansu_watermark_requests_that_never_return_do_not_stop_the_member_polling() {
    let seen = Arc::new(Seen::default());
    let mut proxy_port = 0;
    let Some(broker) = Tansu::start_behind(|upstream| {
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        proxy_port = proxy.local_addr().unwrap().port();
        let s = seen.clone();
        serve_each(proxy, move |client| relay(client, &upstream, &s));
        Some(proxy_port)
    }) else {
        return;
    };
    let bootstrap = format!("127.0.0.1:{proxy_port}");
    let topic = "lagging";
    let partitions = 8;
    broker.create_topic(topic, partitions);
    produce_events(&bootstrap, topic, 0, 800, partitions as i32, None);
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(
        dir.path(),
        &bootstrap,
        topic,
        "\"max.poll.interval.ms\" = \"10000\"\n\"session.timeout.ms\" = \"10000\"\n\
         \"heartbeat.interval.ms\" = \"1000\"",
    );
    // A revocation must fit in the poll interval.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("[job]\n", "[job]\nstop_deadline = \"5s\"\n");
    std::fs::write(&job, text).unwrap();
    let out = dir.path().join("out");
    let log = dir.path().join("run.log");
    let run = spawn_run(&job, &log);
    wait_for(&out, 800, 120);
    wait_until("the lag watch's first watermark requests", 60, || {
        seen.list_offsets.load(Ordering::SeqCst) >= 2 * partitions as u64
    });

    // From now on no watermark request is answered. A round over the 8 partitions (two
    // requests each: low and high) waits 8 × 2 s, longer than max.poll.interval.ms (10 s).
    seen.swallow.store(true, Ordering::SeqCst);
    wait_until("two rounds of watermark requests swallowed", 120, || {
        seen.swallowed.load(Ordering::SeqCst) >= 4 * partitions as u64
    });
    produce_events(&bootstrap, topic, 800, 800, partitions as i32, None);
    wait_for(&out, 1600, 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("partitions assigned").count(),
        1,
        "the member was evicted or the group rebalanced:\n{text}"
    );
    assert!(!text.contains("revoked"), "{text}");
    assert!(run.stop("the run to stop", 60).success());
    assert_once(&out, 1600);
}
