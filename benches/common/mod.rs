//! Shared bench input: the shipped nginx_access fixture repeated to `rows` records.

use std::path::Path;
use std::sync::Arc;

use sluice::decode::{Chunk, DecodeOptions, RecordDecoder};
use sluice::schema::RepoSchema;

pub fn schema() -> Arc<RepoSchema> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/nginx_access.toml");
    Arc::new(RepoSchema::load(&p).expect("shipped schema"))
}

pub fn input(rows: usize) -> Chunk {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nginx_access.jsonl");
    let text = std::fs::read(p).expect("shipped fixture");
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut data = Vec::with_capacity(rows * 350);
    for i in 0..rows {
        data.extend_from_slice(lines[i % lines.len()]);
        data.push(b'\n');
    }
    Chunk {
        data,
        first_line: 1,
        first_offset: 0,
        ..Default::default()
    }
}

#[allow(dead_code)]
pub fn batches(rows: usize) -> Vec<arrow::record_batch::RecordBatch> {
    let mut d = RecordDecoder::new(schema(), DecodeOptions::default(), None).expect("decoder");
    d.decode(&input(rows)).batches
}
