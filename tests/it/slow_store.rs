//! A zombie commit on a slow destination: a group member whose uploads to S3 take longer than
//! the revocation may wait loses its partitions while its commits still run; the next owner
//! takes them over, and the old owner's uploads land afterwards. Readers of the bucket must
//! still find every record exactly once and every visible file named by a checkpoint.
//! Needs tansu (a real broker process) and S3 (SeaweedFS), both started by `scripts/test.sh`.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use crate::kafka::{job_with, spawn_run, wait_log};
use crate::s3_faults::{assert_store_files_match_checkpoints, forward, read_request};
use crate::s3_run::{assert_once, ids_in_store, s3, unique, S3};
use crate::tansu::{produce_until, Tansu};

/// What the delaying proxy holds back and what it let through late.
#[derive(Default)]
struct Slow {
    /// Milliseconds to hold each data-file upload (0: none).
    delay_ms: AtomicU64,
    /// Delayed uploads being held or forwarded right now, per partition of `slow`.
    held_of: [AtomicU64; 4],
    /// Delayed uploads that reached the store after `late_from` was set.
    landed_late: AtomicU64,
    late_from: AtomicBool,
    /// Until set, delayed uploads are held past `delay_ms` too (for at most 2 minutes).
    released: AtomicBool,
}

/// Forwards one request; a PUT outside `_sluice/` (a data or dead-letter file, or one of its
/// parts) waits `delay_ms` first, and until `released`.
fn serve(mut c: TcpStream, upstream: String, slow: Arc<Slow>) {
    let Some((head, body)) = read_request(&mut c) else {
        return;
    };
    let delay = slow.delay_ms.load(Ordering::Acquire);
    let upload = head.starts_with("PUT ") && !head.lines().next().unwrap().contains("/_sluice/");
    let delayed = upload && delay > 0;
    // A data file's name holds its partition's key, `slow-<partition>-` (its last `slow-`:
    // the test's folder is named `slow-…` too).
    let of = head
        .lines()
        .next()
        .and_then(|line| line.rsplit("slow-").next())
        .and_then(|rest| rest[..1].parse::<usize>().ok())
        .and_then(|p| slow.held_of.get(p));
    if delayed {
        if let Some(n) = of {
            n.fetch_add(1, Ordering::AcqRel);
        }
        let held = std::time::Instant::now();
        while held.elapsed() < Duration::from_millis(delay)
            || !slow.released.load(Ordering::Acquire) && held.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let answer = forward(&upstream, &head, &body);
    if delayed {
        if slow.late_from.load(Ordering::Acquire) {
            slow.landed_late.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(n) = of {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
    if let Some(answer) = answer {
        use std::io::Write;
        let _ = c.write_all(&answer);
    }
    let _ = c.shutdown(Shutdown::Both);
}

fn start_proxy(upstream: String) -> (String, Arc<Slow>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let slow = Arc::new(Slow::default());
    let s = slow.clone();
    serve_each(listener, move |client| {
        serve(client, upstream.clone(), s.clone())
    });
    (endpoint, slow)
}

/// The Kafka test job of member `m`, writing to `url` on S3 through `endpoint`.
fn member_job(
    root: &Path,
    m: &str,
    bootstrap: &str,
    url: &str,
    endpoint: &str,
    s3: &S3,
) -> PathBuf {
    let dir = root.join(m);
    std::fs::create_dir_all(&dir).unwrap();
    // The revocation waits at most 4 s for a commit in progress; the consumer's poll interval
    // leaves room for it. tansu expires a member that waits in a rebalance for longer than its
    // session timeout, so B's session outlasts A's revocation (else B is expired while A
    // revokes, rejoins, and the partitions go back to A, over and over).
    let options = "\"session.timeout.ms\" = \"15000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
                   \"max.poll.interval.ms\" = \"15000\"";
    let job = job_with(&dir, bootstrap, "slow", options);
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("[job]\n", "[job]\nstop_deadline = \"4s\"\n")
        .replace("url = \"out/\"", &format!("url = {url:?}"))
        // A worker per partition: each partition's commit can be running at once.
        .replace("[sink]\n", "[sink]\nworkers = 4\n")
        + &format!(
            "[sink.storage]\nendpoint = {endpoint:?}\nallow_http = true\naccess_key_id = {:?}\n\
             secret_access_key = {:?}\nrequest_timeout_secs = 90\n",
            s3.key, s3.secret
        );
    std::fs::write(&job, text).unwrap();
    job
}

/// Commit records of the test job in the bucket.
fn commits(url: &str, s3: &S3) -> usize {
    let (_rt, dest) = crate::s3_run::bucket(url, s3, &s3.endpoint);
    dest.list("_sluice/kafka-it/checkpoints/").unwrap().len()
}

/// Member A uploads through a proxy that holds every data file for 20 s, and until B owns
/// partitions, so its commits run past the consumer's `max.poll.interval.ms` (15 s) and far
/// past the 4 s a revocation waits. Member B joins (straight to S3) and takes partitions
/// whose commits A is still running; A's uploads land after B owns them. In the end both stop
/// cleanly, every record is in the bucket once, and every visible file is named by a
/// checkpoint (the late files were fenced off and removed).
#[test]
fn tansu_a_commit_slower_than_the_revocation_is_fenced_on_s3() {
    let Some(s3) = s3() else { return };
    let Some(broker) = Tansu::start() else { return };
    broker.create_topic("slow", 4);
    let (proxy, slow) = start_proxy(crate::s3_run::upstream(&s3));
    let root = tempfile::tempdir().unwrap();
    let url = format!("{}/{}/", s3.url.trim_end_matches('/'), unique("slow"));
    let a_job = member_job(root.path(), "a", &broker.bootstrap(), &url, &proxy, &s3);
    let b_job = member_job(
        root.path(),
        "b",
        &broker.bootstrap(),
        &url,
        &s3.endpoint,
        &s3,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_until(broker.bootstrap(), "slow", stop.clone());
    let a_log = root.path().join("a.log");
    let a = spawn_run(&a_job, &a_log);
    wait_until("member A's first commit", 90, || commits(&url, &s3) > 0);
    // From now on A's uploads take 20 s each, and land only once B owns partitions.
    slow.delay_ms.store(20_000, Ordering::Release);
    // Whichever partitions B is given, A is then running a commit of each.
    wait_until("an upload of A to be held in every partition", 90, || {
        slow.held_of.iter().all(|n| n.load(Ordering::Acquire) > 0)
    });
    slow.late_from.store(true, Ordering::Release);
    let b_log = root.path().join("b.log");
    let b = spawn_run(&b_job, &b_log);
    // The revocation gives up waiting for A's running commit; B resumes the partitions.
    let text = wait_log(
        &a_log,
        "a commit still runs past the revocation deadline",
        1,
        90,
    );
    assert!(
        text.contains("a commit still runs past the revocation deadline"),
        "A's revocation never left a commit running:\n{text}"
    );
    let text = wait_log(&b_log, "partition resumes", 1, 90);
    assert!(
        text.contains("partition resumes"),
        "B got no partition:\n{text}\n--- A ---\n{}",
        std::fs::read_to_string(&a_log).unwrap()
    );
    // A's held uploads reach the store after B took over (B's claim, with its newer term, is
    // made before it says the partition resumes).
    slow.released.store(true, Ordering::Release);
    wait_until("a held upload of A to land after B joined", 60, || {
        slow.landed_late.load(Ordering::Acquire) > 0
    });
    slow.delay_ms.store(0, Ordering::Release);
    stop.store(true, Ordering::Release);
    let n = producer.join().unwrap();
    wait_until("every record in the bucket", 180, || {
        ids_in_store(&url, &s3, &s3.endpoint).len() >= n
    });
    let a_status = a.stop("A to stop", 120);
    let b_status = b.stop("B to stop", 120);
    let a_text = std::fs::read_to_string(&a_log).unwrap();
    let b_text = std::fs::read_to_string(&b_log).unwrap();
    assert!(a_status.success(), "A did not stop cleanly:\n{a_text}");
    assert!(b_status.success(), "B did not stop cleanly:\n{b_text}");
    // A's commits that outlived the revocation met B's newer term.
    assert!(
        a_text.contains("a commit of an earlier ownership of the partition was fenced"),
        "A's late commit was not fenced:\n{a_text}\n--- B ---\n{b_text}"
    );
    assert_once(&ids_in_store(&url, &s3, &s3.endpoint), n);
    assert_store_files_match_checkpoints(&url, &s3, "kafka-it");
    eprintln!(
        "uploads of A that landed after B joined: {}",
        slow.landed_late.load(Ordering::Acquire)
    );
}
