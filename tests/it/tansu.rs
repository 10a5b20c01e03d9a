//! The real-broker tier: tansu (a separate Kafka-compatible broker process, sqlite engine),
//! started per test on its own port and directory and stopped by PID. Backfills by timestamp
//! and by offsets, a broker stopped for 20 s under a live job, resuming in another process, and
//! topics that begin to match a `latest` job's pattern later.
//!
//! `scripts/test.sh` installs tansu and sets `SLUICE_TEST_TANSU`; without it the tests print a
//! skip line (under CI they fail instead).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::helpers::*;
use crate::kafka::{assert_once, job_with, produce_events, spawn_run, wait_for, wait_log};
use crate::kafka_proxy::JOIN_GROUP;

/// One tansu broker; stopped (killed) when dropped.
pub(crate) struct Tansu {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// The port named to clients in metadata, when not `port` (a proxy in front).
    advertised: Option<u16>,
    child: Option<Child>,
}

fn tansu_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_TEST_TANSU") {
        return Some(PathBuf::from(p));
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but SLUICE_TEST_TANSU is not: the real-broker tests need tansu");
    }
    eprintln!(
        "SKIP: the real-broker test needs SLUICE_TEST_TANSU (scripts/test.sh installs tansu)"
    );
    None
}

impl Tansu {
    pub(crate) fn start() -> Option<Tansu> {
        Tansu::start_behind(|_| None)
    }

    /// A broker behind a proxy: `proxy` gets the broker's address, starts serving and returns
    /// its own port, which the broker names to clients as its address (after the bootstrap,
    /// every connection goes there).
    pub(crate) fn start_behind(proxy: impl FnOnce(String) -> Option<u16>) -> Option<Tansu> {
        let bin = tansu_bin()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let advertised = proxy(format!("127.0.0.1:{port}"));
        let mut t = Tansu {
            bin,
            dir: tempfile::tempdir().unwrap(),
            port,
            advertised,
            child: None,
        };
        t.spawn();
        Some(t)
    }

