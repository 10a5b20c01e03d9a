//! gzip file inputs: a roll-back to a checkpoint (offsets count decompressed bytes), and
//! damaged gzip data (cut short) in a file job and in `convert`: the records before the damage
//! are kept, the damage is one dead letter, and the other files commit.

use std::io::Write;
use std::path::Path;

use crate::helpers::*;
use crate::run::{
    assert_exactly_once, broken, dead_letter_count, job_file, run_to_end, write_events,
};

/// `write_events(_, n, start)` written gzip-compressed to `path`, cut to `keep` of its
/// compressed bytes (a fraction; 1.0 keeps it whole).
fn write_gz_events(path: &Path, n: usize, start: usize, keep: f64) {
    let plain = path.with_extension("plain");
    write_events(&plain, n, start);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    let bytes = gz.finish().unwrap();
    std::fs::remove_file(&plain).unwrap();
    std::fs::write(path, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
}

/// The reasons of the dead letters under `dir` that name damaged gzip data.
fn damage_reasons(dir: &Path) -> Vec<String> {
    files_under(dir, false)
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .map(|d| d["reason"].as_str().unwrap().to_string())
        .filter(|r| r.contains("cannot be read past byte"))
        .collect()
}

/// How many of the events `start..start + n` are in `counts`, checking that they are a prefix
/// (the records before the damage), each once.
fn prefix_of(counts: &std::collections::HashMap<String, usize>, start: usize, n: usize) -> usize {
    let k = (start..start + n)
        .take_while(|i| counts.contains_key(&format!("t{i}")))
        .count();
    let later = (start + k..start + n).filter(|i| counts.contains_key(&format!("t{i}")));
    assert_eq!(later.count(), 0, "only the records before the damage");
    assert!((start..start + k).all(|i| counts[&format!("t{i}")] == 1));
    k
}

/// `run --from-checkpoint 1` over a gzip input: its checkpoints name decompressed offsets,
/// past the file's compressed length, and the roll-back is made (it was refused: "the source
/// holds only 0..<compressed length>").
#[test]
fn a_gzip_input_rolls_back_to_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl.gz");
    write_gz_events(&a, 6000, 0, 1.0);
    let job = job_file(dir.path(), &[a], "[sink.rotation]\nmax_rows = 1500\n");
    run_to_end(&job);
    let out = dir.path().join("out");
    assert_exactly_once(&out, 6000, broken(0, 6000));
    let parquet = || -> Vec<_> {
        let mut f: Vec<_> = files_under(&out, true)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        f.sort();
        f
    };
    let before = parquet();
    let o = sluice(&["run", job.to_str().unwrap(), "--from-checkpoint", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // The first commit's file stays; the later ones are written again, under new names.
    let after = parquet();
    let kept = after.iter().filter(|p| before.contains(p)).count();
    assert!(kept >= 1 && kept < before.len(), "{before:?} → {after:?}");
    assert_exactly_once(&out, 6000, broken(0, 6000));
    // The file replaced by a shorter one: a roll-back to a checkpoint past its end is refused
    // before anything is deleted (it was made, and every start then failed reading the file).
    write_gz_events(&dir.path().join("a.jsonl.gz"), 500, 0, 1.0);
    let held = parquet();
    // Commit 5 was the roll-back; 6 is the first commit made again.
    let o = sluice(&["run", job.to_str().unwrap(), "--from-checkpoint", "6"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("cannot replay partition"),
        "{err}"
    );
    assert_eq!(parquet(), held, "files deleted by a refused roll-back");
}

/// A file job over a whole gzip file and one cut short: the job ends, the whole file's
/// records and the cut one's before the damage commit, with one dead letter for the damage;
/// a second run writes nothing more and does not fail. (The read error failed the job at
/// every start, with nothing committed.)
#[test]
fn a_cut_gzip_input_is_one_dead_letter_and_the_other_files_commit() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl.gz");
    let cut = dir.path().join("cut.jsonl.gz");
    write_gz_events(&good, 3000, 0, 1.0);
    write_gz_events(&cut, 4000, 3000, 0.5);
    let job = job_file(
        dir.path(),
        &[good, cut.clone()],
        "[sink.rotation]\nmax_rows = 1000\n",
    );
    let text = run_to_end(&job);
    assert!(text.contains("Stopped"), "{text}");
    let out = dir.path().join("out");
    let counts = trace_ids(&out);
    assert_eq!(prefix_of(&counts, 0, 3000), 3000);
    let k = prefix_of(&counts, 3000, 4000);
    assert!(k > 500 && k < 4000, "{k} records of the cut file");
    assert_eq!(counts.len(), 3000 + k);
    let reasons = damage_reasons(&out.join("_dead_letters"));
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains(&cut.display().to_string())
            && reasons[0].contains("incomplete deflate stream")
            && reasons[0].contains("the rest of the file is not read"),
        "{}",
        reasons[0]
    );
    let dead = dead_letter_count(&out);
    // The broken lines among the records read, and the damage.
    assert_eq!(dead, broken(0, 3000) + broken(3000, k) + 1);
    let list = sluice_ok(&["checkpoints", "list", job.to_str().unwrap()]);
    assert!(
        list.contains("good-0: seq") && list.contains("cut-0: seq"),
        "{list}"
    );
    // Again: the cut file resumes past its damage and ends there.
    let text = run_to_end(&job);
    assert!(text.contains("nothing new to export"), "{text}");
    assert_eq!(trace_ids(&out), counts);
    assert_eq!(dead_letter_count(&out), dead);
    assert_files_match_checkpoints(&out, "it");
}

/// `convert` of a gzip file cut short: the records before the damage are converted, the
/// damage is a dead letter, and the run exits 0 as with any dead letter.
#[test]
fn convert_of_a_cut_gzip_file_keeps_the_records_before_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.jsonl.gz");
    write_gz_events(&cut, 4000, 0, 0.5);
    let out = dir.path().join("out");
    let stdout = sluice_ok(&[
        "convert",
        "--schema",
        schema("nginx_access").to_str().unwrap(),
        "--input",
        cut.to_str().unwrap(),
        "--output",
        &format!("file://{}/", out.display()),
    ]);
    let counts = trace_ids(&out);
    let k = prefix_of(&counts, 0, 4000);
    assert!(k > 500 && k < 4000, "{k} records");
    let dead = broken(0, k) + 1;
    assert!(
        stdout.contains(&format!(
            "{} records: {k} rows, {dead} dead letters",
            k + dead
        )),
        "{stdout}"
    );
    assert_eq!(damage_reasons(&out.join("_dead_letters")).len(), 1);
}

