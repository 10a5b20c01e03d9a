//! A job without a table whose destination gets one from another process while it runs: the
//! partitions it holds are not claimed again, so its commits look for a table themselves
//! (`table::watch`).

use crate::helpers::*;
use crate::push::{push_acked, push_job, start_with};

/// A push job without a table commits; another job makes a Delta table in its folder; the
/// next push's commit finds it and the run stops, refused, having written none of it as plain
/// files (it stays in the WAL), and a restart is refused. Before, the run went on writing
/// plain files beside the table (their partition's next table writer would stop at them).
#[test]
fn a_job_without_a_table_stops_at_a_table_made_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let log = dir.path().join("run.log");
    let (mut run, addr) = start_with(&job, &log, &[("SLUICE_FAULT", "table_watch_every:100")]);
    let out = dir.path().join("out");
    push_acked(&addr, "a", 10);
    wait_until("the first push committed", 60, || {
        trace_ids(&out)
            .keys()
            .filter(|k| k.starts_with("a-"))
            .count()
            == 10
    });

    let table_dir = dir.path().join("table");
    std::fs::create_dir_all(&table_dir).unwrap();
    let input = table_dir.join("events.jsonl");
    std::fs::write(
        &input,
        "{\"ts\":\"2024-05-01T00:00:00Z\",\"host\":\"a\",\"status\":200,\"trace_id\":\"t0\"}\n",
    )
    .unwrap();
    let table_job = crate::delta::file_job(
        &table_dir,
        &input,
        &schema("nginx_access"),
        out.to_str().unwrap(),
        "",
    );
    sluice_ok(&["run", table_job.to_str().unwrap()]);
    assert!(out.join("_delta_log").is_dir());

    push_acked(&addr, "b", 10);
    let child = run.0.as_mut().unwrap();
    let status = wait_exit(child, "the run to stop at the table", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    assert!(text.contains("holds a Delta table"), "{text}");
    let landed = trace_ids(&out);
    assert!(
        !landed.keys().any(|k| k.starts_with("b-")),
        "plain files written beside the table: {landed:?}"
    );
    let err = sluice_refused(&["run", job.to_str().unwrap()]);
    assert!(err.contains("holds a Delta table"), "{err}");
}
