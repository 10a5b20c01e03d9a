//! A partition without a leader when the group hands it to a member (its broker down, an
//! election not yet made): its watermarks cannot be read, so where it would start cannot be
//! judged. It waits, and is taken once the broker answers; the member's other partitions
//! export meanwhile. The whole assignment failed on it, so one partition down for hours
//! stopped every member it was handed to, around the group.

use std::collections::HashSet;

use rdkafka::mocking::MockCluster;

use crate::helpers::*;
use crate::kafka::{assert_once, job_with, produce_events, spawn_run, wait_for, wait_log};

#[test]
fn a_partition_without_a_leader_waits_while_the_others_export() {
    let topic = "leaderless";
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(topic, 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let n = 2000;
    // Even trace ids go to partition 0, odd ones to partition 1.
    produce_events(&bootstrap, topic, 0, n, 2, None);
    cluster.partition_leader(topic, 1, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), &bootstrap, topic, "");
    let text = std::fs::read_to_string(&job).unwrap() + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("run.log");
    let out = dir.path().join("out");
    let run = spawn_run(&job, &log);
    let addr = crate::admin::admin_addr(&log);
    let text = wait_log(&log, "has no leader", 1, 60);
    assert!(
        text.contains("has no leader"),
        "waiting for the member to say partition 1 waits for a leader:\n{text}"
    );
    // The API says which partition is not read, and why.
    let not_read = || crate::admin::not_read(&addr);
    let held = crate::admin::one_not_read(&addr, "leaderless-1", "without_leader");
    assert!(!held["error"].as_str().unwrap().is_empty(), "{held}");
    wait_for(&out, n / 2, 60);
    let seen: HashSet<String> = trace_ids(&out).into_keys().collect();
    let even: HashSet<String> = (0..n).step_by(2).map(|i| format!("t{i}")).collect();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        seen, even,
        "partition 0's records alone, while partition 1 has no leader:\n{text}"
    );
    cluster.partition_leader(topic, 1, Some(1)).unwrap();
    wait_for(&out, n, 90);
    wait_until("no partition listed as not read", 30, || {
        not_read().is_empty()
    });
    let status = run.stop("the run's stop", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("partition taken now that its leader answers"),
        "{text}"
    );
    assert_once(&out, n);
}

/// A backfill plans every partition's range from its watermarks: one without a leader stops
/// it at the start, saying so and what to do (it said "watermarks of t/1: Meta data fetch
/// error").
#[test]
fn a_backfill_over_a_partition_without_a_leader_says_so() {
    let topic = "leaderless-backfill";
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(topic, 2, 1).unwrap();
    produce_events(&cluster.bootstrap_servers(), topic, 0, 10, 2, None);
    cluster.partition_leader(topic, 1, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), &cluster.bootstrap_servers(), topic, "");
    let (status, err) = sluice_within(&["backfill", job.to_str().unwrap()], 60);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("partition leaderless-backfill-1") && err.contains("has no leader"),
        "{err}"
    );
}

/// A partition read by the task whose leader goes away (its broker unreachable from here, an
/// ACL taken away): its high watermark cannot be fetched, so its lag would show its last
/// value (0, caught up) for as long as it lasts, with every alert quiet. The task counts it
/// in `sluice_partitions_lag_unknown` (after 10 s here, a minute by default; a round of fetches is every 5 s). Before, nothing
/// showed it.
#[test]
fn a_partition_whose_watermark_cannot_be_fetched_is_counted_as_lag_unknown() {
    let topic = "lag-unknown";
    let cluster = MockCluster::new(2).unwrap();
    cluster.create_topic(topic, 2, 1).unwrap();
    cluster.partition_leader(topic, 0, Some(1)).unwrap();
    cluster.partition_leader(topic, 1, Some(2)).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let n = 200;
    produce_events(&bootstrap, topic, 0, n, 2, None);
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), &bootstrap, topic, "");
    let text = std::fs::read_to_string(&job).unwrap() + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("run.log");
    let out = dir.path().join("out");
    let run = KillOnDrop::new(crate::kafka::spawn_with(
        "run",
        &job,
        &log,
        &[("SLUICE_FAULT", "lag_unknown_after:10000")],
    ));
    let addr = crate::admin::admin_addr(&log);
    wait_for(&out, n, 60);
    let unknown = || {
        let (code, body) = crate::admin::http(&addr, "GET", "/metrics", None);
        assert_eq!(code, 200, "{body}");
        body.lines()
            .find(|l| l.starts_with("sluice_partitions_lag_unknown{"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
    };
    wait_until("the lag of both partitions known", 30, || {
        unknown() == Some(0)
    });
    cluster.broker_down(2).unwrap();
    wait_until("partition 1's lag counted as unknown", 60, || {
        unknown() == Some(1)
    });
    let status = run.stop("the run's stop", 60);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}
