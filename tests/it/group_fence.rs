//! A group member fenced by a writer its group does not know (a second `run` of the job under
//! another group id; a coordinator that handed one partition to two members looks the same
//! from the member's side): the group never takes the partition away, so past the grace the
//! member leaves its group and joins it again, and fails only when it is fenced again soon
//! after.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::mocking::MockCluster;

use crate::admin::{admin_addr, http, metric_sum};
use crate::helpers::*;
use crate::kafka::{assert_once, job_with, spawn_with, wait_for, wait_log};
use crate::tansu::produce_until;

const TOPIC: &str = "fence";
const QUICK: &[(&str, &str)] = &[("SLUICE_FAULT", "fence_grace:2000")];

/// The test job in `root/<member>`, writing `root/out`, in consumer group `group`.
fn member_job(root: &Path, member: &str, bootstrap: &str, group: &str) -> PathBuf {
    let dir = root.join(member);
    std::fs::create_dir_all(&dir).unwrap();
    let job = job_with(
        &dir,
        bootstrap,
        TOPIC,
        "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"",
    );
    let out = root.join("out").display().to_string();
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("url = \"out/\"", &format!("url = {out:?}"))
        .replace(
            "kind = \"kafka\"\n",
            &format!("kind = \"kafka\"\ngroup = {group:?}\n"),
        );
    std::fs::write(&job, text + "\n[admin]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    job
}

/// Stops a member and asserts that it exited cleanly.
fn stop(member: KillOnDrop, log: &Path) {
    let status = member.stop("a member's stop", 60);
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        status.success(),
        "{} did not stop cleanly:\n{text}",
        log.display()
    );
}

/// `sluice run` of member `name`'s job, with a 2 s fence grace.
fn member(root: &Path, name: &str, bootstrap: &str, group: &str, log: &Path) -> KillOnDrop {
    let job = member_job(root, name, bootstrap, group);
    KillOnDrop::new(spawn_with("run", &job, log, QUICK))
}

/// A cluster with the topic; member A (group `first`) exporting a steady trickle of records,
/// and, once A has committed some, member B (group `second`) of the same job.
struct Scene {
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    root: tempfile::TempDir,
    out: PathBuf,
    log_a: PathBuf,
    log_b: PathBuf,
    a: KillOnDrop,
    b: KillOnDrop,
    halt: Arc<AtomicBool>,
    producer: std::thread::JoinHandle<usize>,
}

impl Scene {
    fn start() -> Scene {
        Scene::start_with(4, None)
    }

    /// With `partitions` partitions (records go to the first 4), and partition `leaderless`
    /// without a leader from the start.
    fn start_with(partitions: i32, leaderless: Option<i32>) -> Scene {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, partitions, 1).unwrap();
        if let Some(p) = leaderless {
            cluster.partition_leader(TOPIC, p, None).unwrap();
        }
        let bootstrap = cluster.bootstrap_servers();
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let (log_a, log_b) = (root.path().join("a.log"), root.path().join("b.log"));
        let a = member(root.path(), "a", &bootstrap, "first", &log_a);
        let halt = Arc::new(AtomicBool::new(false));
        let producer = produce_until(bootstrap.clone(), TOPIC, halt.clone());
        wait_for(&out, 100, 60);
        let b = member(root.path(), "b", &bootstrap, "second", &log_b);
        Scene {
            _cluster: cluster,
            root,
            out,
            log_a,
            log_b,
            a,
            b,
            halt,
            producer,
        }
    }
}

/// B claims every partition (newer terms), and stops. A's next commit is fenced; its group
/// never moves the partitions, so A joins it again and resumes every partition: 4 at the
/// start, 4 after the rejoin.
fn fenced_then_rejoined(b: KillOnDrop, log_a: &Path, log_b: &Path) {
    let text = wait_log(log_b, "partition resumes", 4, 60);
    assert_eq!(text.matches("partition resumes").count(), 4, "{text}");
    stop(b, log_b);
    let text = wait_log(log_a, "is fenced", 1, 60);
    assert!(text.contains("is fenced"), "A was never fenced:\n{text}");
    let text = wait_log(log_a, "joined the group again", 1, 60);
    assert!(
        text.contains("joined the group again"),
        "A did not join its group again:\n{text}"
    );
    let text = wait_log(log_a, "partition resumes", 8, 60);
    assert!(
        text.matches("partition resumes").count() >= 8,
        "A did not resume its partitions:\n{text}"
    );
}

