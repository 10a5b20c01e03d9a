//! `sluice run` into S3 (SeaweedFS started by the test harness): exactly-once output and
//! checkpoints in the bucket, and a 20 s outage of the store mid-run, simulated by a TCP proxy
//! in front of the server that refuses and cuts every connection meanwhile; and a backfill
//! refused into the live job's bucket folder spelled another way; files parked past the file
//! cap send their bytes to the store instead of holding them until their commit.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice::store::remote::StoreOptions;
use sluice::store::Destination;

use crate::helpers::*;

pub(crate) struct S3 {
    pub(crate) url: String,
    pub(crate) endpoint: String,
    pub(crate) key: String,
    pub(crate) secret: String,
}

pub(crate) fn s3() -> Option<S3> {
    let url = match std::env::var("SLUICE_TEST_S3_URL") {
        Ok(u) => u,
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but SLUICE_TEST_S3_URL is not: start scripts/services.sh s3")
        }
        Err(_) => {
            eprintln!("SKIP: the S3 run tests need SLUICE_TEST_S3_URL (scripts/services.sh)");
            return None;
        }
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    Some(S3 {
        url,
        endpoint: var("SLUICE_TEST_S3_ENDPOINT"),
        key: var("SLUICE_TEST_S3_ACCESS_KEY_ID"),
        secret: var("SLUICE_TEST_S3_SECRET_ACCESS_KEY"),
    })
}

/// SeaweedFS's `host:port`, for a proxy in front of it.
pub(crate) fn upstream(s3: &S3) -> String {
    s3.endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// A file job of `n` events into a new folder of the bucket named after `tag`, reaching the
/// store at `endpoint` (`extra`: more `[sink.storage]` lines and sections): the job's folder
/// (removed when dropped), the folder's URL and the job file.
pub(crate) fn events_job(
    s3: &S3,
    endpoint: &str,
    n: usize,
    tag: &str,
    extra: &str,
) -> (tempfile::TempDir, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    events(&input, n);
    let url = format!("{}/{}/", s3.url.trim_end_matches('/'), unique(tag));
    let job = job(dir.path(), &input, &url, endpoint, s3, extra);
    (dir, url, job)
}

pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

pub(crate) fn events(path: &Path, n: usize) {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "{{\"ts\":\"2024-05-01T{:02}:{:02}:00Z\",\"host\":\"h{}\",\"status\":200,\"trace_id\":\"t{i}\"}}\n",
            (i / 60) % 24,
            i % 60,
            i % 5
        ));
    }
    std::fs::write(path, s).unwrap();
}

pub(crate) fn job(
    dir: &Path,
    input: &Path,
    url: &str,
    endpoint: &str,
    s3: &S3,
    extra: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"
[job]
name = "s3it"
state_dir = "state"
[source]
kind = "file"
chunk_bytes = "32KiB"
paths = [{:?}]
[repo]
schema = {:?}
[sink]
url = {url:?}
[sink.rotation]
max_rows = 2000
[sink.partition]
template = "hr={{ts:%H}}/"
[sink.storage]
endpoint = {endpoint:?}
allow_http = true
access_key_id = {:?}
secret_access_key = {:?}
{extra}
"#,
        input.display().to_string(),
        schema("nginx_access").display().to_string(),
        s3.key,
        s3.secret
    );
    let p = dir.join("job.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The destination `url` on S3 through `endpoint`, with the runtime it needs.
pub(crate) fn bucket(url: &str, s3: &S3, endpoint: &str) -> (tokio::runtime::Runtime, Destination) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = StoreOptions {
        endpoint: Some(endpoint.to_string()),
        allow_http: Some(true),
        access_key_id: Some(s3.key.clone()),
        secret_access_key: Some(s3.secret.clone()),
        ..Default::default()
    };
    let dest = Destination::parse_with(url, &opts, rt.handle().clone()).unwrap();
    (rt, dest)
}

/// Trace ids in every visible Parquet file under the destination, with their counts. A file
/// deleted between the listing and its read (a fenced writer's late file, removed by the
/// owner's fence) is not visible any more, as for any reader.
pub(crate) fn ids_in_store(url: &str, s3: &S3, endpoint: &str) -> HashMap<String, usize> {
    let (_rt, dest) = bucket(url, s3, endpoint);
    let mut counts = HashMap::new();
    for f in dest.list("").unwrap() {
        if f.starts_with('_') || !f.ends_with(".parquet") {
            continue;
        }
        match dest.read(&f) {
            Ok(bytes) => count_trace_ids(bytes::Bytes::from(bytes), &mut counts),
            Err(e) if e.is_not_found() => {}
            Err(e) => panic!("reading {f}: {e}"),
        }
    }
    counts
}

