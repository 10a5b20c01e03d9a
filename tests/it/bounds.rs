//! Bounds under abuse: a stalled push body times out and frees its slot, requests in progress
//! share the push memory budget, one chunk routing to thousands of output paths stays under
//! the file cap, the admin listener closes connections that stall it, a push is measured
//! for what its list items decode to before it is decoded, and a chunked body is held once
//! however it is cut. Each test drives the real binary.

use std::io::Write;

use crate::abuse::dead_letter_lines;
use crate::admin::{http, metric_sum};
use crate::helpers::*;
use crate::push::http_client::Client;
use crate::push::{push_job, start};

/// Opens a push of a body of `length` bytes that stalls after `sent` of them: it holds its
/// memory reservation (what it sent, doubled from 64 KiB) until 408.
fn stalled_push(addr: &str, length: usize, sent: usize) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/repos/nginx_access/data HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&vec![b'x'; sent]).unwrap();
    s
}

/// Requests in progress share `max_in_flight`: four stalled bodies that sent 200 KB each hold
/// 4 × 256 KiB, all of the 1 MiB budget, so a fifth push is refused (503) before its body is
/// read; once the stalled ones time out, the same push is taken. Before, any `max_concurrent`
/// requests could each hold `max_body` and more.
#[test]
fn pushes_in_progress_share_a_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(
        dir.path(),
        "wal",
        "max_body = \"256KiB\"\nmax_in_flight = \"1MiB\"\nbody_timeout = \"6s\"",
        "",
    );
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let _stalled: Vec<_> = (0..4)
        .map(|_| stalled_push(&addr, 256 << 10, 200_000))
        .collect();
    let held = || {
        let (_, text) = http(&addr, "GET", "/metrics", None);
        metric_sum(&text, "sluice_push_in_flight_bytes")
    };
    wait_until("the stalled pushes to reserve 1 MiB", 10, || {
        held() >= 1024.0 * 1024.0
    });
    let good =
        b"{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"budget\"}\n";
    let mut c = Client::new(&addr);
    let (code, _, b) = c.post("/v1/repos/nginx_access/data", "", good).unwrap();
    assert_eq!(code, 503, "{b}");
    assert!(b.contains("max_in_flight"), "{b}");
    // A client that waits to be asked for its body is refused before it sends it.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "POST /v1/repos/nginx_access/data HTTP/1.1\r\nHost: {addr}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        good.len()
    )
    .unwrap();
    let mut first = [0u8; 12];
    std::io::Read::read_exact(&mut s, &mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 503");
    // After body_timeout the stalled requests are answered 408 and give their share back.
    wait_until("the stalled pushes to give their share back", 20, || {
        held() == 0.0
    });
    let (code, _, b) = c.post("/v1/repos/nginx_access/data", "", good).unwrap();
    assert_eq!(code, 200, "{b}");
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
}

/// One chunk routing to 5,000 paths (a template on a client address) with
/// `max_open_files = 16`, under a limit of 256 open descriptors: files are parked (whole,
/// descriptor closed) as the cap fills and commit together, so the run ends with every row
/// once. Before, the item opened a file per path, hit "Too many open files" and replayed the
/// same chunk for ever.
#[test]
fn a_chunk_routing_to_thousands_of_paths_stays_under_the_file_cap() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ips.jsonl");
    let text: String = (0..5000)
        .map(|i| {
            format!(
                "{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"client_ip\":\"10.0.{}.{}\",\"trace_id\":\"ip-{i}\"}}\n",
                i / 250,
                i % 250
            )
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"ips\"\nstate_dir = \"state\"\n[source]\nkind = \"file\"\npaths = [{input:?}]\n\
             [repo]\nschema = {:?}\n[sink]\nurl = \"file://out\"\nmax_open_files = 16\n\
             [sink.partition]\ntemplate = \"{{client_ip}}/\"\n",
            schema("nginx_access")
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_sluice");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n 256 && exec {bin} run {}", job.display()))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("run.log")).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(
        &mut child,
        "the run to end (a stuck partition replays for ever)",
        300,
    );
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
    let ids = trace_ids(&dir.path().join("out"));
    assert_eq!(ids.len(), 5000, "every row");
    assert!(ids.values().all(|n| *n == 1), "each once");
    let folders = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("client_ip=")
        })
        .count();
    assert_eq!(folders, 5000, "one folder per address");
}

