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
