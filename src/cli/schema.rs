//! `sluice schema`: check a schema file, infer one from a sample, show the Arrow schema a
//! file or a job produces.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;

use sluice::schema::RepoSchema;
use sluice::task;

use super::jobs::load_jobs;

#[derive(Subcommand)]
pub enum SchemaCommand {
    /// Validate a schema file; errors name the file, field and reason.
    Check { file: PathBuf },
    /// Print a repo schema inferred from a sample: JSON lines (plain or gzip), or CSV with a
    /// header (`.csv`/`.tsv` names); `-` reads stdin.
    Infer {
        /// The sample file (or `-` for stdin), as `--input` says.
        #[arg(conflicts_with = "input", required_unless_present_any = ["kafka", "input"])]
        sample: Option<String>,
        /// The sample file (or `-` for stdin).
        #[arg(long)]
        input: Option<String>,
        /// Sample a Kafka topic instead: its messages from the start of each partition, up to
        /// where each ended when sampling began (or `--rows`).
        #[arg(long, conflicts_with_all = ["input", "sample"], requires = "topic")]
        kafka: Option<String>,
        #[arg(long, requires = "kafka")]
        topic: Option<String>,
        /// The repo's name (default: the input file's stem).
        #[arg(long)]
        name: Option<String>,
        /// A CSV file's delimiter, one ASCII character (default `,`; `;` for many European
        /// locales' CSV).
        #[arg(long, conflicts_with = "kafka")]
        delimiter: Option<String>,
        /// How many records of the sample to read.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
    },
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

pub fn run_schema(cmd: SchemaCommand) -> Result<()> {
    match cmd {
        SchemaCommand::Check { file } => {
            let s = RepoSchema::load(&file)?;
            // The defaults parse when a decoder is built (as a job's or convert's start would).
            sluice::decode::RecordDecoder::new(
                std::sync::Arc::new(s.clone()),
                sluice::decode::DecodeOptions::default(),
                None,
            )?;
            println!(
                "{}: repo `{}` with {} fields is valid",
                file.display(),
                s.name,
                s.fields.len()
            );
        }
        SchemaCommand::Infer {
            sample,
            input,
            kafka,
            topic,
            name,
            delimiter,
            rows,
        } => match (input.or(sample), kafka, topic) {
            (Some(input), _, _) => {
                super::infer::infer_schema(&input, name, delimiter.as_deref(), rows)?
            }
            (None, Some(brokers), Some(topic)) => {
                super::infer::infer_from_kafka(&brokers, &topic, name, rows)?
            }
            _ => bail!("give --input, or --kafka with --topic"),
        },
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
                let out = p.decoder.output_schema();
                // A table's files hold timestamps in microseconds (`format::units`).
                let micros = j
                    .format
                    .micros
                    .then(|| sluice::format::units::micros_schema(&out))
                    .flatten();
                print_fields(micros.as_deref().unwrap_or(&out));
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