/// A backlog of bad records: their dead letters roll at `max_bytes` as data files do. Before,
/// one dead-letter file took all of them until `max_rows` records or `max_age` (a million
/// records, 15 minutes), however large it grew: past what an upload takes (10,000 parts of
/// 10 MiB on S3 and GCS) the commit failed, and every replay again.
#[test]
fn dead_letters_roll_at_the_sinks_file_size() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    let text: String = (0..2000)
        .map(|i| format!("not json {i} {}\n", "x".repeat(200)))
        .collect();
    std::fs::write(&input, text).unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"bad\"\nstate_dir = \"state\"\n[source]\nkind = \"file\"\n\
             chunk_bytes = \"16KiB\"\npaths = [{input:?}]\n[repo]\nschema = {:?}\n[sink]\n\
             url = \"file://out\"\n[sink.rotation]\nmax_bytes = \"64KiB\"\n",
            schema("nginx_access")
        ),
    )
    .unwrap();
    let log = run_ok(&job);
    let folder = dir.path().join("out/_dead_letters");
    assert_eq!(dead_letter_lines(&folder).len(), 2000, "{log}");
    let sizes: Vec<u64> = files_under(&folder, false)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(sizes.len() >= 5, "one file per 64 KiB or so: {sizes:?}");
    // Past the size by at most one chunk's dead letters (16 KiB of records, escaped).
    assert!(sizes.iter().all(|&s| s < 160 * 1024), "{sizes:?}");
}

/// A client that sends part of a body and stalls gets 408 after `body_timeout`, and its request
/// slot is free again: with `max_concurrent = 1`, the next push is taken. It used to hold the
/// slot for as long as the connection stayed open.
#[test]
fn a_stalled_push_body_times_out_and_frees_its_slot() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(
        dir.path(),
        "wal",
        "max_concurrent = 1\nbody_timeout = \"1s\"",
        "",
    );
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        slow,
        "POST /v1/repos/nginx_access/data HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000\r\n\r\n{{\"ts\":"
    )
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) => panic!("no answer to a stalled body within 20 s: {e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let mut c = Client::new(&addr);
    let good =
        b"{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"next\"}\n";
    let (code, _, b) = c.post("/v1/repos/nginx_access/data", "", good).unwrap();
    assert_eq!(code, 200, "{b}");
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
}

/// A stop while the task is paused and its channel full: nobody takes during a stop (what the
/// channel holds is spilled), so the channel's bound must hold neither the stop up nor the
/// memory log's acknowledged records back. The process ends, and the next start exports every
/// row once.
#[test]
fn a_stop_while_paused_with_a_full_channel_ends() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "memory", "chunk_bytes = \"16KiB\"", "");
    let text = std::fs::read_to_string(&job).unwrap()
        + "\n[channel]\nmax_bytes = \"64KiB\"\nmax_batches = 4\n";
    std::fs::write(&job, text).unwrap();
    let log = dir.path().join("run1.log");
    let (mut child, addr) = start(&job, &log);
    let (code, body) = http(&addr, "POST", "/v1/tasks/nginx_access/pause", None);
    assert_eq!(code, 200, "{body}");
    for i in 0..20 {
        crate::push::push_acked(&addr, &format!("p{i}"), 100);
    }
    sigterm(&child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the stop did not end in 90 s (stop deadline 20 s):\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the stop failed:\n{text}");

    let (child, addr) = start(&job, &dir.path().join("run2.log"));
    crate::kafka::wait_for(&dir.path().join("out"), 2000, 60);
    let (code, body) = http(&addr, "POST", "/v1/tasks/nginx_access/stop", None);
    assert_eq!(code, 200, "{body}");
    assert!(child.wait_with_output().unwrap().status.success());
    let seen = trace_ids(&dir.path().join("out"));
    assert!(seen.values().all(|n| *n == 1), "a row twice");
    assert_eq!(seen.len(), 2000, "rows exported; the stop's log:\n{text}");
}

/// Tiny records decode to many times their bytes (a dead letter's reason and bookkeeping,
/// about 200 B each): a push reserves that per line. A 2 KB gzip body of a million 2-byte bad
/// lines would need about 270 MB decoded, more than `max_in_flight` allows one request: 413,
/// saying so, and nothing of it is taken. Before, it was taken (200), and each such request
/// raised the process's memory by about 200 MB. A good push after it lands.
#[test]
fn a_push_of_a_million_tiny_bad_lines_is_refused_not_taken_into_memory() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(
        dir.path(),
        "wal",
        "max_body = \"2MiB\"\nmax_in_flight = \"64MiB\"",
        "",
    );
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&b"}\n".repeat(1 << 20)).unwrap();
    let body = enc.finish().unwrap();
    assert!(body.len() < 4096, "{} bytes", body.len());
    let mut c = Client::new(&addr);
    let gz = "Content-Encoding: gzip\r\n";
    let (code, _, b) = c.post("/v1/repos/nginx_access/data", gz, &body).unwrap();
    assert_eq!(code, 413, "{b}");
    assert!(
        b.contains("1048576 lines") && b.contains("max_in_flight"),
        "{b}"
    );
    let good =
        b"{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"tiny\"}\n";
    let (code, _, b) = c.post("/v1/repos/nginx_access/data", "", good).unwrap();
    assert_eq!(code, 200, "{b}");
    let out = dir.path().join("out");
    wait_until("the good push to be committed", 60, || {
        trace_ids(&out).contains_key("tiny")
    });
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(trace_ids(&out).get("tiny"), Some(&1));
    assert!(dead_letter_lines(&out.join("_dead_letters")).is_empty());
}

