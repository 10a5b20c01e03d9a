//! The `sluice` command line: `run`, `validate`, `checkpoints`, `convert`, `schema`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use std::sync::atomic::AtomicBool;

use sluice::checkpoint::Checkpoints;
use sluice::config::{Job, SourceSection};
use sluice::convert::{self, ConvertJob, Progress};
use sluice::decode::{DecodeOptions, InputKind};
use sluice::format::{Codec, Dictionary, FormatKind, FormatOptions};
use sluice::input::InputSource;
use sluice::schema::RepoSchema;
use sluice::sink::Destination;
use sluice::source::kafka::Position;
use sluice::task;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Export record streams into Parquet, ORC, gzip JSON lines and text files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main export job with nothing installed: an embedded Kafka-protocol broker gets the
    /// shipped events, and the real export path writes them to `--out` as Parquet.
    Demo {
        /// Output folder.
        #[arg(long, default_value = "./out/demo")]
        out: PathBuf,
    },
    /// Convert one input file (or stdin) into one output file.
    Convert(ConvertArgs),
    /// Check or show a repo schema file.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Check a job file: every error with its key path, and its schema against the files
    /// already written, before any data moves.
    Validate {
        job: PathBuf,
        /// Only this repo of a job file with several (`[[repos]]`).
        #[arg(long)]
        repo: Option<String>,
    },
    /// Run a job: export until the input ends (file source) or SIGINT/SIGTERM (or a stop
    /// through the admin API). On Kafka the process is a consumer-group member: run several
    /// with the same job file and they split the partitions. SIGHUP reloads the job file and
    /// schema once they check out. A job file with several repos (`[[repos]]`) runs one task
    /// per repo.
    Run {
        job: PathBuf,
        /// Run only this repo of a job file with several.
        #[arg(long)]
        repo: Option<String>,
        /// Replay every partition from its checkpoint with this sequence number (later commits'
        /// files are deleted first, so output stays exactly-once).
        #[arg(long)]
        from_checkpoint: Option<u64>,
        /// Drop a spill left by a graceful stop instead of restoring it (its records are read
        /// again from the source).
        #[arg(long)]
        discard_spill: bool,
        /// Decoder threads (default: the number of cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Log as JSON lines.
        #[arg(long)]
        log_json: bool,
    },
    /// A bounded run of a job: read every partition from `--from` to `--to` (by default the
    /// whole topic as it stands at start), write, commit checkpoints under the backfill's own
    /// name, exit 0 when all is committed. Re-running after a crash resumes from the backfill's
    /// checkpoints. Draws progress bars on a terminal.
    Backfill {
        job: PathBuf,
        /// The repo to backfill, in a job file with several.
        #[arg(long)]
        repo: Option<String>,
        /// Where each partition starts when the backfill has no checkpoint of its own yet:
        /// `earliest`, a timestamp (`2024-05-01T00:00:00Z` or `@<ms>`), offsets (`0=100,1=250`),
        /// or `checkpoint` (where the live job's checkpoints stand).
        #[arg(long, default_value = "earliest")]
        from: String,
        /// Where each partition ends (exclusive): `latest` (the high watermarks when the
        /// backfill starts), a timestamp, or offsets.
        #[arg(long, default_value = "latest")]
        to: String,
        /// Checkpoints go under this job name (default `<job>-backfill`), so the live job's are
        /// never touched.
        #[arg(long)]
        name: Option<String>,
        /// Write to this destination URL instead of the job's.
        #[arg(long)]
        url: Option<String>,
        /// Decoder threads (default: the number of cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// List or show a job's checkpoints.
    Checkpoints {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// The newest checkpoint of every partition (of every repo of the job file).
    List {
        job: PathBuf,
        /// Only this repo of a job file with several.
        #[arg(long)]
        repo: Option<String>,
    },
    /// Every checkpoint of one partition (`<topic>-<partition>`), with its files.
    Show {
        job: PathBuf,
        partition: String,
        /// The repo, in a job file with several.
        #[arg(long)]
        repo: Option<String>,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Validate a schema file; errors name the file, field and reason.
    Check { file: PathBuf },
    /// Print the Arrow schema a schema file produces; with `--job`, the job's input schema,
    /// each stage's output and the schema its files get.
    Show {
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        job: Option<PathBuf>,
        /// With `--job`: only this repo of a job file with several.
        #[arg(long, requires = "job")]
        repo: Option<String>,
    },
}

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

#[derive(Args)]
struct ConvertArgs {
    /// The repo schema file (schemas/<repo>.toml).
    #[arg(long)]
    schema: PathBuf,
    /// Input file (plain or gzip, detected by content), or `-` for stdin.
    #[arg(long)]
    input: String,
    /// Input record format; by default from the file name (.csv, .tsv, .txt/.log), else json.
    #[arg(long, value_enum)]
    input_format: Option<InputFormat>,
    /// Text input: split each line by this delimiter into the schema's fields.
    #[arg(long)]
    delimiter: Option<String>,
    /// CSV/TSV input has no header row: columns are the schema's fields in order.
    #[arg(long)]
    no_input_header: bool,
    /// Output format.
    #[arg(long, default_value = "parquet")]
    format: String,
    /// Codec: zstd[:level], snappy, gzip[:level], lz4, zlib[:level], none. Defaults: parquet
    /// and orc zstd, json gzip:1, csv/tsv/text none.
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
    #[arg(long, default_value_t = 1024 * 1024)]
    row_group_rows: usize,
    /// Parquet: dictionary encoding (auto: only columns with few distinct values).
    #[arg(long, value_enum, default_value = "auto")]
    dictionary: DictionaryArg,
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
    /// An output column as a SQL expression with an alias, e.g. `lower(method) AS method`
    /// (repeat for each column; applied after --filter).
    #[arg(long)]
    select: Vec<String>,
    /// A whole `SELECT ... FROM input [WHERE ...]` over each batch (applied last).
    #[arg(long)]
    sql: Option<String>,
    /// Rows a stage fails on (e.g. a bad cast): dead_letter, drop or fail.
    #[arg(long, default_value = "dead_letter")]
    on_error: String,
    /// Decoder threads (default: the number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(args) => run_convert(args),
        Command::Demo { out } => run_demo(&out),
        Command::Schema { command } => run_schema(command),
        Command::Validate { job, repo } => run_validate(&job, repo.as_deref()),
        Command::Run {
            job,
            repo,
            from_checkpoint,
            discard_spill,
            threads,
            log_json,
        } => run_job(
            &job,
            repo.as_deref(),
            from_checkpoint,
            discard_spill,
            threads,
            log_json,
        ),
        Command::Backfill {
            job,
            repo,
            from,
            to,
            name,
            url,
            threads,
        } => run_backfill(&job, repo.as_deref(), &from, &to, name, url, threads),
        Command::Checkpoints { command } => run_checkpoints(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(json: bool) {
    init_logs_at(json, "info");
}

/// Logs to stderr at `level` unless `SLUICE_LOG` says otherwise.
fn init_logs_at(json: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// The repos of the job file at `path`: all of them, or the one named `repo`.
fn load_jobs(path: &Path, repo: Option<&str>) -> Result<Vec<Job>> {
    Ok(match repo {
        Some(r) => vec![Job::load_repo(path, Some(r))?],
        None => Job::load_all(path)?,
    })
}

fn run_validate(path: &Path, repo: Option<&str>) -> Result<()> {
    let jobs = load_jobs(path, repo)?;
    let runtime = io_runtime()?;
    let mut failed = Vec::new();
    for job in &jobs {
        if let Err(e) = validate_one(path, job, &runtime) {
            if jobs.len() == 1 {
                return Err(e);
            }
            println!(
                "{}: repo `{}`: {e:#}",
                path.display(),
                task::repo_label(job)
            );
            failed.push(task::repo_label(job));
        }
    }
    if !failed.is_empty() {
        bail!(
            "{}: repos {} are not valid",
            path.display(),
            failed.join(", ")
        );
    }
    Ok(())
}

fn validate_one(path: &Path, job: &Job, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let prepared = task::prepare(job, false)?;
    let dest = task::destination(job, runtime)?;
    let fields = prepared.schema.fields.len();
    let repo = match &job.repo {
        Some(r) => format!(
            "repo `{r}` (schema `{}`, {fields} fields)",
            prepared.schema.name
        ),
        None => format!("repo `{}` ({fields} fields)", prepared.schema.name),
    };
    println!(
        "{}: job `{}` is valid: {repo}, {}, {} to {}",
        path.display(),
        job.file.job.name,
        match (&prepared.source, &job.file.source) {
            (Some(s), _) => format!("{} partition(s)", s.partitions().len()),
            (None, SourceSection::Push { durability, .. }) => {
                format!("pushes with `{durability}` durability (on the admin listener)")
            }
            (None, _) => "the Kafka topics' (not contacted) partition(s)".to_string(),
        },
        job.format.kind.name(),
        dest.url()
    );
    // The schema against the one the job's files were written with (nothing is recorded).
    let out = prepared.decoder.output_schema();
    match sluice::evolution::check(&dest, &job.file.job.name, &out, false) {
        Ok(changes) => {
            for c in changes {
                println!("  schema change (new files carry it): {c}");
            }
        }
        Err(e @ sluice::evolution::EvolutionError::Incompatible { .. }) => return Err(e.into()),
        Err(e) => println!("  the schema was not checked against the written files: {e}"),
    }
    Ok(())
}

fn run_job(
    path: &Path,
    repo: Option<&str>,
    from_checkpoint: Option<u64>,
    discard_spill: bool,
    threads: Option<usize>,
    log_json: bool,
) -> Result<()> {
    init_logs(log_json);
    let jobs = load_jobs(path, repo)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    // One SIGHUP flag per repo: each repo's task reloads its own part of the job file.
    let hups: Vec<Arc<AtomicBool>> = jobs.iter().map(|_| Arc::default()).collect();
    for hup in &hups {
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
            .context("installing signal handlers")?;
    }
    let admin = task::start_admin(&jobs)?;
    let opts = task::RunOptions {
        from_checkpoint,
        discard_spill,
        threads: threads.unwrap_or(0),
        progress: false,
        admin: None,
    };
    if jobs.len() == 1 {
        let job = jobs.into_iter().next().expect("one job");
        let opts = task::RunOptions {
            admin: admin
                .as_ref()
                .and_then(|a| a.admin.slot(&task::repo_label(&job))),
            ..opts
        };
        let hup = hups.into_iter().next().expect("one flag");
        let (job, s) = task::reload::run_reloading(path, job, opts, stop, hup)?;
        println!(
            "job {}: {:?}; {} rows, {} dead letters in {} files over {} commits; {:.2} s",
            job.file.job.name, s.state, s.rows, s.dead_letters, s.files, s.commits, s.seconds
        );
        return Ok(());
    }
    let outcomes = task::many::run_all(path, jobs, opts, admin.as_ref(), stop, hups);
    let mut failed = Vec::new();
    for o in outcomes {
        match o.result {
            Ok(s) => println!(
                "repo {} (job {}): {:?}; {} rows, {} dead letters in {} files over {} commits; {:.2} s",
                o.repo, o.job, s.state, s.rows, s.dead_letters, s.files, s.commits, s.seconds
            ),
            Err(e) => {
                println!("repo {} (job {}): failed: {e}", o.repo, o.job);
                failed.push(o.repo);
            }
        }
    }
    if !failed.is_empty() {
        bail!("repos {} failed (see above)", failed.join(", "));
    }
    Ok(())
}

fn run_demo(out: &Path) -> Result<()> {
    init_logs(false);
    if out.join("_sluice/demo").exists() {
        bail!(
            "{} already holds a demo run (its checkpoints say everything is exported): remove \
             the folder or pass --out with a new one",
            out.display()
        );
    }
    let r = sluice::demo::run(out)?;
    println!(
        "\nexported {} events from an embedded Kafka broker (topic nginx_access, 4 partitions): \
         {} rows, {} dead letters, {} files, {} commits in {:.2} s",
        r.events,
        r.summary.rows,
        r.summary.dead_letters,
        r.summary.files,
        r.summary.commits,
        r.summary.seconds
    );
    println!("files:        {}/dt=*/hr=*/*.parquet", r.out.display());
    println!("checkpoints:  {}/_sluice/demo/", r.out.display());
    println!(
        "query:        duckdb -c \"SELECT region, count(*), avg(latency_ms) FROM read_parquet('{}/**/*.parquet', hive_partitioning = true) GROUP BY ALL\"",
        r.out.display()
    );
    Ok(())
}

fn run_backfill(
    path: &Path,
    repo: Option<&str>,
    from: &str,
    to: &str,
    name: Option<String>,
    url: Option<String>,
    threads: Option<usize>,
) -> Result<()> {
    // On a terminal, progress bars take the place of the informational log lines.
    let progress = std::io::stderr().is_terminal();
    init_logs_at(false, if progress { "warn" } else { "info" });
    let mut job = Job::load_repo(path, repo)?;
    if !matches!(job.file.source, SourceSection::Kafka { .. }) {
        bail!(
            "{}: backfill reads a range of Kafka topics; this job's source is not Kafka (use `sluice run`)",
            path.display()
        );
    }
    let start = if from == "checkpoint" {
        live_checkpoints(&job)?
    } else {
        Position::parse(from).map_err(|e| anyhow!("--from {e}"))?
    };
    let end = Position::parse(to).map_err(|e| anyhow!("--to {e}"))?;
    if end == Position::Earliest {
        bail!("--to earliest: a backfill ending at the start of every partition reads nothing");
    }
    job.range = Some((start, end));
    job.file.job.name = name.unwrap_or_else(|| format!("{}-backfill", job.file.job.name));
    if let Some(u) = url {
        job.file.sink.url = u;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let opts = task::RunOptions {
        threads: threads.unwrap_or(0),
        progress,
        ..Default::default()
    };
    let s = task::run(&job, opts, stop)?;
    println!(
        "backfill {}: {:?}; {} rows, {} dead letters in {} files over {} commits; {:.2} s",
        job.file.job.name, s.state, s.rows, s.dead_letters, s.files, s.commits, s.seconds
    );
    Ok(())
}

/// The positions of the live job's newest checkpoints, as backfill start offsets.
fn live_checkpoints(job: &Job) -> Result<Position> {
    let runtime = io_runtime()?;
    let dest = task::destination(job, &runtime)?;
    let cps = Checkpoints::new(dest, &job.file.job.name);
    let mut list = Vec::new();
    for key in cps.keys()? {
        let Some(c) = cps.latest(&key)? else { continue };
        let (topic, part) = key
            .rsplit_once('-')
            .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?)))
            .ok_or_else(|| anyhow!("checkpoint key `{key}` is not <topic>-<partition>"))?;
        list.push((Some(topic), part, c.next_offset as i64));
    }
    if list.is_empty() {
        bail!(
            "--from checkpoint: job `{}` has no checkpoints in {}",
            job.file.job.name,
            job.file.sink.url
        );
    }
    Ok(Position::Offsets(list))
}

fn run_checkpoints(cmd: CheckpointCommand) -> Result<()> {
    let (path, repo, partition) = match &cmd {
        CheckpointCommand::List { job, repo } => (job, repo.as_deref(), None),
        CheckpointCommand::Show {
            job,
            partition,
            repo,
        } => (job, repo.as_deref(), Some(partition.clone())),
    };
    let runtime = io_runtime()?;
    if partition.is_some() {
        let job = Job::load_repo(path, repo)?;
        return print_checkpoints(&job, partition, &runtime);
    }
    let jobs = load_jobs(path, repo)?;
    for job in &jobs {
        if jobs.len() > 1 {
            println!(
                "repo {} (job {}):",
                task::repo_label(job),
                job.file.job.name
            );
        }
        print_checkpoints(job, None, &runtime)?;
    }
    Ok(())
}

fn print_checkpoints(
    job: &Job,
    partition: Option<String>,
    runtime: &tokio::runtime::Runtime,
) -> Result<()> {
    let dest = task::destination(job, runtime)?;
    let cps = Checkpoints::new(dest, &job.file.job.name);
    match partition {
        None => {
            let keys = cps.keys()?;
            if keys.is_empty() {
                println!("job {} has no checkpoints yet", job.file.job.name);
            }
            for key in keys {
                if let Some(c) = cps.latest(&key)? {
                    println!(
                        "{key}: seq {} next offset {} (line {}), {} files, {} rows, {} dead letters, at {}",
                        c.seq,
                        c.next_offset,
                        c.next_line,
                        c.files.len(),
                        c.rows,
                        c.dead_letters,
                        format_ms(c.committed_at_ms)
                    );
                }
            }
        }
        Some(key) => {
            let history = cps.history(&key)?;
            if history.is_empty() {
                bail!("partition {key} has no checkpoints (see `sluice checkpoints list`)");
            }
            for c in history {
                println!(
                    "seq {} next offset {} (line {}) at {}: {} rows, {} dead letters",
                    c.seq,
                    c.next_offset,
                    c.next_line,
                    format_ms(c.committed_at_ms),
                    c.rows,
                    c.dead_letters
                );
                for f in c.files {
                    println!(
                        "  {} offsets {}..={} rows {} bytes {}",
                        f.path, f.first_offset, f.last_offset, f.rows, f.bytes
                    );
                }
                for f in c.dead_letter_files {
                    println!("  {f} (dead letters)");
                }
            }
        }
    }
    Ok(())
}

/// Object store requests run here. Multi-threaded: a current-thread runtime's I/O is driven
/// only by its own `block_on`, not by the `Handle::block_on` the destinations use.
fn io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the I/O runtime")
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

fn run_schema(cmd: SchemaCommand) -> Result<()> {
    match cmd {
        SchemaCommand::Check { file } => {
            let s = RepoSchema::load(&file)?;
            println!(
                "{}: repo `{}` with {} fields is valid",
                file.display(),
                s.name,
                s.fields.len()
            );
        }
        SchemaCommand::Show {
            file: Some(file), ..
        } => {
            let s = RepoSchema::load(&file)?;
            println!("repo {} ({})", s.name, file.display());
            print_fields(&s.arrow_schema());
        }
        SchemaCommand::Show {
            job: Some(job),
            repo,
            ..
        } => {
            for j in load_jobs(&job, repo.as_deref())? {
                let p = task::prepare(&j, false)?;
                println!(
                    "repo {} ({}), input:",
                    task::repo_label(&j),
                    p.schema.path.display()
                );
                print_fields(&p.decoder.decoded_schema());
                if let Some(stages) = p.decoder.stages() {
                    for (name, schema) in stages.describe() {
                        println!("after stage `{name}`:");
                        print_fields(&schema);
                    }
                }
                println!("output ({}):", j.format.kind.name());
                print_fields(&p.decoder.output_schema());
            }
        }
        SchemaCommand::Show { .. } => bail!("name a schema FILE or a --job"),
    }
    Ok(())
}

fn print_fields(schema: &arrow::datatypes::Schema) {
    for f in schema.fields() {
        let null = if f.is_nullable() { "" } else { " not null" };
        println!("  {}: {}{null}", f.name(), f.data_type());
    }
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

/// `file://./out/` is accepted as a path relative to the current folder.
fn local_relative(url: &str) -> String {
    match url.strip_prefix("file://") {
        Some(rest) if !rest.starts_with('/') => rest.to_string(),
        _ => url.to_string(),
    }
}

fn run_convert(a: ConvertArgs) -> Result<()> {
    let schema = Arc::new(RepoSchema::load(&a.schema)?);
    let input = InputSource::parse(&a.input);
    if let InputSource::File(p) = &input {
        if !p.exists() {
            bail!("input file {} does not exist", p.display());
        }
    }
    let kind = match a.input_format.unwrap_or_else(|| guess_input(&a.input)) {
        InputFormat::Json => InputKind::Json,
        InputFormat::Csv => InputKind::Csv {
            delimiter: b',',
            header: !a.no_input_header,
        },
        InputFormat::Tsv => InputKind::Csv {
            delimiter: b'\t',
            header: !a.no_input_header,
        },
        InputFormat::Text => InputKind::Text {
            delimiter: a.delimiter.clone(),
        },
    };
    if a.delimiter.is_some() && !matches!(kind, InputKind::Text { .. }) {
        bail!("--delimiter applies to text input only (use --input-format text)");
    }
    let format_kind: FormatKind = a.format.parse()?;
    let format = FormatOptions {
        kind: format_kind,
        codec: a.compression.as_deref().map(Codec::parse).transpose()?,
        row_group_rows: a.row_group_rows,
        dictionary: match a.dictionary {
            DictionaryArg::Auto => Dictionary::Auto,
            DictionaryArg::On => Dictionary::On,
            DictionaryArg::Off => Dictionary::Off,
        },
        statistics: !a.no_statistics,
        parquet_page_version: a.parquet_page_version,
        stripe_bytes: a.stripe_bytes,
        header: !a.no_output_header,
    };

    let output_url = local_relative(&a.output);
    let default_name = format!("{}.{}", input.stem(), format.extension());
    let (folder, name) = split_output(&output_url, &default_name);
    let (dl_folder, dl_name) = match &a.dead_letters {
        Some(u) => split_output(&local_relative(u), &format!("{}.jsonl", input.stem())),
        None => (
            format!("{folder}_dead_letters/"),
            format!("{}.jsonl", input.stem()),
        ),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let output = Destination::parse(&folder, runtime.handle().clone())?;
    let dead_letters = Destination::parse(&dl_folder, runtime.handle().clone())?;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
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
    };
    let result = convert::run(job);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = result?;
    println!("{}", summary.line());
    Ok(())
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
