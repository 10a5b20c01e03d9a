//! The `sluice` command line: `run`, `validate`, `backfill`, `checkpoints`, `wal`, `compact`,
//! `vacuum`, `convert`, `schema`, `config`, `demo`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli {
    pub mod backfill;
    pub mod convert;
    pub mod infer;
    pub mod jobs;
    pub mod ranges;
    pub mod schema;
    pub mod skip;
    pub mod table;
    pub mod validate;
    pub mod wal;
}

use cli::backfill::run_backfill;
use cli::convert::{run_convert, ConvertArgs};
use cli::jobs::{run_checkpoints, run_demo, run_job, run_roll_back_plan, CheckpointCommand};
use cli::schema::{run_schema, SchemaCommand};
use cli::table::{run_compact, run_vacuum};
use cli::validate::run_validate;
use sluice::task::FromCheckpoint;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Export record streams into Parquet, ORC, JSON lines, CSV/TSV and text files",
    after_help = "Logging (run, backfill, convert, demo): `SLUICE_LOG` sets what is logged, as a tracing filter (`warn`, `info`, `sluice=debug`); the default is `info` (`warn` for `convert`, and for `backfill` while it draws progress bars)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the JSON Schema of a job file (for editors: `docs/job.schema.json`).
    JsonSchema,
    /// Print the Markdown reference of every key (`docs/CONFIG.md`).
    Reference,
}

fn run_config(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::JsonSchema => println!(
            "{}",
            serde_json::to_string_pretty(&sluice::config::reference::json_schema())?
        ),
        ConfigCommand::Reference => print!(
            "{}",
            sluice::config::reference::markdown().map_err(anyhow::Error::msg)?
        ),
    }
    Ok(())
}

