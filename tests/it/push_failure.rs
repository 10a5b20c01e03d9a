//! A push repo whose task failed: it takes no more pushes while its workers make their last
//! commits, and its restart takes them again.

use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::kafka::wait_log;
use crate::push::http_client::Client;
use crate::push::{events, push_acked, push_job, start_with};

/// Memory durability: a sink worker panics at its first take (`panic_in_worker:1`) and the
/// other is held before its last commits (`hold_at_end`). Pushes after the panic are refused
/// (503), not acknowledged into a memory log the failed task no longer reads; once released,
/// the supervisor restarts the task and a push lands. Before, the intake stayed open until
/// the workers' last commits: every push in that window was answered 200 and lost.
#[test]
fn a_failed_memory_task_refuses_pushes_while_its_workers_finish() {
    let dir = tempfile::tempdir().unwrap();
    // A supervised repo (`[[repos]]`): its failed task is restarted.
    let job = push_job(dir.path(), "memory", "", "");
    let text = std::fs::read_to_string(&job).unwrap() + "\n[[repos]]\nname = \"nginx_access\"\n";
    std::fs::write(&job, text).unwrap();
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let log = dir.path().join("run.log");
    let fault = format!("panic_in_worker:1,hold_at_end:@{}", hold.display());
    let (_run, addr) = start_with(&job, &log, &[("SLUICE_FAULT", &fault)]);
    push_acked(&addr, "a", 10);
    let seen = wait_log(&log, "a sink worker panicked", 1, 60);
    assert!(seen.contains("a sink worker panicked"), "{seen}");
    // Pushes go on until one is refused: the panic's handler may be a moment behind its log.
    let mut client = Client::new(&addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut acked = 0;
    let answer = loop {
        let answer = client.post("/v1/repos/nginx_access/data", "", &events("b", 10));
        match answer {
            Ok((200, _, _)) if Instant::now() < deadline => acked += 1,
            other => break other,
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        matches!(answer, Ok((503, _, _))),
        "after a sink worker panicked, {acked} pushes were acknowledged in 20 s, then {answer:?}:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(acked <= 2, "{acked} pushes acknowledged after the panic");
    std::fs::remove_file(&hold).unwrap();
    // The restarted task takes pushes again.
    let seen = wait_log(&log, "to=Running", 2, 60);
    assert!(seen.matches("to=Running").count() >= 2, "{seen}");
    push_acked(&addr, "c", 10);
    let deadline = Instant::now() + Duration::from_secs(60);
    let landed = || {
        trace_ids(&dir.path().join("out"))
            .keys()
            .filter(|id| id.starts_with("c-"))
            .count()
    };
    while landed() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(landed(), 10, "{}", std::fs::read_to_string(&log).unwrap());
}
