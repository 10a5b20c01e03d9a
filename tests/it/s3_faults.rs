//! An S3 store that misbehaves request by request: an HTTP proxy in front of SeaweedFS answers
//! 500 or 503 SlowDown without forwarding, forwards and then loses the answer (the request took
//! effect, the client saw a failure), cuts the answer mid-body, or delays it. A job run through
//! it must end with every record exactly once and every visible file named by a checkpoint.
//! A proxy that turns the refusal of a create-only put into success (a store that ignores
//! `If-None-Match: *`) must make the run fail before it writes anything (uploads that land
//! late: `late_publish.rs`).
//! Needs S3 (SeaweedFS, `scripts/services.sh`), like `s3_run`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use crate::s3_run::{assert_once, events_job, ids_in_store, s3, upstream};

/// What the proxy did, by kind.
#[derive(Default)]
struct Counts {
    forwarded: AtomicU64,
    error_500: AtomicU64,
    slow_down: AtomicU64,
    lost_answer: AtomicU64,
    cut_answer: AtomicU64,
    /// Create-only puts (checkpoints, claims) that took effect while the client saw a failure.
    lost_create: AtomicU64,
    /// Reads (get, list) whose answer was cut mid-body.
    cut_read: AtomicU64,
    creates: AtomicU64,
}

