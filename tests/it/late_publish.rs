//! Uploads that report failure (or never answer) and land later, after every look the
//! commits of the run that follows make at them: a proxy in front of SeaweedFS holds the first
//! data file's upload and hands it on at the chosen moment. The run must end with the file
//! gone: every record once, every visible file named by a checkpoint. Needs S3 (SeaweedFS,
//! `scripts/services.sh`), like `s3_run`.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use crate::helpers::*;
use crate::s3_faults::{
    assert_store_files_match_checkpoints, forward, read_request, reply, run_to_end,
};
use crate::s3_run::{assert_once, events_job, ids_in_store, s3, upstream};

/// The held upload: its path, request and body; the looks at that path so far; whether it
/// was handed on (and SeaweedFS took it).
#[derive(Default)]
struct Held {
    put: Option<(String, String, Vec<u8>)>,
    heads: usize,
    landed: bool,
}

/// A proxy to `upstream` that keeps the first data file's upload: `on_hold` runs when it
/// arrives, then the upload (and any retry of it) is answered 500. The upload is handed to
/// SeaweedFS during the second look at its path (HEAD), before that look is answered, so the
/// looker sees it absent. Returns the endpoint and what was held.
fn late_proxy(
    upstream: String,
    on_hold: impl Fn() + Send + Sync + 'static,
) -> (String, Arc<Mutex<Held>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Held::default()));
    let h = held.clone();
    serve_each(listener, move |mut c| {
        let Some((head, body)) = read_request(&mut c) else {
            return;
        };
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let mut st = h.lock().unwrap();
        let failing = |c: &mut TcpStream| {
            reply(
                c,
                "500 Internal Server Error",
                "<Error><Code>InternalError</Code><Message>injected</Message></Error>",
            );
            let _ = c.shutdown(Shutdown::Both);
        };
        if method == "PUT" && path.ends_with(".parquet") {
            match &st.put {
                None => {
                    st.put = Some((path.to_string(), head.clone(), body));
                    on_hold();
                    return failing(&mut c);
                }
                Some((p, _, _)) if p == path => return failing(&mut c),
                _ => {}
            }
        }
        let is_held = st.put.as_ref().is_some_and(|(p, _, _)| p == path);
        if !(method == "HEAD" && is_held) {
            drop(st);
            if let Some(answer) = forward(&upstream, &head, &body) {
                let _ = c.write_all(&answer);
            }
            let _ = c.shutdown(Shutdown::Both);
            return;
        }
        let answer = forward(&upstream, &head, &body);
        st.heads += 1;
        if st.heads == 2 {
            let (_, put_head, put_body) = st.put.clone().unwrap();
            let landed = forward(&upstream, &put_head, &put_body)
                .is_some_and(|a| a.starts_with(b"HTTP/1.1 200"));
            st.landed = landed;
        }
        drop(st);
        if let Some(answer) = answer {
            let _ = c.write_all(&answer);
        }
        let _ = c.shutdown(Shutdown::Both);
    });
    (endpoint, held)
}

/// The run ended with the held upload handed on, removed by a late settle, and every record
/// once in the store.
fn assert_removed(held: &Mutex<Held>, log: &str, url: &str, s3: &crate::s3_run::S3, n: usize) {
    let st = held.lock().unwrap();
    assert!(
        st.landed,
        "the held upload was handed on after the second look and taken (looks: {}): {log}",
        st.heads
    );
    drop(st);
    assert!(
        log.contains("removed files that a publish made visible after it had reported failure"),
        "the late settle removed it: {log}"
    );
    // Read back directly, not through the proxy.
    assert_once(&ids_in_store(url, s3, &s3.endpoint), n);
    assert_store_files_match_checkpoints(url, s3, "s3it");
}

/// The first data file's upload fails (500 to it and its retry), and lands just after the
/// replay's commit has looked for it (the second look: the failed commit's reconcile, then
/// the replay's release), so it becomes visible after every settle of the run's commits. The
/// worker settles the partition again once the store's request timeout (5 s) has passed.
#[test]
fn a_publish_that_lands_after_its_commit_failed_is_removed_before_the_run_ends() {
    let Some(s3) = s3() else { return };
    let (endpoint, held) = late_proxy(upstream(&s3), || {});
    let n = 100;
    // The late settle comes 5 s after the failure: long after the replay's release.
    let (dir, url, job) = events_job(
        &s3,
        &endpoint,
        n,
        "late",
        "request_timeout_secs = 5\nmax_retries = 1\n",
    );
    let out = run_to_end(dir.path(), &job);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_removed(&held, &log, &url, &s3, n);
}

/// The first run is killed while the proxy holds its first data upload (its claim is in the
/// store). The second run aborts that claim when it registers the partition (the first look)
/// and replays; the upload lands during its release (the second look), after every settle of
/// its commits. The registration that aborted a claim settles the partition again one request
/// timeout later, as a failed commit does. Before, nothing did: the run ended with the dead
/// run's file visible beside its own, every record of it twice.
#[test]
fn an_upload_of_a_killed_run_that_lands_after_the_next_run_looked_is_removed() {
    let Some(s3) = s3() else { return };
    let pid = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let first = pid.clone();
    let (endpoint, held) = late_proxy(upstream(&s3), move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut p = first.load(std::sync::atomic::Ordering::SeqCst);
        while p == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            p = first.load(std::sync::atomic::Ordering::SeqCst);
        }
        assert!(p != 0, "the first run's process id was never set");
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .status()
            .unwrap();
        assert!(killed.success(), "kill -KILL {p}");
    });
    let n = 100;
    let (dir, url, job) = events_job(
        &s3,
        &endpoint,
        n,
        "killed",
        "request_timeout_secs = 5\nmax_retries = 1\n",
    );
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", job.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    pid.store(run.id(), std::sync::atomic::Ordering::SeqCst);
    let first_run = run.wait_with_output().unwrap();
    assert!(
        !first_run.status.success() && held.lock().unwrap().put.is_some(),
        "the first run was killed at its upload: {}",
        String::from_utf8_lossy(&first_run.stderr)
    );
    let out = run_to_end(dir.path(), &job);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_removed(&held, &log, &url, &s3, n);
}