/// How `run` writes its log lines.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// The job file's reference, generated from its types.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check a job file: every error with its key path, and its schema against the files
    /// already written, before any data moves.
    Validate {
        /// The job file (TOML).
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
        /// The job file (TOML).
        job: PathBuf,
        /// Run only this repo of a job file with several.
        #[arg(long)]
        repo: Option<String>,
        /// Replay every partition from its checkpoint with this sequence number (later commits'
        /// files are deleted first, so output stays exactly-once). Applied once: a partition
        /// an earlier run already rolled back to it is not rolled back again.
        #[arg(long)]
        from_checkpoint: Option<u64>,
        /// With --from-checkpoint: roll back even partitions an earlier run already rolled
        /// back to that checkpoint (once for the processes of a group started together).
        #[arg(long, requires = "from_checkpoint")]
        again: bool,
        /// With --from-checkpoint: roll back a compacted topic's partitions too (refused
        /// otherwise: the records superseded since their export cannot be written again).
        #[arg(long, requires = "from_checkpoint")]
        despite_compaction: bool,
        /// With --from-checkpoint: print what the roll-back would delete, and stop there.
        #[arg(long, requires = "from_checkpoint")]
        dry_run: bool,
        /// Drop a spill left by a graceful stop instead of restoring it (its records are read
        /// again from the source).
        #[arg(long)]
        discard_spill: bool,
        /// Start a push job whose WAL is damaged before its end (acknowledged data): move the
        /// damaged part and everything after it into `damaged/` in the WAL folder, never
        /// deleting it, and run without it. Without this flag such a WAL stops the start.
        #[arg(long)]
        move_wal_damage: bool,
        /// Decoder threads (default: the number of cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Log lines as text or as JSON objects (one per line, for log shippers).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// The same as `--log-format json`.
        #[arg(long, hide = true)]
        log_json: bool,
    },
    /// A bounded run of a job: read every partition from `--from` to `--to` (by default the
    /// whole topic as it stands at start), write, commit checkpoints under the backfill's own
    /// name, exit 0 when all is committed. Re-running after a crash resumes from the backfill's
    /// checkpoints. Draws progress bars on a terminal.
    Backfill {
        /// The job file (TOML).
        job: PathBuf,
        /// The repo to backfill, in a job file with several.
        #[arg(long)]
        repo: Option<String>,
        /// Where each partition starts when the backfill has no checkpoint of its own yet:
        /// `earliest`, a timestamp (`2024-05-01T00:00:00Z` or `@<ms>`), offsets (`0=100,1=250`),
        /// or `checkpoint` (where the live job's checkpoints stand; only with another --url).
        /// A name's first run records its range: a later run of the name over another range
        /// is refused (it would resume from that run's checkpoints).
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
        /// Write to this destination URL instead of the job's (a relative path is taken from
        /// the current folder); dead letters go beside the data there.
        #[arg(long)]
        url: Option<String>,
        /// Decoder threads (default: the number of cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// List or show a job's checkpoints, or move a stuck Kafka partition's forward.
    Checkpoints {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
    /// Read a push job's write-ahead log.
    Wal {
        #[command(subcommand)]
        command: cli::wal::WalCommand,
    },
    /// Merge a Delta table's small files into larger ones (`[sink] table = "delta"`): each
    /// group of files is swapped for one file in one table version, so readers never see
    /// both or neither. Safe beside the running job. Draws a progress bar on a terminal.
    Compact {
        /// The job file (TOML).
        job: PathBuf,
        /// The repo, in a job file with several.
        #[arg(long)]
        repo: Option<String>,
        /// Only files under this folder of the table (`dt=2024-05-01`, `dt=2024-05-01/hr=03`).
        #[arg(long)]
        partition: Option<String>,
        /// Files at or above this size stay; merged files grow up to it.
        #[arg(long, default_value = "256MiB")]
        target_size: String,
        /// Leave a folder's files alone unless at least this many can be merged together.
        #[arg(long, default_value_t = 4)]
        min_files: usize,
        /// Print what would be merged; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete the files of a job's Delta table that no table version within `--older-than`
    /// names (compacted away, or never in the table). Sealed commits the table does not hold
    /// yet are kept. Readers of versions older than the retention may fail afterwards.
    Vacuum {
        /// The job file (TOML).
        job: PathBuf,
        /// The repo, in a job file with several.
        #[arg(long)]
        repo: Option<String>,
        /// Retention: files removed from the table more recently than this stay.
        #[arg(long, default_value = "7d")]
        older_than: String,
        /// Allow a retention shorter than 1h: only when no job, backfill or compaction writes
        /// the table (a file written but not yet committed is named by no version, and would
        /// go).
        #[arg(long)]
        allow_short_retention: bool,
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    // The commit protocol measures "since this process started" from here.
    sluice::commit::process_started_ms();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(args) => run_convert(args),
        Command::Demo { out } => run_demo(&out),
        Command::Schema { command } => run_schema(command),
        Command::Config { command } => run_config(command),
        Command::Validate { job, repo } => run_validate(&job, repo.as_deref()),
        Command::Run {
            job,
            repo,
            from_checkpoint: Some(seq),
            again,
            despite_compaction,
            dry_run: true,
            ..
        } => run_roll_back_plan(
            &job,
            repo.as_deref(),
            FromCheckpoint {
                seq,
                again,
                compacted: despite_compaction,
            },
        ),
        Command::Run {
            job,
            repo,
            from_checkpoint,
            again,
            despite_compaction,
            discard_spill,
            move_wal_damage,
            threads,
            log_format,
            log_json,
            ..
        } => run_job(
            &job,
            repo.as_deref(),
            from_checkpoint.map(|seq| FromCheckpoint {
                seq,
                again,
                compacted: despite_compaction,
            }),
            discard_spill,
            move_wal_damage,
            threads,
            log_json || log_format == LogFormat::Json,
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
        Command::Wal { command } => cli::wal::run_wal(command),
        Command::Compact {
            job,
            repo,
            partition,
            target_size,
            min_files,
            dry_run,
        } => run_compact(
            &job,
            repo.as_deref(),
            partition,
            &target_size,
            min_files,
            dry_run,
        ),
        Command::Vacuum {
            job,
            repo,
            older_than,
            allow_short_retention,
            dry_run,
        } => run_vacuum(
            &job,
            repo.as_deref(),
            &older_than,
            allow_short_retention,
            dry_run,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error with its causes, each cause said once: the library's errors already quote their
/// source (`cannot read schema file x: No such file or directory`), which anyhow's chain
/// would print again.
pub(crate) fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

pub(crate) fn init_logs(json: bool) {
    init_logs_at(json, "info");
}

/// Logs to stderr at `level` unless `SLUICE_LOG` says otherwise.
pub(crate) fn init_logs_at(json: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        // The Delta kernel logs every snapshot it builds at `info`.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{level},buoyant_kernel=warn"))
        });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    if json {
        b.json().finish().with(QuietConsumerDrop).init();
    } else {
        b.finish().with(QuietConsumerDrop).init();
    }
}

/// Drops the one error rdkafka's consumer logs when it is dropped: it closes the consumer
/// again, after the Kafka source has closed it (`KafkaSource::close` warns itself if its
/// close fails), and the second close always fails, so every successful Kafka run ended on
/// an ERROR line. It is the only error that module logs.
struct QuietConsumerDrop;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QuietConsumerDrop {
    fn enabled(
        &self,
        m: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !(*m.level() == tracing::Level::ERROR && m.target() == "rdkafka::consumer::base_consumer")
    }
}