/// Reads one HTTP/1.1 request (headers and a `Content-Length` body); None at end of stream.
pub(crate) fn read_request(c: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Sends the request upstream on a connection of its own and returns the whole answer.
pub(crate) fn forward(upstream: &str, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(upstream).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    // One request per upstream connection: the answer ends where the connection does.
    let mut lines: Vec<&str> = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let head = format!("{}\r\n\r\n", lines.join("\r\n"));
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    Some(answer)
}

pub(crate) fn reply(c: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Serves one request of a client connection (the answer closes it), deciding its fate from
/// `seq`.
fn serve(mut c: TcpStream, upstream: String, seq: Arc<AtomicU64>, counts: Arc<Counts>) {
    if let Some((head, body)) = read_request(&mut c) {
        let n = seq.fetch_add(1, Ordering::SeqCst);
        let lower = head.to_ascii_lowercase();
        // The start-up probe's records are not the protocol's: they do not take its turns.
        let create_only = lower.starts_with("put ")
            && lower.contains("\r\nif-none-match:")
            && !lower.contains("/probe/");
        let read = lower.starts_with("get ");
        // A fixed, spread-out pattern (not random): every kind happens in every run, and every
        // fourth create-only put (the protocol's records) takes effect unseen.
        let mut fate = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) % 16;
        if create_only && counts.creates.fetch_add(1, Ordering::Relaxed) % 4 == 1 {
            fate = 2;
        }
        match fate {
            0 => {
                counts.error_500.fetch_add(1, Ordering::Relaxed);
                reply(
                    &mut c,
                    "500 Internal Server Error",
                    "<Error><Code>InternalError</Code><Message>injected</Message></Error>",
                );
                return;
            }
            1 => {
                counts.slow_down.fetch_add(1, Ordering::Relaxed);
                reply(
                    &mut c,
                    "503 Slow Down",
                    "<Error><Code>SlowDown</Code><Message>injected</Message></Error>",
                );
                return;
            }
            _ => {}
        }
        let Some(answer) = forward(&upstream, &head, &body) else {
            return;
        };
        match fate {
            2 => {
                // It took effect upstream; the client never hears.
                counts.lost_answer.fetch_add(1, Ordering::Relaxed);
                if create_only {
                    counts.lost_create.fetch_add(1, Ordering::Relaxed);
                }
                let _ = c.shutdown(Shutdown::Both);
                return;
            }
            3 => {
                counts.cut_answer.fetch_add(1, Ordering::Relaxed);
                if read {
                    counts.cut_read.fetch_add(1, Ordering::Relaxed);
                }
                let _ = c.write_all(&answer[..answer.len() / 2]);
                let _ = c.shutdown(Shutdown::Both);
                return;
            }
            4 => std::thread::sleep(Duration::from_millis(300)),
            _ => {}
        }
        counts.forwarded.fetch_add(1, Ordering::Relaxed);
        // The upstream answer said `Connection: close`; so does this connection.
        let _ = c.write_all(&answer);
        let _ = c.shutdown(Shutdown::Both);
    }
}

/// Every visible data file of job `job` in the bucket is named by a checkpoint, and the other
/// way round.
pub(crate) fn assert_store_files_match_checkpoints(url: &str, s3: &crate::s3_run::S3, job: &str) {
    let (_rt, dest) = crate::s3_run::bucket(url, s3, &s3.endpoint);
    let all = dest.list("").unwrap();
    let named = files_named_by(
        all.iter()
            .filter(|f| f.starts_with(&format!("_sluice/{job}/checkpoints/")))
            .map(|f| dest.read(f).unwrap()),
    );
    let mut visible: Vec<String> = all
        .into_iter()
        .filter(|f| !f.starts_with('_') && f.ends_with(".parquet"))
        .collect();
    visible.sort();
    assert_eq!(
        visible, named,
        "visible files and the files checkpoints name differ"
    );
}

/// `sluice run JOB` in `dir`, to its end.
pub(crate) fn run_to_end(dir: &std::path::Path, job: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", job.to_str().unwrap()])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Starts the proxy; returns its endpoint and what it did.
fn start_proxy(upstream: String) -> (String, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let counts = Arc::new(Counts::default());
    let seq = Arc::new(AtomicU64::new(0));
    let c = counts.clone();
    serve_each(listener, move |client| {
        serve(client, upstream.clone(), seq.clone(), c.clone())
    });
    (endpoint, counts)
}

/// A file job into S3 through a store that fails about one request in eight (half of those
/// after taking effect) and delays one in sixteen: the run ends by itself with every record
/// exactly once, every visible file named by a checkpoint.
#[test]
fn a_store_that_fails_requests_and_loses_answers_still_gets_exactly_once() {
    let Some(s3) = s3() else { return };
    let (endpoint, counts) = start_proxy(upstream(&s3));
    let n = 20_000;
    let (dir, url, job) = events_job(
        &s3,
        &endpoint,
        n,
        "faults",
        "request_timeout_secs = 10\nconnect_timeout_secs = 2\n",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", job.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("run.log")).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, "the run through the faulty store to end", 600);
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(status.success(), "{log}");
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let injected = [
        load(&counts.error_500),
        load(&counts.slow_down),
        load(&counts.lost_answer),
        load(&counts.cut_answer),
    ];
    assert!(
        injected.iter().all(|k| *k > 0),
        "every kind of fault happened at least once: {injected:?} (forwarded {})",
        load(&counts.forwarded)
    );
    // The protocol met both kinds that reach it past object_store's own retries: a
    // create-only record that landed unseen, and a read cut off.
    assert!(
        load(&counts.lost_create) > 0 && load(&counts.cut_read) > 0,
        "lost create-only puts {}, cut reads {}",
        load(&counts.lost_create),
        load(&counts.cut_read)
    );
    // Read back directly, not through the proxy.
    assert_once(&ids_in_store(&url, &s3, &s3.endpoint), n);
    assert_store_files_match_checkpoints(&url, &s3, "s3it");
    eprintln!(
        "faults injected (500, 503, lost, cut): {injected:?}; lost create-only puts {}, cut \
         reads {}; forwarded {}",
        load(&counts.lost_create),
        load(&counts.cut_read),
        load(&counts.forwarded)
    );
}

/// A job into an S3-compatible store that ignores `If-None-Match: *`: the proxy answers the
/// server's refusal of a create-only put (412) with success, as such a store does. The fence
/// cannot work there, so the run must fail before it writes anything, and say why.
#[test]
fn a_store_that_ignores_create_only_puts_is_refused_before_anything_is_written() {
    let Some(s3) = s3() else { return };
    let upstream = upstream(&s3);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let turned = Arc::new(AtomicU64::new(0));
    let t = turned.clone();
    serve_each(listener, move |mut c| {
        let Some((head, body)) = read_request(&mut c) else {
            return;
        };
        let lower = head.to_ascii_lowercase();
        let create_only = lower.starts_with("put ") && lower.contains("\r\nif-none-match:");
        let Some(answer) = forward(&upstream, &head, &body) else {
            return;
        };
        if create_only && answer.starts_with(b"HTTP/1.1 412") {
            t.fetch_add(1, Ordering::SeqCst);
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nETag: \"ignored\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        } else {
            let _ = c.write_all(&answer);
        }
        let _ = c.shutdown(Shutdown::Both);
    });
    let (dir, url, job) = events_job(&s3, &endpoint, 100, "nofence", "");
    let out = run_to_end(dir.path(), &job);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run succeeded: {log}");
    assert!(
        log.contains("cannot fence writers") && log.contains("If-None-Match"),
        "the error says why: {log}"
    );
    assert!(turned.load(Ordering::SeqCst) >= 1, "the proxy turned a 412");
    // Read back directly, not through the proxy: not one file, not even the probe record.
    let (_rt, dest) = crate::s3_run::bucket(&url, &s3, &s3.endpoint);
    assert_eq!(dest.list("").unwrap(), Vec::<String>::new());
}
