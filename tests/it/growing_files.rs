//! Files that change between runs of a file job. By default a last line without a line break
//! is a record (a file that ends without one); with `partial_last_line = "leave"` it is left
//! for the next run, which reads it whole. Taken as a record, a CSV line cut short is a row
//! with a value cut short, and the rest of it another record: no error tells. A file replaced
//! under the same name (a rotated log) is refused, not resumed at the old one's offset.

use std::io::Write;
use std::path::Path;

use crate::helpers::*;

fn job(dir: &Path, partial: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("app.toml"),
        "name = \"app\"\n[[fields]]\nname = \"trace_id\"\ntype = \"string\"\nnullable = false\n\
         [[fields]]\nname = \"n\"\ntype = \"int64\"\n",
    )
    .unwrap();
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"grow\"\nstate_dir = \"state\"\n[source]\nkind = \"file\"\n\
             paths = [\"app.csv\"]\nformat = \"csv\"\nheader = false\n{partial}\
             [repo]\nschema = \"app.toml\"\n[sink]\nurl = \"file://{}/out\"\nformat = \"parquet\"\n",
            dir.display()
        ),
    )
    .unwrap();
    job
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// The rows of the job's files, in trace id order, as DuckDB reads them.
fn rows(dir: &Path) -> Option<String> {
    duckdb_rows(&format!(
        "select trace_id, n from read_parquet('{}/out/**/*.parquet') order by trace_id",
        dir.display()
    ))
}

#[test]
fn a_last_line_still_being_written_is_left_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.csv");
    let job = job(dir.path(), "partial_last_line = \"leave\"\n");
    // The writer has written `c,35\n` as far as `c,3`.
    append(&input, "a,1\nb,2\nc,3");
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(status.success(), "{log}");
    assert!(log.contains("left for the next run"), "{log}");
    let first = trace_ids(&dir.path().join("out"));
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(!first.contains_key("c"), "{first:?}");
    append(&input, "5\nd,4\n");
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(status.success(), "{log}");
    assert!(!log.contains("left for the next run"), "{log}");
    let ids = trace_ids(&dir.path().join("out"));
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.values().all(|&n| n == 1), "{ids:?}");
    if let Some(rows) = rows(dir.path()) {
        assert_eq!(rows, "[\"a\", 1]\n[\"b\", 2]\n[\"c\", 35]\n[\"d\", 4]\n");
    }
}

#[test]
fn by_default_a_last_line_without_a_line_break_is_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.csv");
    let job = job(dir.path(), "");
    append(&input, "a,1\nb,2");
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(status.success(), "{log}");
    if let Some(rows) = rows(dir.path()) {
        assert_eq!(rows, "[\"a\", 1]\n[\"b\", 2]\n");
    }
}

/// A log rotated under the same name: the new file is longer than the offset the job read the
/// old one to. Resumed there, its first lines were never read (and a shorter one stopped the
/// job for good); now the start refuses it, naming the file, before anything is read.
#[test]
fn a_file_replaced_under_the_same_name_is_refused_not_resumed_at_the_old_offset() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.csv");
    let job = job(dir.path(), "");
    append(&input, "a,1\nb,2\n");
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(status.success(), "{log}");
    // Appended to: the same file, read on.
    append(&input, "c,3\n");
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(status.success(), "{log}");
    assert_eq!(trace_ids(&dir.path().join("out")).len(), 3);
    std::fs::write(&input, "x,10\ny,20\nz,30\nw,40\n").unwrap();
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(!status.success(), "a replaced file was resumed: {log}");
    assert!(
        log.contains("is not the file the job read to byte 12:") && log.contains("app.csv"),
        "{log}"
    );
    let ids = trace_ids(&dir.path().join("out"));
    assert_eq!(ids.len(), 3, "nothing of the new file was written: {ids:?}");
}

/// A log rotated under the job while it runs, after the job read it: a failed commit rewinds
/// the partition past its first commit, and the file opened again is another one. It was read
/// on from the old file's offset (the new file's start never read, its rest committed as the
/// old one's, and the next start refused for good); now the run fails, naming the file,
/// before anything of the new file is read.
#[test]
fn a_file_rotated_while_the_job_runs_is_not_read_on_after_a_rewind() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.csv");
    // Chunks of about 1 KiB, each committed: the second commit fails.
    let job = job(dir.path(), "chunk_bytes = \"1KiB\"\n");
    append(&job, "[sink.rotation]\nmax_rows = 1\n");
    let lines =
        |prefix: &str| -> String { (0..400).map(|i| format!("{prefix}{i:04},{i}\n")).collect() };
    append(&input, &lines("old"));
    // The worker is held until the source has read the file to its end.
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let log = dir.path().join("run.log");
    let fault = format!("hold_worker:@{},fail_commit:2", hold.display());
    let run = KillOnDrop::new(crate::kafka::spawn_with(
        "run",
        &job,
        &log,
        &[
            ("SLUICE_FAULT", &fault),
            ("SLUICE_LOG", "info,sluice::source::file=debug"),
        ],
    ));
    let read = crate::kafka::wait_log(&log, "read to its end", 1, 60);
    assert!(read.contains("read to its end"), "{read}");
    std::fs::rename(&input, dir.path().join("app.csv.1")).unwrap();
    append(&input, &lines("new"));
    std::fs::remove_file(&hold).unwrap();
    let mut run = run;
    let status = wait_exit(run.child(), "the run", 60);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "the run went on: {text}");
    assert!(
        text.contains("replaced or rewritten while the job read it"),
        "{text}"
    );
    let ids = trace_ids(&dir.path().join("out"));
    assert!(
        !ids.is_empty() && ids.keys().all(|id| id.starts_with("old")),
        "rows of the new file were written as the old one's: {ids:?}"
    );
}