/// A is fenced by B, which then stops: A's group never moves the partitions, and before A
/// failed when the grace ran out, so nothing more was exported. Now A joins its group again,
/// gets the partitions back with new terms, and exports the rest.
#[test]
fn a_member_fenced_from_outside_its_group_joins_again_and_goes_on() {
    let Scene {
        _cluster,
        root: _root,
        out,
        log_a,
        log_b,
        a,
        b,
        halt,
        producer,
    } = Scene::start();
    fenced_then_rejoined(b, &log_a, &log_b);
    // Counted where an operator looks: one rejoin, and the assignments before and after.
    let addr = admin_addr(&log_a);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, m) = http(&addr, "GET", "/metrics", None);
        let (rejoins, assignments) = (
            metric_sum(&m, "sluice_group_rejoins_total"),
            metric_sum(&m, "sluice_group_assignments_total"),
        );
        if rejoins == 1.0 && assignments >= 2.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A's metrics never showed 1 rejoin and 2 assignments (rejoins {rejoins}, assignments {assignments}):\n{m}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    halt.store(true, Ordering::Release);
    let n = producer.join().unwrap();
    wait_for(&out, n, 60);
    stop(a, &log_a);
    assert_once(&out, n);
    assert_files_match_checkpoints(&out, "kafka-it");
}

/// As above, with a fifth partition that has had no leader from the start: each member
/// waits for it. A's rejoin revoked it with the rest, and releasing a partition librdkafka
/// never held failed the whole release: A held every partition, out of its group, until the
/// rejoin's 10-minute limit failed it.
#[test]
fn a_member_waiting_for_a_leader_joins_its_group_again_when_fenced() {
    let Scene {
        _cluster,
        root: _root,
        out,
        log_a,
        log_b,
        a,
        b,
        halt,
        producer,
    } = Scene::start_with(5, Some(4));
    let text = wait_log(&log_a, "has no leader", 1, 60);
    assert!(text.contains("has no leader"), "{text}");
    fenced_then_rejoined(b, &log_a, &log_b);
    halt.store(true, Ordering::Release);
    let n = producer.join().unwrap();
    wait_for(&out, n, 60);
    stop(a, &log_a);
    assert_once(&out, n);
}

/// A and B, in two groups, both keep running: each takes the partitions back from the other
/// once, and the one fenced again by the owner that made it rejoin fails, naming what
/// happens, rather than trading the partitions back and forth for ever. The other exports
/// everything.
#[test]
fn two_groups_writing_one_job_end_with_one_failing_loudly() {
    let Scene {
        _cluster,
        root: _root,
        out,
        log_a,
        log_b,
        mut a,
        mut b,
        halt,
        producer,
    } = Scene::start();
    // One of them exits by itself, with the reason.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let (mut failed, failed_log, survivor, survivor_log) = loop {
        if a.child().try_wait().unwrap().is_some() {
            break (a, &log_a, b, &log_b);
        }
        if b.child().try_wait().unwrap().is_some() {
            break (b, &log_b, a, &log_a);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither member failed within 90 s:\n--- a ---\n{}\n--- b ---\n{}",
            std::fs::read_to_string(&log_a).unwrap(),
            std::fs::read_to_string(&log_b).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let status = failed.0.take().unwrap().wait().unwrap();
    let text = std::fs::read_to_string(failed_log).unwrap();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("joined the group again")
            && text.contains("was fenced again by owner")
            && text.contains("another process writes this job's partitions"),
        "{text}"
    );
    halt.store(true, Ordering::Release);
    let n = producer.join().unwrap();
    wait_for(&out, n, 60);
    stop(survivor, survivor_log);
    assert_once(&out, n);
    assert_files_match_checkpoints(&out, "kafka-it");
}