/// The admin listener bounds its connections: one that sent part of a header and stopped is
/// closed after the header timeout (10 s), and at most 512 are served at once (the rest wait
/// in the backlog and are closed in their turn). Before, such connections stayed open for
/// ever, each holding up to about 400 KB: 6,000 of them held 2.6 GB, before any token check.
#[test]
fn idle_connections_are_closed_and_headers_are_bounded() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let head = b"POST /v1/repos/nginx_access/data HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaa";
    let mut idle: Vec<std::net::TcpStream> = (0..520)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(head).unwrap();
            s
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    for (i, s) in idle.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "connection {i} of 520 still open after 90 s"
        );
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) if std::time::Instant::now() < deadline => break,
                Ok(0) | Err(_) => panic!("connection {i} of 520 still open after 90 s"),
                Ok(_) => {}
            }
        }
    }
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
}

/// A client that sends requests and reads none of the answers is closed once answers have
/// waited on it for 30 s: here 10,000 pipelined requests for the status page's script, with
/// the client's receive buffer at its smallest. Before, such a connection held its slot and
/// the answers queued for it for ever (384 of them held every kept-alive slot).
#[test]
fn a_client_that_reads_no_answer_is_closed() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let s = std::net::TcpStream::connect(&addr).unwrap();
    let small: libc::c_int = 4096;
    // SAFETY: a valid socket and a c_int option of its size.
    let set = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_RCVBUF");
    let mut writer = s.try_clone().unwrap();
    writer
        .set_write_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let request = format!("GET /status.js HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let sender = std::thread::spawn(move || {
        // Stops when the server stops reading (the write times out) or closes. Far more than
        // the server reads before it stalls, so requests are left unread when it closes, and
        // its close is a reset (a FIN would wait behind the answers it has queued).
        for _ in 0..10_000 {
            if writer.write_all(request.as_bytes()).is_err() {
                break;
            }
        }
    });
    // Answers pile up unread, so the server's close is seen in the socket's TCP state (a
    // read would first take the answers, and so let the server write again).
    let state = || {
        // SAFETY: a valid socket and a tcp_info buffer of its size.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let got = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        assert_eq!(got, 0, "TCP_INFO");
        info.tcpi_state
    };
    const ESTABLISHED: u8 = 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while state() == ESTABLISHED {
        assert!(
            std::time::Instant::now() < deadline,
            "the server still holds a connection whose client read nothing for 90 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    sender.join().unwrap();
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
}

/// Pushes of records of empty items of a `list<struct>` with 50 integer fields (3 bytes of
/// text an item, about 1.8 KB decoded; a 15 MiB one took 4 GB). A request is measured line by
/// line before it is decoded: two records of 100,000 items (0.6 MB of text) would need more
/// than `max_in_flight` together, 413; one of 200,000 would decode past what a record may and
/// is its dead letter without being decoded; records of real items are taken.
#[test]
fn a_push_is_measured_for_what_its_list_items_decode_to_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<String> = (0..50)
        .map(|i| format!("{{ name = \"c{i}\", type = \"int64\" }}"))
        .collect();
    let schema = dir.path().join("wide.toml");
    std::fs::write(
        &schema,
        format!(
            "name = \"wide\"\n[[fields]]\nname = \"l\"\ntype = \"list<struct>\"\nfields = [ {} ]\n",
            children.join(", ")
        ),
    )
    .unwrap();
    let job = push_job(dir.path(), "wal", "max_body = \"4MiB\"", "");
    let text = std::fs::read_to_string(&job).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("schema = ") {
                format!("schema = \"{}\"", schema.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&job, text).unwrap();
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let mut c = Client::new(&addr);
    let items = |n: usize| format!("{{\"l\":[{}]}}\n", vec!["{}"; n].join(","));
    let two = items(100_000).repeat(2);
    let (code, _, b) = c.post("/v1/repos/wide/data", "", two.as_bytes()).unwrap();
    assert_eq!(code, 413, "{b}");
    assert!(
        b.contains("holds 2 lines") && b.contains("max_in_flight"),
        "{b}"
    );
    let (code, _, b) = c
        .post("/v1/repos/wide/data", "", items(200_000).as_bytes())
        .unwrap();
    assert_eq!(code, 200, "{b}");
    assert!(
        b.contains("\"dead_letters\":1") && b.contains("would decode to about"),
        "{b}"
    );
    let real: String = (0..20)
        .map(|i| format!("{{\"l\":[{{\"c0\":{i},\"c1\":2}},{{\"c49\":3}}]}}\n"))
        .collect();
    let (code, _, b) = c.post("/v1/repos/wide/data", "", real.as_bytes()).unwrap();
    assert_eq!(code, 200, "{b}");
    assert!(b.contains("\"accepted\":20"), "{b}");
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
}

/// A chunked push body of 4 MiB sent one byte a chunk is taken, and the process's peak memory
/// grows by far less than 64 MiB. Collected frame by frame before it was copied, each byte
/// kept a handle of its own and the read buffer behind it: about 40 bytes held per byte,
/// outside `max_in_flight`.
#[test]
fn a_push_body_sent_one_byte_a_chunk_is_held_once() {
    let dir = tempfile::tempdir().unwrap();
    // Four million chunks take a while on a busy machine: no body timeout in the way.
    let job = push_job(
        dir.path(),
        "wal",
        "max_body = \"8MiB\"\nbody_timeout = \"600s\"",
        "",
    );
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let mut body = Vec::new();
    let mut n = 0;
    while body.len() < 4 << 20 {
        body.extend_from_slice(
            format!(
                "{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"status\":200,\"trace_id\":\"c{n}\"}}\n"
            )
            .as_bytes(),
        );
        n += 1;
    }
    let before = peak_rss_kb(child.id()).unwrap();
    let s = std::net::TcpStream::connect(&addr).unwrap();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &s);
    write!(
        w,
        "POST /v1/repos/nginx_access/data HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    for b in &body {
        w.write_all(b"1\r\n").unwrap();
        w.write_all(std::slice::from_ref(b)).unwrap();
        w.write_all(b"\r\n").unwrap();
    }
    w.write_all(b"0\r\n\r\n").unwrap();
    w.flush().unwrap();
    drop(w);
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut &s, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&format!("\"accepted\":{n}")), "{answer}");
    let grown = peak_rss_kb(child.id()).unwrap().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the peak grew by {} MiB for a 4 MiB body",
        grown / 1024
    );
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
}

