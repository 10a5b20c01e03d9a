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
    let log = run_ok(&job);
    assert!(log.contains("left for the next run"), "{log}");
    let first = trace_ids(&dir.path().join("out"));
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(!first.contains_key("c"), "{first:?}");
    append(&input, "5\nd,4\n");
    let log = run_ok(&job);
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
    let log = run_ok(&job);
    assert!(!log.contains("partial_last_line"), "{log}");
    if let Some(rows) = rows(dir.path()) {
        assert_eq!(rows, "[\"a\", 1]\n[\"b\", 2]\n");
    }
    // The line was still being written: the next run says what became of it, and what to
    // set (it read "7" as a row of its own without a word).
    append(&input, "7\nc,3\n");
    let log = run_ok(&job);
    assert!(
        log.contains("had no line break then") && log.contains("partial_last_line = \"leave\""),
        "{log}"
    );
}

/// A CSV file whose last record's quote is still open where it ends, after a line break
/// inside it: taken as a record by default, and what is appended read as records of their
/// own from there (here the row `c"`, 2), which nothing told. The run that takes it says so.
#[test]
fn a_csv_input_ending_inside_a_quote_is_named_when_taken() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.csv");
    let taking = job(dir.path(), "");
    append(&input, "a,1\n\"b\n");
    let log = run_ok(&taking);
    assert!(log.contains("ends inside a CSV quote"), "{log}");
    append(&input, "c\",2\n");
    let log = run_ok(&taking);
    assert!(!log.contains("ends inside a CSV quote"), "{log}");
    // Left for the next run instead, the record is read whole once its quote closes.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.csv");
    let leaving = job(dir.path(), "partial_last_line = \"leave\"\n");
    append(&input, "a,1\n\"b\n");
    let log = run_ok(&leaving);
    assert!(!log.contains("ends inside a CSV quote"), "{log}");
    append(&input, "c\",2\n");
    run_ok(&leaving);
    if let Some(rows) = rows(dir.path()) {
        assert_eq!(rows, "[\"a\", 1]\n[\"b\\nc\", 2]\n");
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
    run_ok(&job);
    // Appended to: the same file, read on.
    append(&input, "c,3\n");
    run_ok(&job);
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

/// Two processes of one job name and destination, each with its own state folder and its own
/// `app.csv`. B's check before its claim saw A's record and no commit, and replaced the
/// record with its own file's; A then committed; B, claiming, resumed at A's offset in its
/// own file (its first lines never read, and the record now said B's file was the one read).
/// Now B replaces another file's record only under its claim, where it sees A's commit, and
/// is refused, naming the file.
#[test]
fn a_start_paused_before_its_claim_does_not_take_another_files_commits_as_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let schema = dir.path().join("app.toml");
    std::fs::write(
        &schema,
        "name = \"app\"\n[[fields]]\nname = \"trace_id\"\ntype = \"string\"\nnullable = false\n\
         [[fields]]\nname = \"n\"\ntype = \"int64\"\n",
    )
    .unwrap();
    let side = |name: &str, prefix: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        let lines: String = (0..50).map(|i| format!("{prefix}{i:03},{i}\n")).collect();
        std::fs::write(d.join("app.csv"), lines).unwrap();
        let job = d.join("job.toml");
        std::fs::write(
            &job,
            format!(
                "[job]\nname = \"shared\"\nstate_dir = \"state\"\n[source]\nkind = \"file\"\n\
                 paths = [\"app.csv\"]\nformat = \"csv\"\nheader = false\n\
                 [repo]\nschema = {:?}\n[sink]\nurl = \"file://{}\"\nformat = \"parquet\"\n",
                schema.display().to_string(),
                out.display()
            ),
        )
        .unwrap();
        job
    };
    let (job_a, job_b) = (side("a", "a"), side("b", "b"));
    // A records its file and holds its worker: nothing committed yet.
    let hold_a = dir.path().join("hold-a");
    let log_a = dir.path().join("a.log");
    let mut a = run_held(&job_a, &log_a, &hold_a, "hold_worker");
    said(&log_a, "an item is in the channel");
    // B checks (A's record, no commit) and is held before its claim.
    let hold_b = dir.path().join("hold-b");
    let log_b = dir.path().join("b.log");
    let mut b = run_held(&job_b, &log_b, &hold_b, "hold_before_claims");
    said(&log_b, "holding at hold_before_claims");
    // A commits its file whole and ends.
    std::fs::remove_file(&hold_a).unwrap();
    let status = wait_exit(a.child(), "A", 60);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log_a).unwrap()
    );
    // B claims: A's commit is there.
    std::fs::remove_file(&hold_b).unwrap();
    let status = wait_exit(b.child(), "B", 60);
    let text = std::fs::read_to_string(&log_b).unwrap();
    assert!(
        !status.success(),
        "B resumed in its own file at A's offset: {text}"
    );
    assert!(
        text.contains("is not the file the job read to byte"),
        "{text}"
    );
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), 50, "{ids:?}");
    assert!(ids.keys().all(|id| id.starts_with('a')), "{ids:?}");
}