/// A live job at `latest` that dies before its first commit (its worker held, then kill -9)
/// leaves no group offset. The next owner (another process, here under another group id)
/// starts each partition where the first recorded that it started it, not at the log's end:
/// the records between are the job's. Before, the next owner started at `latest` again and
/// those 800 records were never written.
#[test]
fn the_next_owner_of_partitions_a_live_job_started_but_never_committed_starts_where_it_did() {
    let topic = "restart-latest";
    let c = crate::kafka::cluster(topic);
    let bootstrap = c.bootstrap_servers();
    // History the job skips: it starts at the end.
    crate::kafka::produce_events(&bootstrap, topic, 0, 400, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let fault = format!("hold_worker:@{}", hold.display());
    let (job, first) = crate::owners::live_at_latest(
        dir.path(),
        &bootstrap,
        topic,
        &[("SLUICE_FAULT", fault.as_str())],
    );
    let mut first = KillOnDrop::new(first);
    crate::kafka::produce_events(&bootstrap, topic, 400, 400, 4, None);
    first.child().kill().unwrap();
    first.child().wait().unwrap();
    let out = dir.path().join("out");
    assert_eq!(trace_ids(&out).len(), 0, "the held job committed");

    // More records while no process runs; then the next owner, and records after its start.
    crate::kafka::produce_events(&bootstrap, topic, 800, 400, 4, None);
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("[source]\n", "[source]\ngroup = \"another\"\n");
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("next.log");
    let _next = KillOnDrop::new(spawn_with("run", &job, &log, &[]));
    let assigned = wait_log(&log, "partitions assigned", 1, 60);
    assert!(assigned.contains("partitions assigned"), "{assigned}");
    crate::kafka::produce_events(&bootstrap, topic, 1200, 400, 4, None);
    wait_for(&out, 1200, 60);
    let ids = trace_ids(&out);
    let expected: std::collections::BTreeSet<String> =
        (400..1600).map(|i| format!("t{i}")).collect();
    let got: std::collections::BTreeSet<String> = ids.keys().cloned().collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "missing: {:?}",
        expected.difference(&got).take(5).collect::<Vec<_>>()
    );
    assert_eq!(got, expected);
    assert!(ids.values().all(|c| *c == 1), "duplicates");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("where an earlier claim of this job started it"),
        "{said}"
    );
}

/// A group member whose destination is down (its sink workers held, as a store that does not
/// answer holds them) while a backlog fills its channel stays in its group: once the chunks
/// in flight are held at their cap for a while (or the channel, filled first, is full for a
/// while), the reader pauses fetching and keeps polling.
/// Before, a put blocked on the full channel froze them at the cap, nothing polled, and after
/// `max.poll.interval.ms` (6 s here) librdkafka evicted the member: its partitions were
/// revoked, and assigned again once it polled. The outage lasts three intervals from the
/// pause.
#[test]
fn a_member_whose_channel_stays_full_keeps_polling_and_its_partitions() {
    let topic = "held-full";
    let c = crate::kafka::cluster(topic);
    let bootstrap = c.bootstrap_servers();
    crate::kafka::produce_events(&bootstrap, topic, 0, 20_000, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(
        dir.path(),
        &bootstrap,
        topic,
        "\"max.poll.interval.ms\" = \"6000\"\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n",
    );
    // A stop must fit in a poll interval.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("[job]\n", "[job]\nstop_deadline = \"3s\"\n")
        + "[channel]\nmax_bytes = \"48KiB\"\n"
        // Decoding slower than reading, as under a backlog: the chunks in flight sit at their
        // cap when the channel fills (in items of a third of it or more).
        + "[[repo.stages]]\nsql = \"SELECT *, levenshtein(repeat(trace_id, 30), reverse(repeat(trace_id, 30))) AS lev FROM input\"\n";
    std::fs::write(&job, text).unwrap();
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let log = dir.path().join("run.log");
    let fault = format!("hold_worker:@{}", hold.display());
    let run = KillOnDrop::new(spawn_with("run", &job, &log, &[("SLUICE_FAULT", &fault)]));
    let said = wait_log(&log, "an item is in the channel", 1, 60);
    assert!(said.contains("partitions assigned"), "{said}");
    // Paused for the chunks held at their cap, or for the full channel itself where it
    // filled first (which of the two depends on how fast the stage decodes).
    let said = wait_log(&log, "fetching paused, the source kept polling", 1, 60);
    assert!(
        said.contains("fetching paused, the source kept polling"),
        "{said}"
    );
    // The outage: three poll intervals with the channel full.
    std::thread::sleep(std::time::Duration::from_secs(18));
    std::fs::remove_file(&hold).unwrap();
    let out = dir.path().join("out");
    wait_for(&out, 20_000, 120);
    assert_once(&out, 20_000);
    let said = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        said.matches("partitions assigned").count(),
        1,
        "the member lost its partitions during the outage:\n{said}"
    );
    drop(run);
}
