//! Decoding JSON lines into Arrow batches against the nginx_access schema.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::decode::{DecodeOptions, RecordDecoder};

mod common;

fn decode(c: &mut Criterion) {
    let rows = 65_536;
    let chunk = common::input(rows);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(chunk.data.len() as u64));
    group.sample_size(20);
    group.bench_function("json_nginx_64k_rows", |b| {
        let mut d = RecordDecoder::new(common::schema(), DecodeOptions::default(), None).unwrap();
        b.iter(|| {
            let out = d.decode(&chunk);
            assert_eq!(out.rows(), rows as u64);
        })
    });
    // arrow-json alone: the reference the fast path is checked against.
    group.bench_function("json_nginx_64k_rows_reference", |b| {
        let mut d = RecordDecoder::new(common::schema(), DecodeOptions::default(), None)
            .unwrap()
            .reference_json();
        b.iter(|| {
            let out = d.decode(&chunk);
            assert_eq!(out.rows(), rows as u64);
        })
    });
    // One bad record in every 1,000: the cost of isolating them.
    let mut bad = chunk.clone();
    let mut with_bad = Vec::with_capacity(bad.data.len() + 64 * 70);
    for (i, line) in bad
        .data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        with_bad.extend_from_slice(line);
        with_bad.push(b'\n');
        if i % 1000 == 0 {
            with_bad.extend_from_slice(b"{\"ts\":\"broken\n");
        }
    }
    bad.data = with_bad;
    group.bench_function("json_nginx_64k_rows_0.1pct_bad", |b| {
        let mut d = RecordDecoder::new(common::schema(), DecodeOptions::default(), None).unwrap();
        b.iter(|| {
            let out = d.decode(&bad);
            assert_eq!(out.rows(), rows as u64);
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
