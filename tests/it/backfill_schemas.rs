//! A backfill into the live job's folder writes files read with the live job's: its schema is
//! checked against the live job's record, and the live job's against the backfill's.

use std::path::{Path, PathBuf};

use crate::helpers::*;
use crate::kafka::{cluster, produce_events, wait_for};
use crate::owners::live_at_latest;

/// The fixture schema with `extra` lines appended, as `name` in `dir`.
fn schema_with(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(schema("nginx_access")).unwrap();
    std::fs::write(&p, edit(text)).unwrap();
    p
}

/// Points `job` at schema file `to`.
fn use_schema(job: &Path, to: &Path) {
    let text = std::fs::read_to_string(job).unwrap();
    let from = text
        .lines()
        .find(|l| l.starts_with("schema = "))
        .unwrap()
        .to_string();
    let text = text.replace(&from, &format!("schema = {:?}", to.to_str().unwrap()));
    std::fs::write(job, text).unwrap();
}

/// The live job starts at the log's end and writes what follows; a backfill of the history
/// before it goes into the same folder. A backfill whose schema retypes a field is refused
/// (before, it wrote Utf8 `status` files among the live job's Int32 ones: a folder readers
/// fail on). One that adds a nullable string field runs; the live job restarted with that
/// field as an integer is then refused (its own record has no such field, but the backfill's
/// files do), by `validate` too, and records nothing: the backfill runs again.
#[test]
fn a_backfill_and_the_live_job_in_one_folder_keep_schemas_readers_can_follow() {
    let topic = "live";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 400, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let (job, live) = live_at_latest(dir.path(), &bootstrap, topic, &[]);
    let out = dir.path().join("out");
    produce_events(&bootstrap, topic, 400, 40, 4, None);
    wait_for(&out, 40, 90);
    assert_eq!(
        trace_ids(&out).len(),
        40,
        "the live job wrote what followed its start"
    );
    sigterm(&live);
    assert!(live.wait_with_output().unwrap().status.success());
    let jobs = job.to_str().unwrap();
    let to = "0=100,1=100,2=100,3=100";

    let retyped = schema_with(dir.path(), "retyped", |t| {
        t.replace(
            "name = \"status\"\ntype = \"int32\"",
            "name = \"status\"\ntype = \"string\"",
        )
    });
    use_schema(&job, &retyped);
    let err = sluice_refused(&["backfill", jobs, "--to", to]);
    assert!(err.contains("status"), "{err}");
    assert_eq!(trace_ids(&out).len(), 40, "the refused backfill wrote");

    let added = |ty: &'static str| {
        move |t: String| format!("{t}\n[[fields]]\nname = \"extra\"\ntype = \"{ty}\"\n")
    };
    let with_string = schema_with(dir.path(), "with-string", added("string"));
    use_schema(&job, &with_string);
    sluice_ok(&["backfill", jobs, "--to", to]);
    assert_eq!(trace_ids(&out).len(), 440, "the backfill wrote the history");

    let with_int = schema_with(dir.path(), "with-int", added("int64"));
    use_schema(&job, &with_int);
    let (status, log) = sluice_within(&["run", jobs], 60);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("cannot be read beside the files backfill `kafka-it-backfill` wrote"),
        "{log}"
    );
    let err = sluice_refused(&["validate", jobs]);
    assert!(err.contains("cannot be read beside"), "{err}");
    // The refused start recorded nothing: the backfill's schema still fits the live record.
    use_schema(&job, &with_string);
    sluice_ok(&["backfill", jobs, "--to", to]);
}

/// A start of the live job recording a change (`extra` as an integer) held just before its
/// record (`hold_schema_record`), past its look at the backfills' schemas (none yet), while a
/// backfill with `extra` as a string checks the live record (not changed yet) and runs. The
/// live job, let go, records its change and then finds the backfill's: it is refused. Before,
/// it ran, and the folder held `extra` as a string and as an integer.
#[test]
fn a_live_start_recording_a_change_while_a_backfill_starts_is_checked_against_it() {
    let topic = "live";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 400, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let (job, live) = live_at_latest(dir.path(), &bootstrap, topic, &[]);
    sigterm(&live);
    assert!(live.wait_with_output().unwrap().status.success());
    let jobs = job.to_str().unwrap();
    let added = |ty: &'static str| {
        move |t: String| format!("{t}\n[[fields]]\nname = \"extra\"\ntype = \"{ty}\"\n")
    };
    use_schema(&job, &schema_with(dir.path(), "with-int", added("int64")));
    let (hold, log) = (dir.path().join("hold"), dir.path().join("held.log"));
    let mut held = run_held(&job, &log, &hold, "hold_schema_record");
    said(&log, "SLUICE_FAULT: holding at hold_schema_record");
    use_schema(
        &job,
        &schema_with(dir.path(), "with-string", added("string")),
    );
    sluice_ok(&["backfill", jobs, "--to", "0=100,1=100,2=100,3=100"]);
    std::fs::remove_file(&hold).unwrap();
    let status = wait_exit(held.child(), "the held live start to be refused", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("cannot be read beside the files backfill `kafka-it-backfill` wrote"),
        "{text}"
    );
}

/// Two backfills of the live folder's tree with the field `extra` typed two ways: one into
/// the live folder (`extra` a string), one into a folder inside it (`extra` an integer), over
/// disjoint offsets. The second is refused, naming the first: readers of the live folder read
/// both. Before, it ran (its own destination lists no backfill, and each fits the live job's
/// record), and the tree held `extra` as a string and as an integer.
#[test]
fn a_backfill_into_a_folder_inside_the_live_one_is_checked_against_the_others() {
    let topic = "inside";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    produce_events(&bootstrap, topic, 0, 400, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let (job, live) = live_at_latest(dir.path(), &bootstrap, topic, &[]);
    sigterm(&live);
    assert!(live.wait_with_output().unwrap().status.success());
    let jobs = job.to_str().unwrap();
    let added = |ty: &'static str| {
        move |t: String| format!("{t}\n[[fields]]\nname = \"extra\"\ntype = \"{ty}\"\n")
    };
    use_schema(&job, &schema_with(dir.path(), "s", added("string")));
    sluice_ok(&["backfill", jobs, "--to", "0=50,1=50,2=50,3=50"]);
    use_schema(&job, &schema_with(dir.path(), "i", added("int64")));
    let older = dir.path().join("out/older");
    let err = sluice_refused(&[
        "backfill",
        jobs,
        "--name",
        "older",
        "--url",
        older.to_str().unwrap(),
        "--from",
        "0=50,1=50,2=50,3=50",
        "--to",
        "0=100,1=100,2=100,3=100",
    ]);
    assert!(
        err.contains("cannot be read beside the files backfill `kafka-it-backfill` wrote"),
        "{err}"
    );
    assert!(trace_ids(&older).is_empty(), "the refused backfill wrote");
    assert!(
        !older.join("_sluice/older/range.json").exists(),
        "the refused backfill recorded its range"
    );
}
