//! Lag is read off the poll thread. A Kafka-protocol proxy in front of tansu (tansu names the
//! proxy as its address, so every connection after the bootstrap goes through it) swallows
//! ListOffsets requests, as a broker whose partition leader is down leaves them waiting. The
//! member goes on polling: no eviction, no rebalance, records keep flowing. With the watermark
//! requests on the poll thread (2 s each, per owned partition, every 5 s), the member stopped
//! polling for longer than `max.poll.interval.ms` and the group threw it out.

use std::sync::atomic::Ordering;

use crate::helpers::*;
use crate::kafka::{assert_once, job_with, produce_events, spawn_run, wait_for};
use crate::kafka_proxy::LIST_OFFSETS;

#[test]
fn tansu_watermark_requests_that_never_return_do_not_stop_the_member_polling() {
    let Some((broker, seen, bootstrap)) = crate::kafka_proxy::tansu_behind() else {
        return;
    };
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
        seen.count(LIST_OFFSETS) >= 2 * partitions as u64
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
