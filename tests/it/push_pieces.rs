//! A push request of more lines than a chunk holds (16,384): decoded and handed on in pieces
//! of that many, each record once, its dead letters numbered by their line in the request.

use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::push::http_client::Client;
use crate::push::{events, push_job, start};

/// One request of 40,000 events, the 30,000th of them bad: the answer counts 39,999 rows and
/// names line 30,000, and every good row lands once (the pieces' sizes are checked by the
/// push source's unit tests). Before, the request went on as one item of 40,000 lines (a
/// template routing each to a path of its own made one commit of 40,000 files).
#[test]
fn a_request_longer_than_a_chunk_goes_on_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let log = dir.path().join("run.log");
    let (_run, addr) = start(&job, &log);
    let mut body = events("p", 40_000);
    let lines: Vec<&[u8]> = body.split_inclusive(|b| *b == b'\n').collect();
    let mut bad = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        bad.extend_from_slice(if i == 29_999 { b"{not json\n" } else { l });
    }
    body = bad;
    let mut client = Client::new(&addr);
    let answer = client.post("/v1/repos/nginx_access/data", "", &body);
    let Ok((200, _, text)) = answer else {
        panic!("{answer:?}")
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["accepted"], 39_999, "{text}");
    assert_eq!(json["dead_letters"], 1, "{text}");
    assert_eq!(json["first_dead_letter"]["line"], 30_000, "{text}");
    let out = dir.path().join("out");
    let deadline = Instant::now() + Duration::from_secs(60);
    while trace_ids(&out).len() < 39_999 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ids = trace_ids(&out);
    assert_eq!(
        ids.len(),
        39_999,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(ids.values().all(|n| *n == 1), "each once");
    assert!(!ids.contains_key("p-29999"));
}