    pub(crate) fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Starts the broker from its directory (it reads `.env` there and resolves the sqlite
    /// path against it) and waits until it serves metadata.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &self.url(),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{}", self.advertised.unwrap_or(self.port)),
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .current_dir(self.dir.path())
            .env_remove("CLUSTER_ID")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while consumer
            .fetch_metadata(None, Duration::from_secs(1))
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "tansu did not answer: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    pub(crate) fn create_topic(&self, name: &str, partitions: u32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// A topic with settings of its own (`max.message.bytes`, say).
    pub(crate) fn create_topic_with(&self, name: &str, partitions: u32, config: &[(&str, &str)]) {
        let out = Command::new(&self.bin)
            .args(["topic", "create", "--broker", &self.url()])
            .args(["--partitions", &partitions.to_string(), name])
            .args(
                config
                    .iter()
                    .flat_map(|(k, v)| ["--config".to_string(), format!("{k}={v}")]),
            )
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

const T0: i64 = 1_714_521_600_000; // 2024-05-01T00:00:00Z

/// Produces events `t<first>`.. over 4 partitions; event i has message timestamp T0 + i s.
fn produce_timed(bootstrap: &str, topic: &str, first: usize, n: usize) {
    produce_events(bootstrap, topic, first, n, 4, Some(T0));
}

pub(crate) fn ids(out: &Path) -> Vec<usize> {
    let mut v: Vec<usize> = trace_ids(out)
        .into_iter()
        .map(|(k, c)| {
            assert_eq!(c, 1, "{k} is duplicated");
            k[1..].parse().unwrap()
        })
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn tansu_backfills_by_timestamp_and_by_offsets_exactly() {
    let Some(broker) = Tansu::start() else { return };
    broker.create_topic("ranges", 4);
    produce_timed(&broker.bootstrap(), "ranges", 0, 400);
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), &broker.bootstrap(), "ranges", "");
    let job = job.to_str().unwrap();

    // By timestamp: every event with a message time in [T0 + 100 s, T0 + 300 s).
    let from = format!("@{}", T0 + 100_000);
    let to = "2024-05-01T00:05:00Z"; // T0 + 300 s
                                     // A relative `--url` is taken from the current folder, not the job file's.
    let cwd = dir.path().join("elsewhere");
    std::fs::create_dir(&cwd).unwrap();
    let args = ["backfill", job, "--from", &from, "--to", to, "--url", "ts/"];
    let backfill = || {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .current_dir(&cwd)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let o = backfill();
    assert!(o.contains("200 rows"), "{o}");
    assert_eq!(ids(&cwd.join("ts")), (100..300).collect::<Vec<_>>());
    assert!(!dir.path().join("ts").exists());
    // Re-running the same backfill resumes from its checkpoints: nothing new.
    let again = backfill();
    assert!(again.contains(" 0 rows"), "{again}");

    // Times no record reaches: tansu answers offset 0 for them, which read every partition
    // whole for a range starting past the last record, and none of one ending past it.
    let past = |name: &str, from: i64, to: &str| {
        let url = dir.path().join(name);
        let from = format!("@{}", T0 + from);
        let args = ["backfill", job, "--name", name, "--from", &from, "--to", to];
        let o = sluice_ok(&[&args[..], &["--url", url.to_str().unwrap()]].concat());
        (o, url)
    };
    let (o, url) = past("past", 500_000, "latest");
    assert!(o.contains(" 0 rows"), "{o}");
    assert_eq!(ids(&url), Vec::<usize>::new());
    let (o, url) = past("tail", 300_000, &format!("@{}", T0 + 1_000_000));
    assert!(o.contains("100 rows"), "{o}");
    assert_eq!(ids(&url), (300..400).collect::<Vec<_>>());

    // By offsets: partition p holds events p, p + 4, ...; offsets [10, 20) of each.
    let o = sluice_ok(&[
        "backfill",
        job,
        "--from",
        "0=10,1=10,2=10,3=10",
        "--to",
        "0=20,1=20,2=20,3=20",
        "--name",
        "by-offsets",
        "--url",
        dir.path().join("offsets").to_str().unwrap(),
    ]);
    assert!(o.contains("40 rows"), "{o}");
    let want: Vec<usize> = (40..80).collect();
    assert_eq!(ids(&dir.path().join("offsets")), want);

    // A bad bound is refused before anything is read.
    let bad = sluice(&["backfill", job, "--to", "tomorrow"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--to"));
}

#[test]
fn tansu_live_job_survives_a_broker_restart_and_resumes_in_another_process() {
    let Some(mut broker) = Tansu::start() else {
        return;
    };
    broker.create_topic("live", 4);
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(
        dir.path(),
        &broker.bootstrap(),
        "live",
        "\"reconnect.backoff.max.ms\" = \"1000\"",
    );
    let mut text = std::fs::read_to_string(&job).unwrap();
    text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&job, text).unwrap();
    let out = dir.path().join("out");
    let first = spawn_run(&job, &dir.path().join("first.log"));
    let admin = crate::admin::admin_addr(&dir.path().join("first.log"));
    let silent = || {
        let (_, m) = crate::admin::http(&admin, "GET", "/metrics", None);
        crate::admin::metric_sum(&m, "sluice_source_silent_seconds")
    };
    produce_timed(&broker.bootstrap(), "live", 0, 1000);
    wait_for(&out, 1000, 90);
    assert_eq!(ids(&out).len(), 1000, "caught up before the outage");
    assert!(silent() < 10.0, "the broker answers: {}", silent());

    // The broker goes away while the job runs, until the job's metrics say it has heard
    // nothing for 15 s, then comes back on the same data.
    broker.stop();
    wait_until("sluice_source_silent_seconds of 15 s", 60, || {
        silent() >= 15.0
    });
    broker.spawn();
    produce_timed(&broker.bootstrap(), "live", 1000, 1000);
    wait_for(&out, 2000, 120);
    wait_until("sluice_source_silent_seconds under 10 s again", 30, || {
        silent() < 10.0
    });
    sigterm(&first);
    let status = first.wait_with_output().unwrap().status;
    let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    assert!(status.success(), "{log}");
    assert_eq!(ids(&out).len(), 2000, "the job resumed by itself: {log}");

    // Another process resumes from the checkpoints: no duplicates, nothing lost.
    produce_timed(&broker.bootstrap(), "live", 2000, 500);
    let second = spawn_run(&job, &dir.path().join("second.log"));
    wait_for(&out, 2500, 90);
    sigterm(&second);
    assert!(second.wait_with_output().unwrap().status.success());
    assert_once(&out, 2500);
}

/// Produces events `t<first>`.. in small batches until `stop`; returns how many.
pub(crate) fn produce_until(
    bootstrap: String,
    topic: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Acquire) {
            produce_events(&bootstrap, topic, n, 40, 4, None);
            n += 40;
            // A steady trickle: the members always hold open files.
            std::thread::sleep(Duration::from_millis(100));
        }
        n
    })
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// Commit records of `job` under `out`.
fn commits(out: &Path, job: &str) -> usize {
    files_under(&out.join("_sluice").join(job).join("checkpoints"), false).len()
}

/// Waits until `job` has more than `than` commit records.
fn wait_commits(out: &Path, job: &str, than: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while commits(out, job) <= than {
        assert!(
            Instant::now() < deadline,
            "no more than {than} commits within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn tansu_a_frozen_member_is_fenced_when_it_wakes() {
    let Some(broker) = Tansu::start() else {
        return;
    };
    broker.create_topic("zombie", 4);
    // Two members of one group, in folders of their own, writing one destination.
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let options = "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"";
    let jobs: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|m| {
            let dir = root.path().join(m);
            std::fs::create_dir_all(&dir).unwrap();
            let job = job_with(&dir, &broker.bootstrap(), "zombie", options);
            let text = std::fs::read_to_string(&job).unwrap().replace(
                "url = \"out/\"",
                &format!("url = {:?}", out.display().to_string()),
            );
            std::fs::write(&job, text).unwrap();
            job
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_until(broker.bootstrap(), "zombie", stop.clone());
    let a = spawn_run(&jobs[0], &root.path().join("a.log"));
    wait_commits(&out, "kafka-it", 0, 60);
    // A freezes while it holds open files (records keep arriving).
    signal(&a, "-STOP");
    let before = commits(&out, "kafka-it");
    let b = spawn_run(&jobs[1], &root.path().join("b.log"));
    // B takes the partitions over once A's session has expired, and commits.
    wait_commits(&out, "kafka-it", before, 90);
    // A wakes up and goes on with what it held: it must not make any of it visible.
    signal(&a, "-CONT");
    // Its next commit finds B's newer term: it is fenced and lets those partitions go (the
    // group has moved them), then rejoins the group as a member like any other.
    let a_log = root.path().join("a.log");
    let fenced = wait_log(&a_log, "is fenced", 1, 60);
    assert!(
        fenced.contains("is fenced"),
        "the woken member was not fenced:\n{fenced}"
    );
    stop.store(true, Ordering::Release);
    let n = producer.join().unwrap();
    wait_for(&out, n, 120);
    sigterm(&a);
    let a_status = a.wait_with_output().unwrap().status;
    sigterm(&b);
    let b_status = b.wait_with_output().unwrap().status;
    let a_text = std::fs::read_to_string(&a_log).unwrap();
    let b_text = std::fs::read_to_string(root.path().join("b.log")).unwrap();
    let c = trace_ids(&out);
    assert!(
        c.values().all(|v| *v == 1) && c.len() == n,
        "{} of {n} records, duplicates: {:?}\n--- a ---\n{a_text}\n--- b ---\n{b_text}",
        c.len(),
        c.iter()
            .filter(|(_, v)| **v > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_files_match_checkpoints(&out, "kafka-it");
    assert!(a_status.success(), "{a_text}");
    assert!(b_status.success(), "{b_text}");
}

#[test]
fn tansu_ten_rolling_restarts_of_a_two_member_group_stay_exactly_once() {
    let Some(broker) = Tansu::start() else {
        return;
    };
    broker.create_topic("roll", 4);
    let root = tempfile::tempdir().unwrap();
    let job = job_with(
        root.path(),
        &broker.bootstrap(),
        "roll",
        "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"",
    );
    let out = root.path().join("out");
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_until(broker.bootstrap(), "roll", stop.clone());
    let log = |i: usize| root.path().join(format!("member-{i}.log"));
    let mut members: Vec<(usize, KillOnDrop)> =
        (0..2).map(|i| (i, spawn_run(&job, &log(i)))).collect();
    wait_commits(&out, "kafka-it", 0, 60);
    for i in 2..12 {
        // A rolling restart with surge: the new member joins before the old one leaves.
        let new = spawn_run(&job, &log(i));
        let text = wait_log(&log(i), "partition resumes", 1, 90);
        assert!(
            text.contains("partition resumes"),
            "member {i} never got a partition:\n{text}"
        );
        let (j, old) = members.remove(0);
        sigterm(&old);
        let status = old.wait_with_output().unwrap().status;
        let text = std::fs::read_to_string(log(j)).unwrap();
        assert!(status.success(), "member {j} did not stop cleanly:\n{text}");
        members.push((i, new));
    }
    stop.store(true, Ordering::Release);
    let n = producer.join().unwrap();
    wait_for(&out, n, 120);
    for (j, m) in members {
        sigterm(&m);
        let status = m.wait_with_output().unwrap().status;
        let text = std::fs::read_to_string(log(j)).unwrap();
        assert!(status.success(), "member {j} did not stop cleanly:\n{text}");
    }
    let c = trace_ids(&out);
    let dups: Vec<_> = c.iter().filter(|(_, v)| **v > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    assert_eq!(c.len(), n, "records missing");
    assert_files_match_checkpoints(&out, "kafka-it");
}

impl Tansu {
    /// Retention ran on partition `partition` of `topic` while the broker was down: its
    /// records below `offset` are gone and its low watermark is `offset`. (tansu's sqlite
    /// engine implements neither DeleteRecords nor timely retention, so the rows go directly.)
    pub(crate) fn retain_from(&mut self, topic: &str, partition: u32, offset: u64) {
        self.stop();
        let script = r#"
import sqlite3, sys
db, topic, partition, offset = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = sqlite3.connect(db)
tp = c.execute("select tp.id from topition tp join topic t on t.id = tp.topic where t.name = ? and tp.partition = ?", (topic, partition)).fetchone()[0]
c.execute("delete from header where topition = ? and offset_id < ?", (tp, offset))
n = c.execute("delete from record where topition = ? and offset_id < ?", (tp, offset)).rowcount
c.execute("update watermark set low = ? where topition = ?", (offset, tp))
c.commit()
print(n)
"#;
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(self.dir.path().join("tansu.db"))
            .args([topic, &partition.to_string(), &offset.to_string()])
            .output()
            .unwrap();
        let deleted = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && deleted.trim() == offset.to_string(),
            "retention by hand: {deleted} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.spawn();
    }
}

/// With `auto_offset_reset = "latest"` the job starts the partitions it first takes at the
/// log's end, and records when. A topic that begins to match its pattern later, created
/// while the job was down or while it runs, is read from its first record; a topic of older
/// records added to the job file later starts at its end. Before,
/// such a topic started at its end when the group noticed it: every record written to it
/// before that was lost without a word. (librdkafka's mock broker answers no offset for a
/// time, so this runs on tansu.)
#[test]
fn tansu_a_topic_that_begins_to_match_later_is_read_from_its_first_record() {
    let Some(broker) = Tansu::start() else {
        return;
    };
    let b = broker.bootstrap();
    broker.create_topic("ev-a", 2);
    broker.create_topic("old", 2);
    // Before the job's first start: not its to write.
    produce_events(&b, "ev-a", 0, 10, 2, None);
    produce_events(&b, "old", 100, 10, 2, None);
    let dir = tempfile::tempdir().unwrap();
    let options = format!(
        "\"topic.metadata.refresh.interval.ms\" = \"1000\"\n{}",
        crate::kafka::QUICK_GROUP
    );
    let job = job_with(dir.path(), &b, "^ev-.*", &options);
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "chunk_bytes = \"16KiB\"",
        "chunk_bytes = \"16KiB\"\nauto_offset_reset = \"latest\"",
    );
    std::fs::write(&job, text).unwrap();
    let out = dir.path().join("out");
    let origins = out.join("_sluice/kafka-it/origins");
    let first = spawn_run(&job, &dir.path().join("first.log"));
    wait_until(
        "the job to record where it starts ev-a's partitions",
        90,
        || (0..2).all(|p| files_under(&origins.join(format!("ev-a-{p}")), true).len() == 1),
    );
    produce_events(&b, "ev-a", 10, 10, 2, None);
    wait_until(
        "the job to write ev-a's records since its start",
        90,
        || ids(&out).len() == 10,
    );
    sigterm(&first);
    let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    assert!(first.wait_with_output().unwrap().status.success(), "{log}");

    // While the job is down: a new topic, and more of the first one. And the job file now
    // names a topic of older records too: it starts at its end, as `latest` says.
    broker.create_topic("ev-b", 2);
    produce_events(&b, "ev-b", 20, 20, 2, None);
    produce_events(&b, "ev-a", 40, 10, 2, None);
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("topics = [\"^ev-.*\"]", "topics = [\"^ev-.*\", \"old\"]"),
    )
    .unwrap();
    let second_log = dir.path().join("second.log");
    let second = spawn_run(&job, &second_log);
    wait_until("the job to take ev-b", 90, || {
        std::fs::read_to_string(&second_log)
            .unwrap_or_default()
            .contains("\"ev-b\"")
    });
    // While it runs: another new topic, written at once.
    broker.create_topic("ev-c", 2);
    produce_events(&b, "ev-c", 50, 20, 2, None);
    wait_until("ev-b's and ev-c's records", 90, || ids(&out).len() >= 60);
    sigterm(&second);
    let log = std::fs::read_to_string(&second_log).unwrap();
    assert!(second.wait_with_output().unwrap().status.success(), "{log}");
    assert_eq!(ids(&out), (10..70).collect::<Vec<_>>(), "{log}");
}

/// `run --from-checkpoint` on a compacted topic (`cleanup.policy = compact`): the records
/// superseded since their export are gone while their offsets stay held, so the roll-back
/// would delete rows from the destination that the replay could not write again. It is
/// refused at the partition's claim, naming the topic, with nothing deleted (it was made
/// without a word); `--despite-compaction` makes it, and the flag still set afterwards
/// refuses nothing (the dry run says what a start would do).
#[test]
fn tansu_a_roll_back_on_a_compacted_topic_is_refused_unless_asked() {
    // Behind a proxy counting requests: the dry runs must not join the job's group.
    let Some((broker, seen, bootstrap)) = crate::kafka_proxy::tansu_behind() else {
        return;
    };
    broker.create_topic_with("squashed", 4, &[("cleanup.policy", "compact")]);
    produce_timed(&bootstrap, "squashed", 0, 200);
    let dir = tempfile::tempdir().unwrap();
    // The members of the runs that end are gone at once from the group (a session of 6 s).
    let options = "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"";
    let job = job_with(dir.path(), &bootstrap, "squashed", options);
    let out = dir.path().join("out");
    let first = spawn_run(&job, &dir.path().join("first.log"));
    wait_for(&out, 200, 90);
    sigterm(&first);
    assert!(first.wait_with_output().unwrap().status.success());
    assert_once(&out, 200);
    let files = |out: &Path| {
        let mut f = files_under(out, true);
        f.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
        f.sort();
        f
    };
    let before = files(&out);
    let job_s = job.to_str().unwrap();
    let (status, log) = sluice_within(&["run", job_s, "--from-checkpoint", "1"], 60);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("its topic squashed is compacted (cleanup.policy = compact)")
            && log.contains("--despite-compaction"),
        "{log}"
    );
    assert_eq!(files(&out), before, "nothing deleted");
    // The dry run says so too; with the flag it lists what the roll-back deletes. Neither
    // joins the job's group: a member that joins and leaves makes a live group rebalance (and
    // left tansu's group without a leader for good, so the next run never got a partition).
    let joins = seen.count(JOIN_GROUP);
    let plan = sluice(&["run", job_s, "--from-checkpoint", "1", "--dry-run"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(!plan.status.success(), "{text}");
    assert!(
        text.contains("stop at partition squashed-0: cannot roll partition squashed-0 back"),
        "{text}"
    );
    let plan = sluice_ok(&[
        "run",
        job_s,
        "--from-checkpoint",
        "1",
        "--dry-run",
        "--despite-compaction",
    ]);
    assert!(
        plan.contains("resume partition squashed-0 at offset"),
        "{plan}"
    );
    assert_eq!(files(&out), before, "nothing deleted");
    assert_eq!(
        seen.count(JOIN_GROUP),
        joins,
        "the dry runs joined the group"
    );
    // Asked for: rolled back (a roll-back record), replayed, each row once.
    let log = dir.path().join("despite.log");
    let despite = spawn_run_with(
        &job,
        &log,
        &["--from-checkpoint", "1", "--despite-compaction"],
    );
    // Each of the 4 partitions rolled back (a roll-back record each) and its rows exported
    // again.
    let rolled_back = || {
        files_under(&out.join("_sluice"), false)
            .iter()
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("\"rollback_to\"")))
            .count()
    };
    wait_until_showing(
        "4 partitions rolled back and their rows exported again",
        180,
        || rolled_back() >= 4 && trace_ids(&out).len() == 200,
        || {
            format!(
                " ({} rolled back, {} rows); the run's log:\n{}",
                rolled_back(),
                trace_ids(&out).len(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        },
    );
    sigterm(&despite);
    let status = despite.wait_with_output().unwrap().status;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(!text.contains("cannot roll"), "{text}");
    assert_once(&out, 200);
    // The flag left set without `--despite-compaction`: the roll-back was made, and nothing
    // is rolled back again, so nothing is refused (refused, a start would stop for good).
    let plan = sluice_ok(&["run", job_s, "--from-checkpoint", "1", "--dry-run"]);
    assert!(
        plan.contains("leave partition squashed-0 as it is: it was rolled back")
            && !plan.contains("stop at"),
        "{plan}"
    );
}

/// `sluice run JOB ARGS...`, its standard error in `log`.
fn spawn_run_with(job: &Path, log: &Path, args: &[&str]) -> KillOnDrop {
    KillOnDrop::new(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg(job)
            .args(args)
            .current_dir(job.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}
