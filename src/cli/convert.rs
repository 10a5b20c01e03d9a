//! `sluice convert`: one input file (or stdin) into one output file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};

use sluice::convert::{self, ConvertJob, Progress};
use sluice::decode::DecodeOptions;
use sluice::format::{Codec, Dictionary, FormatKind, FormatOptions, ParquetEncodings};
use sluice::input::InputSource;
use sluice::schema::RepoSchema;
use sluice::store::Destination;

#[derive(Clone, Copy, ValueEnum)]
enum InputFormat {
    Json,
    Csv,
    Tsv,
    Text,
}

#[derive(Clone, Copy, ValueEnum)]
enum DictionaryArg {
    Auto,
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum EncodingsArg {
    Delta,
    Plain,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The repo schema file (schemas/<repo>.toml).
    #[arg(long)]
    schema: PathBuf,
    /// Input file (plain or gzip, detected by content), or `-` for stdin.
    #[arg(long)]
    input: String,
    /// Input record format; by default from the file name (.csv, .tsv, .txt/.log), else json.
    #[arg(long, value_enum)]
    input_format: Option<InputFormat>,
    /// CSV input: the field delimiter, one ASCII character (default `,`). Text input: split
    /// each line on this string into the schema's fields.
    #[arg(long)]
    delimiter: Option<String>,
    /// CSV/TSV input has no header row: columns are the schema's fields in order.
    #[arg(long)]
    no_input_header: bool,
    /// Output format: parquet, orc, json, csv, tsv or text; by default from the output's file
    /// name (.parquet, .orc, .jsonl/.json, .csv, .tsv, .txt, each maybe with .gz), else
    /// parquet.
    #[arg(long)]
    format: Option<String>,
    /// Codec: zstd[:level], snappy, gzip[:level], lz4, zlib[:level], none. Defaults: parquet
    /// and orc zstd; a text format (json, csv, tsv, text) gzip:1 when the output's file name
    /// ends in `.gz`, none when it names a file without it, and for an output folder json
    /// gzip:1, csv/tsv/text none.
    #[arg(long)]
    compression: Option<String>,
    /// Output folder URL (`file:///data/out/`, a local path) or a file URL with extension.
    #[arg(long, default_value = "file://./out/")]
    output: String,
    /// Where dead letters go (default: `<output folder>/_dead_letters/`).
    #[arg(long)]
    dead_letters: Option<String>,
    /// Replace an existing output file.
    #[arg(long)]
    overwrite: bool,
    /// Parquet: rows per row group.
    #[arg(long, default_value_t = sluice::format::ROW_GROUP_ROWS)]
    row_group_rows: usize,
    /// Parquet: dictionary encoding (auto: only columns with few distinct values).
    #[arg(long, value_enum, default_value = "auto")]
    dictionary: DictionaryArg,
    /// Parquet: value encodings (delta: timestamps and strings without a dictionary
    /// delta-encoded, read by pyarrow, DuckDB, polars, Trino, Spark 3.4+; plain: PLAIN and
    /// dictionaries only, for every reader).
    #[arg(long, value_enum, default_value = "delta")]
    parquet_encodings: EncodingsArg,
    /// Parquet: do not write column statistics.
    #[arg(long)]
    no_statistics: bool,
    /// Parquet: data page version (1 is read by every engine).
    #[arg(long, default_value_t = 1)]
    parquet_page_version: u8,
    /// ORC: stripe size in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    stripe_bytes: usize,
    /// CSV/TSV output: no header row.
    #[arg(long)]
    no_output_header: bool,
    /// Keep only rows where this SQL condition holds, e.g. `status >= 500 AND region = 'eu'`.
    #[arg(long)]
    filter: Option<String>,
    /// An output column: a field's name, or a SQL expression with an alias, e.g.
    /// `lower(method) AS method` (repeat for each column; applied after --filter).
    #[arg(long)]
    select: Vec<String>,
    /// A whole `SELECT ... FROM input [WHERE ...]` over each batch (applied last).
    #[arg(long)]
    sql: Option<String>,
    /// Rows a stage fails on (e.g. a bad cast): dead_letter, drop or fail.
    #[arg(long, default_value = "dead_letter")]
    on_error: String,
    /// Decoder threads, and encoder threads for the output (default: the number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Splits an output URL into (destination folder URL, file name). A last segment with an
/// extension names the file; otherwise the URL is a folder and the name is derived.
fn split_output(url: &str, default_name: &str) -> (String, String) {
    let trimmed = url.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or("");
    let local_dir = !url.contains("://") && Path::new(url).is_dir();
    let has_extension = Path::new(last).extension().is_some();
    let is_file = !url.ends_with('/') && !local_dir && has_extension;
    if is_file {
        let folder = &trimmed[..trimmed.len() - last.len()];
        (folder.to_string(), last.to_string())
    } else {
        (format!("{trimmed}/"), default_name.to_string())
    }
}

/// A flag SIGINT and SIGTERM set: the conversion stops at its next chunk and removes what it
/// wrote (a temporary file left behind is a file readers of the folder fail on). A second
/// signal ends the process at once, and so does the first when the conversion has not
/// stopped within [`STOP_GRACE`] (a read waiting on a quiet pipe is not cut short by it).
fn stop_on_signals() -> Result<Arc<std::sync::atomic::AtomicBool>> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let watched = stop.clone();
    std::thread::Builder::new()
        .name("stop-watch".into())
        .spawn(move || {
            while !watched.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            eprintln!("asked to stop: the conversion stops at its next chunk");
            std::thread::sleep(STOP_GRACE);
            eprintln!(
                "error: stopped (a signal), and the conversion did not stop within {} s (its input did not answer): its temporary file may be left",
                STOP_GRACE.as_secs()
            );
            std::process::exit(130);
        })
        .context("starting the signal watch")?;
    Ok(stop)
}

/// How long a conversion asked to stop may take to stop at its next chunk.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The output's format: `--format`, else the output file name's extension (`.gz` aside),
/// else Parquet. A file name of another format than `--format` is refused: its readers would
/// take the bytes for what the name says (Parquet in `x.csv`).
fn output_kind(asked: &Option<String>, output_url: &str) -> Result<FormatKind> {
    let (_, name) = split_output(output_url, "");
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gz").unwrap_or(&lower);
    let named: Option<FormatKind> = Path::new(stem)
        .extension()
        .and_then(|e| e.to_str())
        .and_then(|e| e.parse().ok());
    let kind = match (asked, named) {
        (None, None) if lower.ends_with(".gz") => bail!(
            "--output {name}: `.gz` follows the format's extension (`{stem}.jsonl.gz`, `{stem}.csv.gz`), or give --format"
        ),
        (None, n) => n.unwrap_or(FormatKind::Parquet),
        (Some(a), n) => {
            let kind: FormatKind = a.parse()?;
            match n {
                Some(n) if n != kind => bail!(
                    "--output {name} names a {} file, but --format is {}: its readers would take \
                     the bytes for {}. Name the output for its format, or leave --format out",
                    n.name(),
                    kind.name(),
                    n.name()
                ),
                _ => kind,
            }
        }
    };
    if lower.ends_with(".gz") && matches!(kind, FormatKind::Parquet | FormatKind::Orc) {
        bail!("--output {name}: Parquet and ORC are compressed inside the file (--compression), not gzip around it: name it without `.gz`");
    }
    Ok(kind)
}

/// The codec of a text output (JSON lines, CSV, TSV, text) named as a file: gzip where the
/// name ends in `.gz`, else none, unless `--compression` says; one that says otherwise than
/// the name is refused (gzip bytes in `x.jsonl`, or plain text in `x.csv.gz`).
fn output_codec(kind: FormatKind, asked: Option<Codec>, output_url: &str) -> Result<Option<Codec>> {
    let (_, name) = split_output(output_url, "");
    if name.is_empty() || matches!(kind, FormatKind::Parquet | FormatKind::Orc) {
        return Ok(asked);
    }
    let gz = name.to_ascii_lowercase().ends_with(".gz");
    match asked {
        None => Ok(Some(if gz { Codec::Gzip(1) } else { Codec::None })),
        Some(c) if matches!(c, Codec::Gzip(_)) == gz => Ok(Some(c)),
        Some(c) => bail!(
            "--output {name} {}, but --compression is {c:?}: name the output for its \
             compression (`.gz` for gzip), or leave --compression out",
            if gz {
                "names a gzip file"
            } else {
                "names a file that is not gzip"
            }
        ),
    }
}

/// `file://./out/` is accepted as a path relative to the current folder.
fn local_relative(url: &str) -> String {
    match sluice::config::file_url_path(url) {
        Some(rest) if !rest.starts_with('/') => rest.to_string(),
        _ => url.to_string(),
    }
}

pub fn run_convert(a: ConvertArgs) -> Result<()> {
    // Warnings (a header without the schema's fields, damage passed over) reach stderr; the
    // summary line is the conversion's report.
    crate::init_logs_at(false, "warn");
    keep_freed_memory();
    let schema = Arc::new(RepoSchema::load(&a.schema)?);
    let input = InputSource::parse(&a.input);
    if let InputSource::File(p) = &input {
        let Ok(meta) = std::fs::metadata(p) else {
            bail!("input file {} does not exist", p.display());
        };
        // A device reads for ever (`/dev/zero`: one over-long line skipped without end) and a
        // folder not at all; a pipe (`<(zcat …)`) is read as standard input is.
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_dir() || t.is_char_device() || t.is_block_device() || t.is_socket() {
            bail!(
                "input {} is not a file (a folder or a device): give a file, a pipe, or - for \
                 standard input",
                p.display()
            );
        }
    }
    let format = match a.input_format.unwrap_or_else(|| guess_input(&a.input)) {
        InputFormat::Json => "json",
        InputFormat::Csv => "csv",
        InputFormat::Tsv => "tsv",
        InputFormat::Text => "text",
    };
    let kind = sluice::decode::input_kind(format, a.delimiter.as_deref(), !a.no_input_header)
        .map_err(|e| anyhow::anyhow!("--delimiter: {e}"))?;
    let format_kind = output_kind(&a.format, &local_relative(&a.output))?;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let format = FormatOptions {
        kind: format_kind,
        codec: output_codec(
            format_kind,
            a.compression
                .as_deref()
                .map(Codec::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--compression: {e}"))?,
            &local_relative(&a.output),
        )?,
        row_group_rows: a.row_group_rows,
        dictionary: match a.dictionary {
            DictionaryArg::Auto => Dictionary::Auto,
            DictionaryArg::On => Dictionary::On,
            DictionaryArg::Off => Dictionary::Off,
        },
        parquet_encodings: match a.parquet_encodings {
            EncodingsArg::Delta => ParquetEncodings::Delta,
            EncodingsArg::Plain => ParquetEncodings::Plain,
        },
        statistics: !a.no_statistics,
        parquet_page_version: a.parquet_page_version,
        stripe_bytes: a.stripe_bytes,
        header: !a.no_output_header,
        // Parquet's columns go to the pool from three threads on. On two cores the decoders'
        // small batches (1 MiB chunks) encode faster on this thread, beside the two decoders:
        // 0.63 s against 0.67 s, 5 % less CPU (1M web-log events).
        parallel: format_kind != FormatKind::Parquet || threads > 2,
        micros: false,
    };

    let output_url = local_relative(&a.output);
    let default_name = format!("{}.{}", input.stem(), format.extension());
    let (folder, name) = split_output(&output_url, &default_name);
    // Named after the output's whole name (`a.parquet.jsonl`): conversions into two outputs
    // of one folder each keep their own dead letters, whether their inputs share a name or
    // their outputs differ only by format (named after the input, or the output less its
    // extension, one replaced the other's, or with `--overwrite` and no dead letters of its
    // own deleted them). An output name too long for that is cut with a hash of it whole.
    let dl_default = sluice::sink::paths::file_name(&name, "", "", ".jsonl");
    let (dl_folder, dl_name) = match &a.dead_letters {
        Some(u) => split_output(&local_relative(u), &dl_default),
        None => (format!("{folder}_dead_letters/"), dl_default),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let output = Destination::parse(&folder, runtime.handle().clone())?;
    let dead_letters = Destination::parse(&dl_folder, runtime.handle().clone())?;
    let same = |a: String, b: String| a == b || same_file(Path::new(&a), Path::new(&b));
    if same(output.display(&name), dead_letters.display(&dl_name)) {
        bail!(
            "--dead-letters names the output file itself ({}{name}): give the dead letters another folder or name",
            output.url()
        );
    }
    // Writing over the input would destroy it (with --overwrite), or tell the user to.
    if let InputSource::File(input) = &input {
        for (what, dest, rel) in [
            ("--output", &output, &name),
            ("--dead-letters", &dead_letters, &dl_name),
        ] {
            if dest
                .local_root()
                .is_some_and(|root| same_file(input, &root.join(rel)))
            {
                bail!(
                    "{what} names the input file itself ({}): give it another folder or name",
                    input.display()
                );
            }
        }
    }
    // The pool the output is encoded on (Parquet columns, gzip blocks): as many threads as
    // decoders, named for profilers and `top -H`.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("encode-{i}"))
        .build_global();
    let stage = |filter: Option<String>, select: Option<Vec<String>>, sql: Option<String>| {
        sluice::stage::StageSpec {
            name: None,
            filter,
            select,
            sql,
        }
    };
    let mut stages = Vec::new();
    if let Some(f) = a.filter.clone() {
        stages.push(stage(Some(f), None, None));
    }
    if !a.select.is_empty() {
        stages.push(stage(None, Some(a.select.clone()), None));
    }
    if let Some(q) = a.sql.clone() {
        stages.push(stage(None, None, Some(q)));
    }
    let bar = progress_bar(a.quiet);
    let progress: Option<Box<dyn FnMut(Progress) + Send>> = bar.clone().map(|bar| {
        Box::new(move |p: Progress| {
            if let Some(len) = p.raw_len {
                bar.set_length(len);
            }
            bar.set_position(p.raw_bytes);
            bar.set_message(format!("{} rows", p.rows));
        }) as Box<dyn FnMut(Progress) + Send>
    });
    let job = ConvertJob {
        schema,
        input,
        decode: DecodeOptions {
            kind,
            orc: format.kind == sluice::format::FormatKind::Orc,
            partition_columns: Vec::new(),
            ..Default::default()
        },
        format,
        output,
        output_rel: name,
        dead_letters,
        dead_letters_rel: dl_name,
        overwrite: a.overwrite,
        stages,
        on_error: sluice::stage::OnError::parse(&a.on_error)
            .map_err(|e| anyhow!("--on-error {e}"))?,
        threads,
        progress,
        stop: Some(stop_on_signals()?),
    };
    let result = convert::run(job);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = result?;
    println!("{}", summary.line());
    // Nothing converted is a failure a script must see (a CSV file read as JSON, say).
    if summary.records > 0 && summary.dead_letters == summary.records {
        bail!(
            "every one of the {} records is a dead letter{}: the output holds no rows. Check the input's format (--input-format) against the schema, then convert again with --overwrite",
            summary.records,
            summary
                .dead_letter_file
                .as_ref()
                .map_or(String::new(), |f| format!(" (in {f})"))
        );
    }
    Ok(())
}

/// Whether `a` and `b` are one file: one path, or (when both exist) one file by another
/// name (a link, a symbolic link, `..`).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(x), Ok(y)) = (std::path::absolute(a), std::path::absolute(b)) {
        if x == y {
            return true;
        }
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// A conversion allocates and frees the same buffers chunk after chunk. glibc's defaults give
/// blocks above its (moving) mmap threshold back to the kernel when freed, and trim the heap,
/// so the next chunk faults in zeroed pages again. Keeping freed memory (up to 256 MiB at a
/// heap's top; blocks under 32 MiB from the heap) measured 4 % less time on one core and 7 % on
/// two, 8 % less CPU, for 2-3 MiB more peak RSS (1M web-log events). Jobs keep the defaults:
/// they run for months and give memory back after a burst.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread of the
    // conversion starts, and a refused value (its return 0) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn guess_input(input: &str) -> InputFormat {
    let lower = input.to_ascii_lowercase();
    let name = lower.strip_suffix(".gz").unwrap_or(&lower);
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("csv") => InputFormat::Csv,
        Some("tsv") => InputFormat::Tsv,
        Some("txt") | Some("log") => InputFormat::Text,
        _ => InputFormat::Json,
    }
}

fn progress_bar(quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
        )
        .expect("valid template"),
    );
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_urls_split_into_folder_and_name() {
        assert_eq!(
            split_output("file:///data/out/", "e.parquet"),
            ("file:///data/out/".into(), "e.parquet".into())
        );
        assert_eq!(
            split_output("file:///data/out", "e.parquet"),
            ("file:///data/out/".into(), "e.parquet".into())
        );
        assert_eq!(
            split_output("file:///data/x.parquet", "e.parquet"),
            ("file:///data/".into(), "x.parquet".into())
        );
        assert_eq!(
            split_output("/tmp/.hidden", "e.parquet"),
            ("/tmp/.hidden/".into(), "e.parquet".into())
        );
    }
}
