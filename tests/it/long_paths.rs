//! Long paths: a folder name joining several long values, and a path of many such folders,
//! are cut to what a file system and an object store hold, so rows with long values land
//! instead of failing their partition's writes for good.

use std::path::Path;

use crate::helpers::*;

/// A file job over `rows` into `out/` with `template`; returns the job file.
fn job(dir: &Path, rows: &[(&str, &str)], template: &str) -> std::path::PathBuf {
    let input = dir.join("in.jsonl");
    let lines: String = rows
        .iter()
        .map(|(host, id)| {
            format!("{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"{host}\",\"status\":200,\"trace_id\":\"{id}\"}}\n")
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"names\"\nstate_dir = \"state\"\n[source]\nkind = \"file\"\n\
             format = \"json\"\npaths = [{:?}]\n[repo]\nschema = {:?}\n[sink]\nurl = \"out/\"\n\
             [sink.partition]\ntemplate = {template:?}\n",
            input.display().to_string(),
            schema("nginx_access").display().to_string()
        ),
    )
    .unwrap();
    job
}

/// Rows of a long host (150 bytes) and a short one through `folders` folders of
/// `{host}-{host}-{host}`, run `runs` times: both rows land once, and the short one's path
/// keeps its layout.
fn long_and_short_rows_land(folders: usize, runs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let long = "h".repeat(150);
    let job = job(
        dir.path(),
        &[(&long, "long"), ("x", "short")],
        &"{host}-{host}-{host}/".repeat(folders),
    );
    // `validate` says whether the template cuts long names (one folder always fits).
    let said = sluice_ok(&["validate", job.to_str().unwrap()]);
    assert_eq!(
        said.contains("folder names of 48 bytes or more"),
        folders > 1,
        "{said}"
    );
    for _ in 0..runs {
        let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
        assert!(status.success(), "{log}");
    }
    let out = dir.path().join("out");
    let ids = trace_ids(&out);
    assert_eq!(
        (ids.get("long"), ids.get("short"), ids.len()),
        (Some(&1), Some(&1), 2),
        "{ids:?}"
    );
    assert!(out.join("x-x-x/".repeat(folders)).is_dir());
}

/// A folder name that joins three long values (353 bytes rendered) is longer than a file
/// system holds: the partition's every write failed (ENAMETOOLONG), retried for good. Now
/// the name is cut and hashed, the rows land, and a second run finds nothing left.
#[test]
fn a_folder_name_of_several_long_values_does_not_stop_the_partition() {
    long_and_short_rows_land(1, 2);
}

/// Sixteen such folders make a path of 4,096 bytes, past the 4,095 a local path holds (an
/// object key holds 1,024): with each name cut only to 255 bytes, every write of the row
/// failed, for good. Now the template's long names are cut shorter, short ones kept, and a
/// second run finds nothing left.
#[test]
fn a_path_of_many_long_values_does_not_stop_the_partition() {
    long_and_short_rows_land(16, 2);
}

/// A hundred such folders pass the room even with every name cut short: the leading folders
/// that fit are kept and the rest folded into one, so the row still lands.
#[test]
fn a_path_of_a_hundred_long_folders_is_folded_and_lands() {
    long_and_short_rows_land(100, 1);
}

/// A topic of the longest name Kafka allows (249 bytes) makes file names past what a file
/// system holds (its key, the first offset, the attempt's tag, the extension): every write of
/// its records failed, retried for good. Names are cut to fit (the key's part, `~` and a
/// hash), and the partition's records land, dead letters too.
#[test]
fn a_topic_of_the_longest_name_kafka_allows_lands() {
    let topic = format!("t{}", "x".repeat(248));
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic(&topic, 1, 1).unwrap();
    crate::kafka::produce_events(&cluster.bootstrap_servers(), &topic, 0, 50, 1, None);
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    producer
        .send(rdkafka::producer::BaseRecord::<(), [u8]>::to(&topic).payload(b"not json"))
        .unwrap();
    rdkafka::producer::Producer::flush(&producer, std::time::Duration::from_secs(10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = crate::kafka::job_with(dir.path(), &cluster.bootstrap_servers(), &topic, "");
    let out = dir.path().join("out");
    let log = dir.path().join("run.log");
    let run = crate::kafka::spawn_run(&job, &log);
    crate::kafka::wait_for(&out, 50, 60);
    let text = crate::kafka::wait_log(&log, "committed", 1, 30);
    assert_eq!(trace_ids(&out).len(), 50, "{text}");
    let names = || -> Vec<String> {
        files_under(&out, false)
            .iter()
            .filter(|p| !p.to_string_lossy().contains("/_sluice/"))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while names().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let names = names();
    assert!(
        names.len() >= 2,
        "a data file and a dead-letter file: {names:?}"
    );
    assert!(
        names.iter().all(|n| n.len() <= 255 && n.contains('~')),
        "{names:?}"
    );
    drop(run);
}

/// An input file whose name without its extension is 249 bytes (`<stem>-0.json`, its
/// partition's record of the file's start, is 256): the run is refused at its start, naming
/// the file and the longest stem that fits. Before, the record's write failed with the
/// system's bare "File name too long" at every start. A stem of 248 bytes is exported.
#[test]
fn an_input_file_name_too_long_for_its_records_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &[("h", "one")], "");
    let text = std::fs::read_to_string(&job).unwrap();
    let line = std::fs::read_to_string(dir.path().join("in.jsonl")).unwrap();
    for (stem, fits) in [("s".repeat(249), false), ("s".repeat(248), true)] {
        let input = dir.path().join(format!("{stem}.jsonl"));
        std::fs::write(&input, &line).unwrap();
        let named = text.replace(
            &format!("{:?}", dir.path().join("in.jsonl").display().to_string()),
            &format!("{:?}", input.display().to_string()),
        );
        assert_ne!(named, text);
        std::fs::write(&job, named).unwrap();
        let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
        if fits {
            assert!(status.success(), "{log}");
            assert_eq!(trace_ids(&dir.path().join("out")).get("one"), Some(&1));
        } else {
            assert!(!status.success(), "{log}");
            assert!(
                log.contains(&format!("input file {}", input.display()))
                    && log.contains("at most 248 bytes before the extension"),
                "{log}"
            );
        }
    }
}

/// Rows whose folder values differ only in case (`US`, `us`, `Us`) go to folders that are one
/// where the file system ignores case (macOS, Windows, casefold folders): their files get
/// names that differ ignoring case too. Before, the files of one chunk had one name in each
/// folder, and there the second rename replaced the first: its rows lost without a word.
#[test]
fn files_in_folders_differing_only_in_case_are_named_apart() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        dir.path(),
        &[("US", "a"), ("us", "b"), ("Us", "c"), ("US", "d")],
        "h={host}/",
    );
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(status.success(), "{log}");
    let out = dir.path().join("out");
    let files = files_under(&out, true);
    let folded: std::collections::HashSet<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&out)
                .unwrap()
                .to_string_lossy()
                .to_lowercase()
        })
        .collect();
    assert_eq!((files.len(), folded.len()), (3, 3), "{files:?}");
    assert_eq!(trace_ids(&out).len(), 4);
}
