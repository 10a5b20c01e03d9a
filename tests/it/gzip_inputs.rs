//! gzip file inputs: a roll-back to a checkpoint (offsets count decompressed bytes).

use std::io::Write;
use std::path::Path;

use crate::helpers::*;
use crate::run::{assert_exactly_once, broken, job_file, run_to_end, write_events};

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
}