/// The record of a file's start in `files/` is replaced after the job committed (as a process
/// fenced between its claim and its write of the record could): a start with another file of
/// that name passed the record's check and resumed at the committed offset in its own file.
/// The checkpoint names the file its writer read, under its term as its offset is: that start
/// is refused. The job's own file is refused too while the record names the other (both must
/// hold: a loud stop, not a wrong read); once the record is removed, it resumes, checked
/// against its checkpoint, and its record is written again.
#[test]
fn a_checkpoint_names_the_file_its_writer_read() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.csv");
    let job = job(dir.path(), "");
    append(&input, "a,1\nb,2\n");
    run_ok(&job);
    let record = dir.path().join("out/_sluice/grow/files/app-0.json");
    let ours = std::fs::read(&record).unwrap();
    // Another file's record, written late.
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "x,10\ny,20\nz,30\n").unwrap();
    let bytes = std::fs::read(&other).unwrap();
    let forged = serde_json::json!({"path": other.display().to_string(), "len": bytes.len(), "crc": crc32fast::hash(&bytes)});
    std::fs::write(&record, forged.to_string()).unwrap();
    std::fs::rename(&input, dir.path().join("app.csv.1")).unwrap();
    std::fs::copy(&other, &input).unwrap();
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(
        !status.success(),
        "another file resumed at the job's offset: {log}"
    );
    assert!(log.contains("the file its checkpoint records"), "{log}");
    assert_eq!(trace_ids(&dir.path().join("out")).len(), 2);
    // The job's own file, grown: refused while the record names the other, then resumed.
    std::fs::rename(dir.path().join("app.csv.1"), &input).unwrap();
    append(&input, "c,3\n");
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(!status.success() && log.contains("other.csv"), "{log}");
    std::fs::remove_file(&record).unwrap();
    run_ok(&job);
    assert_eq!(trace_ids(&dir.path().join("out")).len(), 3);
    let now: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let ours: serde_json::Value = serde_json::from_slice(&ours).unwrap();
    assert_eq!(now["path"], ours["path"]);
    let whole = std::fs::read(&input).unwrap();
    assert_eq!(now["crc"], crc32fast::hash(&whole));
}

/// A checkpoint names the file as its run found it at its start: a few bytes, when the file
/// was that short then. The record of the file's start grows with the file (a later start
/// that read nothing complete, its last line still being written, recorded 4 KiB). A file
/// rotated under the name that begins with the same few bytes passed the checkpoint's check
/// and skipped the record's; both must hold.
#[test]
fn a_checkpoint_of_a_short_file_does_not_vouch_for_another_beginning_alike() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.csv");
    let job = job(dir.path(), "partial_last_line = \"leave\"\n");
    append(&input, "a,1\n");
    run_ok(&job);
    append(&input, &format!("b,{}", "9".repeat(5000)));
    let log = run_ok(&job);
    assert!(log.contains("left for the next run"), "{log}");
    std::fs::rename(&input, dir.path().join("app.csv.1")).unwrap();
    append(&input, &format!("a,1\nz,{}\n", "8".repeat(5000)));
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(!status.success(), "a rotated file resumed: {log}");
    assert!(
        log.contains("is not the file the job read to byte 4"),
        "{log}"
    );
}

