//! A push job's WAL against other writers and destinations: one process per WAL folder,
//! wherever it is, and a start refused where the WAL released what the destination's
//! checkpoint needs.

use crate::helpers::*;
use crate::push::{push_acked, push_job, start};

/// A supervised push repo moved to another destination and back (by restarts here; a reload
/// does the same): the other destination committed past what this one's checkpoint needs,
/// and the WAL released it. The start is refused, saying what to do, and the refused repo is
/// not started again. Before, its task failed at every start ("already released"), restarted
/// by its supervisor for as long as the process ran, its pushes turned away.
#[test]
fn a_push_repo_back_on_a_destination_whose_records_its_log_released_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(
        dir.path(),
        "wal",
        "wal_segment_bytes = \"256KiB\"",
        "[[repos]]\nname = \"nginx_access\"\n",
    );
    let text = std::fs::read_to_string(&job).unwrap();
    let push = |url: &str, tags: &[&str]| {
        std::fs::write(&job, text.replace("file://out", url)).unwrap();
        let log = dir.path().join(format!("{}.log", tags[0]));
        let (child, addr) = start(&job, &log);
        let out = dir.path().join(url.trim_start_matches("file://"));
        let mut c = crate::push::http_client::Client::new(&addr);
        for tag in tags {
            let (code, _, b) = c
                .post(
                    "/v1/repos/nginx_access/data",
                    "",
                    &crate::push::events(tag, 6000),
                )
                .unwrap();
            assert_eq!(code, 200, "{b}");
            // By ids, not by a count: a repo moved to a destination without a checkpoint
            // exports what its WAL still holds there too (the first process's records, here),
            // whenever it gets to them.
            let of_tag = |ids: &std::collections::HashMap<String, usize>| {
                ids.keys()
                    .filter(|id| id.starts_with(&format!("{tag}-")))
                    .count()
            };
            wait_until_showing(
                "the push to be committed",
                60,
                || of_tag(&trace_ids(&out)) == 6000,
                || {
                    let got = of_tag(&trace_ids(&out));
                    let said = std::fs::read_to_string(&log).unwrap_or_default();
                    format!(": {got} of 6000 records of {tag}\n{said}")
                },
            );
        }
        assert!(child.stop("the push job to stop", 60).success());
        let twice: Vec<_> = trace_ids(&out)
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect();
        assert!(twice.is_empty(), "written twice: {twice:?}");
    };
    push("file://out", &["a"]);
    push("file://moved", &["b0", "b1", "b2"]);
    std::fs::write(&job, &text).unwrap();
    let (status, err) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("was already released") && err.contains("sluice wal export"),
        "{err}"
    );
    assert!(
        !err.contains("it starts again after a pause"),
        "the refused repo was started again:\n{err}"
    );
}

/// A second process of a push job with a state folder of its own whose `wal_dir` names the
/// first one's WAL (the default `<state_dir>/wal`) is refused at start. Before, each locked
/// only its own state folder, and both appended to one log, each deleting segments that held
/// the other's acknowledged, uncommitted records.
#[test]
fn a_second_process_naming_the_first_ones_wal_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let log = dir.path().join("run.log");
    let (first, _) = start(&job, &log);
    let second = crate::push::second_process(&job);
    let text = std::fs::read_to_string(&second).unwrap().replace(
        "durability = \"wal\"",
        "durability = \"wal\"\nwal_dir = \"state/wal\"",
    );
    assert!(text.contains("wal_dir = \"state/wal\""), "{text}");
    std::fs::write(&second, text).unwrap();
    let (status, err) = sluice_within(&["run", second.to_str().unwrap()], 60);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("locked by another sluice process") && err.contains("wal"),
        "{err}"
    );
    assert!(first.stop("the first process's stop", 60).success());
}

/// A push job whose `wal_dir` is its state folder itself runs: that folder is locked once
/// (locked twice, by one process, the second lock was refused as another's).
#[test]
fn a_push_job_whose_wal_folder_is_its_state_folder_runs() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "wal_dir = \"state\"", "");
    let log = dir.path().join("run.log");
    let (run, addr) = start(&job, &log);
    push_acked(&addr, "a", 10);
    wait_until("the push to be committed", 60, || {
        trace_ids(&dir.path().join("out")).len() == 10
    });
    assert!(run.stop("the push job to stop", 60).success());
}