/// Bodies sent slowly, on purpose or not, hold what they sent: neither `max_body` of the memory
/// budget nor a request slot. Six clients that start a chunked body and stall exceed both the
/// slots (`max_concurrent = 4`) and the budget (`max_in_flight` = 4 × `max_body`) as they
/// were reserved before (a slot and `max_body` each, at the request's start): every other push
/// was refused (503) until their `body_timeout` ran out. Now a push beside them is taken.
#[test]
fn bodies_sent_slowly_hold_neither_the_memory_budget_nor_the_request_slots() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(
        dir.path(),
        "wal",
        "max_body = \"1MiB\"\nmax_in_flight = \"4MiB\"\nmax_concurrent = 4\nbody_timeout = \"60s\"",
        "",
    );
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let mut slow = Vec::new();
    for _ in 0..6 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /v1/repos/nginx_access/data HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"ts\"\r\n"
        )
        .unwrap();
        slow.push(s);
    }
    // Each stalled body is reserved as far as it arrived.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let held = loop {
        let (_, m) = http(&addr, "GET", "/metrics", None);
        let held = metric_sum(&m, "sluice_push_in_flight_bytes");
        if held >= 6.0 * 65536.0 || std::time::Instant::now() > deadline {
            break held;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(held, 6.0 * 65536.0, "the stalled bodies' reservations");
    let mut c = Client::new(&addr);
    let answer = c.post(
        "/v1/repos/nginx_access/data",
        "",
        &crate::push::events("beside", 10),
    );
    assert!(matches!(answer, Ok((200, _, _))), "{answer:?}");
    drop(slow);
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
}

/// When three quarters of the listener's slots are taken, kept-alive connections are told to
/// close once their request in progress is answered. Before, a client that kept 384
/// connections alive with a request every few seconds (no token needed for `/healthz`) held
/// those slots for good, and about 13 new one-byte connections a second held the rest.
#[test]
fn kept_alive_connections_close_when_the_listener_gets_busy() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // One answer on a kept-alive connection; None once the server has closed it.
    let ask = |s: &mut std::net::TcpStream| -> Option<String> {
        s.write_all(request.as_bytes()).ok()?;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= head_end + 4 + len {
                    return Some(text);
                }
            }
        }
    };
    let mut kept: Vec<std::net::TcpStream> = (0..384)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            let answer = ask(&mut s).unwrap_or_default();
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "connection {i}: {answer}"
            );
            s
        })
        .collect();
    // Every slot but a quarter is taken: the next connection makes the listener busy.
    let mut next = std::net::TcpStream::connect(&addr).unwrap();
    next.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    assert!(ask(&mut next).is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    for i in [0, 191, 383] {
        let s = &mut kept[i];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while ask(s).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "kept-alive connection {i} still answered 30 s after the listener got busy"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    drop(kept);
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
}