/// `text` as one gzip member.
fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

/// A file rewritten in place whose first 4 KiB are those of the file read (a generated
/// export that begins with the same rows, a log truncated and written again): the start's
/// check of the file's first bytes passes, and the run resumed at the old offset, inside
/// the new file's records, without a word. Now the bytes before the offset, which the
/// checkpoint records, are compared too: plain files (read there by seeking) and gzip files
/// (decompressed up to it).
#[test]
fn a_file_rewritten_in_place_beginning_alike_is_refused_at_its_resume_offset() {
    let common: String = (0..500).map(|i| format!("p{i:04},{i}\n")).collect();
    assert!(common.len() > 4096);
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("app.csv");
        let job = job(dir.path(), "");
        let write = |text: &str| {
            let bytes = if gz {
                gzip(text)
            } else {
                text.as_bytes().to_vec()
            };
            std::fs::write(&input, bytes).unwrap();
        };
        let first = format!("{common}b1,1\nb2,2\n");
        write(&first);
        run_ok(&job);
        // Appended to, as a log is: the same file, read on.
        write(&format!("{first}b3,3\n"));
        run_ok(&job);
        assert_eq!(trace_ids(&dir.path().join("out")).len(), 503);
        // Written again, in place: the same first 5,000 bytes, other rows after them, and
        // the line the second run read (all it read) where it was.
        write(&format!("{common}c1,1\nc2,2\nb3,3\nc4,40\n"));
        let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
        assert!(
            !status.success(),
            "gzip {gz}: a rewritten file was resumed: {log}"
        );
        let at = first.len() + 5;
        assert!(
            log.contains(&format!("is not the file the job read to byte {at}: the"))
                && log.contains("bytes before that offset differ"),
            "gzip {gz}: {log}"
        );
        let ids = trace_ids(&dir.path().join("out"));
        assert_eq!(
            ids.len(),
            503,
            "gzip {gz}: nothing of the new rows: {ids:?}"
        );
    }
}

/// With `leave`, a CSV file whose header is still being written (its line not ended; a gzip
/// file whose writer has flushed nothing but the gzip header) has no header yet, first in
/// `paths` or not: the other files are read, and the next run reads it whole. Before, the start took the cut line for
/// the header (a required field with no column) or the cut gzip for damage, and refused the
/// whole job at every start until the writer got further.
#[test]
fn a_csv_header_still_being_written_is_left_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.toml"),
        "name = \"app\"\n[[fields]]\nname = \"trace_id\"\ntype = \"string\"\nnullable = false\n\
         [[fields]]\nname = \"n\"\ntype = \"int64\"\nnullable = false\n",
    )
    .unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"grow\"\nstate_dir = \"state\"\n[source]\nkind = \"file\"\n\
             paths = [\"b.csv\", \"a.csv\", \"c.csv.gz\"]\nformat = \"csv\"\n\
             partial_last_line = \"leave\"\n[repo]\nschema = \"app.toml\"\n\
             [sink]\nurl = \"file://{}/out\"\nformat = \"parquet\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    append(&dir.path().join("a.csv"), "trace_id,n\na,1\n");
    append(&dir.path().join("b.csv"), "trace_id");
    // A gzip writer that has flushed its header alone: ten bytes, no deflate block yet.
    let whole = gzip("trace_id,n\nc,3\n");
    std::fs::write(dir.path().join("c.csv.gz"), &whole[..10]).unwrap();
    run_ok(&job);
    let ids = trace_ids(&dir.path().join("out"));
    assert_eq!(ids.keys().collect::<Vec<_>>(), ["a"], "{ids:?}");
    append(&dir.path().join("b.csv"), ",n\nb,2\n");
    std::fs::write(dir.path().join("c.csv.gz"), &whole).unwrap();
    run_ok(&job);
    let mut ids: Vec<_> = trace_ids(&dir.path().join("out")).into_iter().collect();
    ids.sort();
    assert_eq!(
        ids,
        [("a".into(), 1), ("b".into(), 1), ("c".into(), 1)],
        "each once"
    );
}