/// A file job over a gzip file still being written (`partial_last_line = "leave"`): a run
/// while it is cut short exports the records before the cut, with no dead letter for it; a
/// run once it is whole exports the rest, every record once. (The cut was damage, as under
/// `take`: its dead letter's checkpoint stood past the rest of the file, which no later run
/// read.)
#[test]
fn a_gzip_input_still_being_written_is_read_to_its_end_once_whole() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl.gz");
    write_gz_events(&a, 4000, 0, 0.5);
    let job = job_file(dir.path(), std::slice::from_ref(&a), "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "kind = \"file\"\n",
        "kind = \"file\"\npartial_last_line = \"leave\"\n",
    );
    assert!(text.contains("leave"), "{text}");
    std::fs::write(&job, text).unwrap();
    let log = run_to_end(&job);
    assert!(log.contains("ends inside a member"), "{log}");
    let out = dir.path().join("out");
    let k = prefix_of(&trace_ids(&out), 0, 4000);
    assert!(k > 500 && k < 4000, "{k} records of the cut file");
    assert_eq!(
        dead_letter_count(&out),
        broken(0, k),
        "no dead letter for the cut"
    );
    write_gz_events(&a, 4000, 0, 1.0);
    run_to_end(&job);
    assert_exactly_once(&out, 4000, broken(0, 4000));
    assert!(damage_reasons(&out.join("_dead_letters")).is_empty());
}
