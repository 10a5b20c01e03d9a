//! Encoding decoded nginx_access batches with each output format into memory.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::format::{create_writer, Codec, FormatKind, FormatOptions};
use sluice::store::Destination;

mod common;

fn writers(c: &mut Criterion) {
    let rows = 65_536;
    let batches = common::batches(rows);
    let schema = batches[0].schema();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = Destination::parse("memory:///bench", rt.handle().clone()).unwrap();
    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::Elements(rows as u64));
    group.sample_size(10);
    let cases = [
        ("parquet_zstd1", FormatKind::Parquet, None),
        ("parquet_snappy", FormatKind::Parquet, Some(Codec::Snappy)),
        ("parquet_none", FormatKind::Parquet, Some(Codec::None)),
        ("orc_zstd", FormatKind::Orc, None),
        ("orc_snappy", FormatKind::Orc, Some(Codec::Snappy)),
        ("json_gzip1", FormatKind::Json, None),
        ("json_plain", FormatKind::Json, Some(Codec::None)),
        ("csv", FormatKind::Csv, None),
    ];
    for (name, kind, codec) in cases {
        let opts = FormatOptions {
            kind,
            codec,
            ..Default::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let file = dest.create("x").unwrap();
                let mut w = create_writer(&opts, schema.clone(), file.clone()).unwrap();
                for batch in &batches {
                    w.write(batch).unwrap();
                }
                w.finish().unwrap();
                file.abort().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, writers);
criterion_main!(benches);
