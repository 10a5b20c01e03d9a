//! Files written by sluice in every format, read back by pyarrow and duckdb and compared value
//! by value with the input (see tests/interop/check_outputs.py).

use crate::helpers::*;

#[test]
fn nginx_access_in_every_format_reads_back_identically() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("nginx_access.jsonl");
    let mut files = Vec::new();
    for (format, compression, ext) in [
        ("parquet", "zstd", "parquet"),
        ("parquet", "snappy", "parquet"),
        ("parquet", "gzip:6", "parquet"),
        ("parquet", "lz4", "parquet"),
        ("parquet", "none", "parquet"),
        ("orc", "zstd", "orc"),
        ("orc", "snappy", "orc"),
        ("orc", "zlib", "orc"),
        ("orc", "none", "orc"),
        ("json", "gzip", "jsonl.gz"),
        ("json", "none", "jsonl"),
        ("csv", "none", "csv"),
        ("tsv", "none", "tsv"),
        ("text", "none", "txt"),
    ] {
        let name = format!("{format}-{}.{ext}", compression.replace(':', ""));
        let target = dir.path().join(&name);
        sluice_ok(&[
            "convert",
            "--schema",
            schema("nginx_access").to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--format",
            format,
            "--compression",
            compression,
            "--output",
            &format!("file://{}", target.display()),
        ]);
        files.push(target);
    }
    // Small row groups: several per file.
    let target = dir.path().join("small-groups.parquet");
    sluice_ok(&[
        "convert",
        "--schema",
        schema("nginx_access").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--row-group-rows",
        "300",
        "--dictionary",
        "off",
        "--parquet-page-version",
        "2",
        "--output",
        target.to_str().unwrap(),
    ]);
    files.push(target);
    check_outputs(&py, "nginx", &input, &files);
}

#[test]
fn nested_types_read_back_identically() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("orders.jsonl");
    let mut files = Vec::new();
    for (format, name) in [("parquet", "orders.parquet"), ("json", "orders.jsonl.gz")] {
        let target = dir.path().join(name);
        sluice_ok(&[
            "convert",
            "--schema",
            schema("orders").to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--format",
            format,
            "--output",
            target.to_str().unwrap(),
        ]);
        files.push(target);
    }
    check_outputs(&py, "orders", &input, &files);

    // ORC cannot carry the nested columns: a clear error before any data moves.
    let o = sluice(&[
        "convert",
        "--schema",
        schema("orders").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--format",
        "orc",
        "--output",
        dir.path().join("x.orc").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("orc cannot write field `customer`"), "{err}");
    assert!(!dir.path().join("x.orc").exists());
}

/// `convert` writes gzip JSON lines as one gzip member per batch (encoded in parallel): Python's
/// gzip and DuckDB read the concatenated members as one file, value by value.
#[test]
fn gzip_json_written_in_parallel_blocks_reads_back_identically() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let one = std::fs::read_to_string(fixture("nginx_access.jsonl")).unwrap();
    let input = dir.path().join("nginx_x10.jsonl");
    std::fs::write(&input, one.repeat(10)).unwrap();
    let target = dir.path().join("blocks.jsonl.gz");
    sluice_ok(&[
        "convert",
        "--schema",
        schema("nginx_access").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--format",
        "json",
        "--output",
        target.to_str().unwrap(),
        "--quiet",
    ]);
    let bytes = std::fs::read(&target).unwrap();
    let members = bytes
        .windows(3)
        .filter(|w| w == &[0x1f, 0x8b, 0x08])
        .count();
    assert!(
        members >= 2,
        "{members} gzip member(s): the test needs several"
    );
    check_outputs(&py, "nginx", &input, &[target]);
}