pub(crate) fn assert_once(counts: &HashMap<String, usize>, n: usize) {
    assert!(counts.values().all(|c| *c == 1), "duplicates in the bucket");
    assert_eq!(counts.len(), n, "records missing from the bucket");
}

#[test]
fn run_into_s3_is_exactly_once_with_checkpoints_in_the_bucket() {
    let Some(s3) = s3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    events(&input, 8000);
    let url = format!("{}/{}/", s3.url.trim_end_matches('/'), unique("run"));
    let job = job(dir.path(), &input, &url, &s3.endpoint, &s3, "");
    let o = sluice(&["run", job.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_once(&ids_in_store(&url, &s3, &s3.endpoint), 8000);
    let list = sluice_ok(&["checkpoints", "list", job.to_str().unwrap()]);
    assert!(list.contains("events-0: seq"), "{list}");
    // Resuming finds the checkpoint in the bucket and writes nothing more.
    let o = sluice(&["run", job.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 rows"));
    assert_once(&ids_in_store(&url, &s3, &s3.endpoint), 8000);
}

/// A TCP forwarder that can refuse and cut every connection for a while.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (d, c) = (down.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                c.lock().unwrap().push(client.try_clone().unwrap());
                c.lock().unwrap().push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64 * 1024];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Proxy { port, down, conns }
    }

    fn outage(&self, on: bool) {
        self.down.store(on, Ordering::SeqCst);
        if on {
            for s in self.conns.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

#[test]
fn a_20_second_store_outage_mid_run_loses_nothing() {
    let Some(s3) = s3() else { return };
    let proxy = Proxy::start(upstream(&s3));
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let n = 60_000;
    let (_dir, url, job) = events_job(
        &s3,
        &endpoint,
        n,
        "outage",
        "request_timeout_secs = 5\nconnect_timeout_secs = 2\n[channel]\nmax_bytes = \"4MiB\"\n",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", job.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Follow the log; the outage starts right after the first commit, mid-run.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let waited = Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the run logs its first commit");
        if line.contains("committed") {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(60));
    }
    proxy.outage(true);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the outage began: the test did not exercise it"
    );
    let outage_start = Instant::now();
    let mut peak = 0;
    while outage_start.elapsed() < Duration::from_secs(20) {
        peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run must wait for the store, not end during the outage"
    );
    proxy.outage(false);
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(status.success(), "the run did not finish by itself:\n{log}");
    assert!(
        log.contains("replaying from the checkpoint") || log.contains("retry"),
        "{log}"
    );
    assert_once(&ids_in_store(&url, &s3, &s3.endpoint), n);
    // The channel bound (4 MiB) + one open file per hour partition + the runtime: far under
    // 256 MiB; an exporter that buffered the input while the store was down would not be.
    eprintln!("peak RSS during the outage: {peak} KiB");
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB during the outage");
}

/// `--from checkpoint` into the live job's bucket folder spelled with a percent-encoded
/// letter (`live%2Dx` for `live-x`), which the store reads as the same keys: refused, because
/// a probe written through the backfill's URL is seen through the live job's; the probe is
/// removed. Before, only the URLs' text was compared and this backfill wrote every record past
/// the checkpoints into the live folder, where the live job writes them too.
#[test]
fn a_backfill_into_the_live_bucket_spelled_another_way_is_refused() {
    let Some(s3) = s3() else {
        return;
    };
    let topic = "aliased";
    let c = crate::kafka::cluster(topic);
    let bootstrap = c.bootstrap_servers();
    crate::kafka::produce_events(&bootstrap, topic, 0, 100, 2, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let live = format!("{}/{}/", s3.url.trim_end_matches('/'), unique("live-x"));
    let storage = format!(
        "[sink.storage]\nendpoint = {:?}\nallow_http = true\naccess_key_id = {:?}\n\
         secret_access_key = {:?}\n",
        s3.endpoint, s3.key, s3.secret
    );
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("url = \"out/\"", &format!("url = {live:?}"));
    std::fs::write(&job, format!("{text}{storage}")).unwrap();
    let jobs = job.to_str().unwrap();
    // Checkpoints of a job named `feeder` in the folder: a backfill under that name writes
    // them; the same job file named `feeder` is then the live job.
    sluice_ok(&["backfill", jobs, "--name", "feeder"]);
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("name = \"kafka-it\"", "name = \"feeder\""),
    )
    .unwrap();
    let aliased = live.replacen("live-x", "live%2Dx", 1);
    assert_ne!(aliased, live);
    let err = sluice_refused(&["backfill", jobs, "--from", "checkpoint", "--url", &aliased]);
    assert!(err.contains("another --url"), "{err}");
    let (_rt, bucket) = bucket(&live, &s3, &s3.endpoint);
    assert_eq!(
        bucket.list("_sluice/feeder-backfill/").unwrap(),
        Vec::<String>::new(),
        "the probe was left behind"
    );
}

/// One chunk of 2,000 records, each routed to a folder of its own (`{trace_id}/`), of a
/// schema of 101 columns, into S3 with `max_open_files = 16` and `max_buffered_bytes =
/// "4MiB"`: files past the cap are parked until the chunk commits, and a parked file sends its
/// bytes to the store as an upload's last part once the worker is over its share; the rows
/// of each folder are gathered when its file is written. Every record lands once, and the
/// peak memory grows by far less than the parked files weigh over the same records written
/// to one folder. Before, every parked file kept its bytes in memory until the commit, and
/// the chunk was split into 2,000 small batches at once (about 200 bytes per column each):
/// the peak grew by more than twice what the files weigh.
#[test]
fn files_parked_past_the_cap_on_s3_hold_no_memory_until_their_commit() {
    let Some(s3) = s3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut schema = String::from(
        "name = \"wide\"\n[[fields]]\nname = \"trace_id\"\ntype = \"string\"\nnullable = false\n",
    );
    for i in 0..100 {
        schema.push_str(&format!(
            "[[fields]]\nname = \"column_{i}\"\ntype = \"string\"\n"
        ));
    }
    std::fs::write(dir.path().join("wide.toml"), schema).unwrap();
    let n = 2000;
    let lines: String = (0..n)
        .map(|i| format!("{{\"trace_id\":\"p{i}\",\"column_0\":\"v{i}\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("wide.jsonl"), lines).unwrap();
    // The same records into one folder, then into a folder each: peak memory of each run.
    let mut peaks = Vec::new();
    let mut url = String::new();
    for (run, template) in [("one", "one/"), ("each", "{trace_id}/")] {
        url = format!("{}/{}/", s3.url.trim_end_matches('/'), unique("parked"));
        let job = dir.path().join(format!("{run}.toml"));
        std::fs::write(
            &job,
            format!(
                "[job]\nname = \"parked\"\nstate_dir = \"state-{run}\"\n[source]\nkind = \"file\"\n\
                 paths = [\"wide.jsonl\"]\n[repo]\nschema = \"wide.toml\"\n[sink]\nurl = {url:?}\n\
                 max_open_files = 16\nmax_buffered_bytes = \"4MiB\"\nworkers = 1\n\
                 [sink.partition]\ntemplate = {template:?}\n[sink.storage]\nendpoint = {:?}\n\
                 allow_http = true\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
                s3.endpoint, s3.key, s3.secret
            ),
        )
        .unwrap();
        let log = dir.path().join(format!("{run}.log"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", job.to_str().unwrap()])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut peak = 0;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
            assert!(
                Instant::now() < deadline,
                "the run into {run} folder did not end within 300 s:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(status.success(), "{text}");
        assert_once(&ids_in_store(&url, &s3, &s3.endpoint), n);
        peaks.push(peak);
    }
    let (_rt, dest) = bucket(&url, &s3, &s3.endpoint);
    let files: Vec<String> = dest
        .list("")
        .unwrap()
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .collect();
    assert_eq!(files.len(), n, "one file per record's folder");
    let sample: u64 = files
        .iter()
        .take(20)
        .map(|f| dest.read(f).unwrap().len() as u64)
        .sum();
    let weight_kb = sample / 20 * n as u64 / 1024;
    let grown = peaks[1].saturating_sub(peaks[0]);
    eprintln!(
        "peak RSS {} KiB into one folder, {} KiB into a folder each; the files weigh {weight_kb} KiB",
        peaks[0], peaks[1]
    );
    assert!(
        grown < weight_kb,
        "a folder each grew the peak by {grown} KiB; the files weigh {weight_kb} KiB"
    );
}
