//! Reloads (SIGHUP) and the supervisor's restarts inside one process: a task that panics
//! after reloads restarts with the job as last reloaded, and later reloads still happen.

use crate::helpers::*;
use crate::kafka::wait_log;
use crate::push::{push_acked, push_job, start_with};

fn hup(child: &std::process::Child) {
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// A push job reloaded to write to `moved/`, then reloaded again to `second/`, whose task
/// panics at its start (`panic_at_start:3`): the job that ran before it (`moved/`) takes over,
/// and a third reload (to `third/`) happens. Before, the panic escaped the reloading loop:
/// the supervisor restarted the job as first loaded (`out/`), undoing the first reload, and
/// the reloads' watcher of the panicked task stayed, taking a later SIGHUP for a task gone.
#[test]
fn a_task_panicking_after_reloads_restarts_as_last_reloaded_and_reloads_on() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let text = std::fs::read_to_string(&job).unwrap();
    assert!(text.contains("file://out"), "{text}");
    let log = dir.path().join("run.log");
    let (mut run, addr) = start_with(&job, &log, &[("SLUICE_FAULT", "panic_at_start:3")]);
    let lands = |tag: &str, folder: &str, running: usize| {
        let seen = wait_log(&log, "to=Running", running, 60);
        push_acked(&addr, tag, 10);
        let out = dir.path().join(folder);
        let theirs = || {
            trace_ids(&out)
                .keys()
                .filter(|id| id.starts_with(&format!("{tag}-")))
                .count()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while theirs() < 10 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(
            theirs(),
            10,
            "{tag}'s rows in {folder}/:\n{seen}\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
    };
    lands("a", "out", 1);
    for (tag, folder, running) in [("b", "moved", 2), ("c", "moved", 3), ("d", "third", 4)] {
        let url = match tag {
            "c" => "file://second",
            _ => &format!("file://{folder}")[..],
        };
        std::fs::write(&job, text.replace("file://out", url)).unwrap();
        hup(run.child());
        if tag == "c" {
            let seen = wait_log(&log, "SLUICE_FAULT: a panic at the task's start 3", 1, 60);
            assert!(seen.contains("a panic at the task's start 3"), "{seen}");
        }
        lands(tag, folder, running);
    }
    assert!(trace_ids(&dir.path().join("second")).is_empty());
}
