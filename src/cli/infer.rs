//! `sluice schema infer`: reads a sample (JSON lines or CSV/TSV with a header, plain or gzip)
//! and prints the repo schema `sluice::schema::infer` makes of it.

use anyhow::{bail, Context, Result};

/// `schema infer`: reads up to `rows` records of the sample and prints the schema.
pub fn infer_schema(input: &str, name: Option<String>, rows: u64) -> Result<()> {
    use sluice::decode::framing::Chunk;
    use sluice::input::{ChunkReader, InputSource};
    let source = InputSource::parse(input);
    let lower = input.to_ascii_lowercase();
    let delimiter = if lower.ends_with(".csv") || lower.ends_with(".csv.gz") {
        Some(b',')
    } else if lower.ends_with(".tsv") || lower.ends_with(".tsv.gz") {
        Some(b'\t')
    } else {
        None
    };
    let mut reader = ChunkReader::open(&source, delimiter.is_some())
        .with_context(|| format!("reading {input}"))?;
    let mut inf = sluice::schema::infer::Inference::default();
    let mut header: Option<Vec<String>> = None;
    let mut chunk = Chunk::default();
    'read: while inf.rows() + inf.skipped() < rows && reader.next_chunk(&mut chunk)? {
        match delimiter {
            None => {
                for line in chunk.data.split(|b| *b == b'\n') {
                    if inf.rows() + inf.skipped() >= rows {
                        break 'read;
                    }
                    inf.json_line(line);
                }
            }
            Some(d) => {
                let mut csv = csv::ReaderBuilder::new()
                    .delimiter(d)
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(chunk.data.as_slice());
                for record in csv.records() {
                    let record = record.with_context(|| format!("reading {input} as CSV"))?;
                    let values: Vec<String> = record.iter().map(str::to_string).collect();
                    match &header {
                        None => header = Some(values),
                        Some(h) => {
                            if inf.rows() >= rows {
                                break 'read;
                            }
                            inf.csv_record(h, &values);
                        }
                    }
                }
            }
        }
    }
    if inf.rows() == 0 {
        bail!("{input}: no records to infer a schema from");
    }
    let name = name.unwrap_or_else(|| {
        let stem = source.stem();
        let clean: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if clean.starts_with(|c: char| c.is_ascii_alphabetic()) {
            clean
        } else {
            format!("repo_{clean}")
        }
    });
    print!("{}", inf.to_toml(&name, input));
    Ok(())
}
