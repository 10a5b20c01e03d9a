//! Backfill names sharing one destination: each records the offsets it reads, a name whose
//! offsets another name recorded there is refused before it writes, and a name run again
//! reads exactly the offsets its first run planned.

use std::path::Path;

use crate::helpers::*;
use crate::kafka::{cluster, produce_events};

/// Offsets `o` of every partition of the test topic (4 partitions), as `--from`/`--to` take them.
fn at(o: u32) -> String {
    (0..4)
        .map(|p| format!("{p}={o}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn visible_files(out: &Path) -> Vec<std::path::PathBuf> {
    let mut f = files_under(out, true);
    f.retain(|p| !p.to_string_lossy().contains("/_sluice/"));
    f.sort();
    f
}

/// Two names over overlapping offsets into one folder: the second is refused before it
/// writes, naming the first and the offsets, and takes back its range record (so the name
/// can be run over another range). Over the offsets that follow it runs, and every record is
/// in the folder once. Run again after more records arrived, a name reads the offsets its
/// first run planned (`--to latest` is the end then), not the new end. Before, the second
/// name wrote offsets 200..250 of every partition a second time, and the third run wrote the
/// new records.
#[test]
fn backfills_of_overlapping_offsets_into_one_folder_are_refused() {
    let topic = "ranges";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    // 500 a partition: event i is offset i / 4 of partition i % 4.
    produce_events(&bootstrap, topic, 0, 2000, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &bootstrap, topic, "");
    let jobs = job.to_str().unwrap();
    let out = dir.path().join("out");

    sluice_ok(&["backfill", jobs, "--name", "a", "--to", &at(250)]);
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 1000, "offsets 0..250 of 4 partitions");
    assert!(ids.values().all(|c| *c == 1));
    let written = visible_files(&out);

    let refused = sluice(&["backfill", jobs, "--name", "b", "--from", &at(200)]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "an overlapping backfill ran: {err}"
    );
    assert!(
        err.contains("backfill `a`") && err.contains("offsets 200..250"),
        "{err}"
    );
    assert_eq!(visible_files(&out), written, "the refused backfill wrote");
    assert!(
        !out.join("_sluice/b/range.json").exists(),
        "the refused backfill left its range recorded"
    );

    sluice_ok(&["backfill", jobs, "--name", "b", "--from", &at(250)]);
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 2000);
    assert!(ids.values().all(|c| *c == 1), "a record written twice");

    // The name's recorded plan ends where its first run ended.
    produce_events(&bootstrap, topic, 2000, 400, 4, None);
    sluice_ok(&["backfill", jobs, "--name", "b", "--from", &at(250)]);
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 2000, "the rerun read past its planned end");
    // A new name over the new records only, and one over everything into another folder.
    let refused = sluice(&["backfill", jobs, "--name", "c"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("backfill `a`") && err.contains("backfill `b`"),
        "{err}"
    );
    sluice_ok(&["backfill", jobs, "--name", "c", "--from", &at(500)]);
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 2400);
    assert!(ids.values().all(|c| *c == 1), "a record written twice");
    let other = dir.path().join("other");
    sluice_ok(&[
        "backfill",
        jobs,
        "--name",
        "d",
        "--url",
        other.to_str().unwrap(),
    ]);
    assert_eq!(trace_ids(&other).len(), 2400);
}
