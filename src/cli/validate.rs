//! `sluice validate`: a job file checked as a run would check it, every repo, without moving
//! data.

use std::path::Path;

use anyhow::{bail, Result};

use sluice::config::{Job, SourceSection};
use sluice::task;

use super::jobs::{io_runtime, load_jobs};

pub fn run_validate(path: &Path, repo: Option<&str>) -> Result<()> {
    let jobs = load_jobs(path, repo)?;
    let runtime = io_runtime()?;
    let mut failed = Vec::new();
    for job in &jobs {
        if let Err(e) = validate_one(path, job, &runtime) {
            if jobs.len() == 1 {
                return Err(e);
            }
            println!(
                "{}: repo `{}`: {}",
                path.display(),
                task::repo_label(job),
                crate::chain(&e)
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
    // Both checked, each problem told: a bad URL is not hidden behind a missing input.
    let (prepared, dest) = match (task::prepare(job, false), task::destination(job, runtime)) {
        (Ok(p), Ok(d)) => (p, d),
        (Err(task::TaskError::Several(mut all)), Err(d)) => {
            all.push(d);
            return Err(task::TaskError::Several(all).into());
        }
        (Err(p), Err(d)) => return Err(task::TaskError::Several(vec![p, d]).into()),
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    // A local destination that is a file: every run would fail at its first write.
    if let Some(root) = dest.local_root().filter(|r| r.exists() && !r.is_dir()) {
        bail!(
            "sink.url {}: {} is a file, not a folder",
            job.file.sink.url,
            root.display()
        );
    }
    let room = dest.folder_room();
    let template = prepared.template.clone().limit_to(room)?;
    let fields = prepared.schema.fields.len();
    let repo = match &job.repo {
        Some(r) => format!(
            "repo `{r}` (schema `{}`, {fields} fields)",
            prepared.schema.name
        ),
        None => format!("repo `{}` ({fields} fields)", prepared.schema.name),
    };
    // The schema against the one the job's files were written with (nothing is recorded).
    let out = prepared.decoder.output_schema();
    // A table that refuses the schema makes the job not valid; a store that cannot be read
    // is said below, as the files' check says it.
    sluice::table::partition_columns(&job.table, &dest, &template)?;
    // A job without a table where one is: not valid; a store that cannot be read is said
    // below.
    let plain_unread = match sluice::table::refuse_plain_into_table(&job.table, &dest) {
        Ok(()) => None,
        Err(e @ sluice::table::TableError::NotATableJob { .. }) => return Err(e.into()),
        Err(e) => Some(e),
    };
    let table_unread = match sluice::table::check_fits(&job.table, &dest, &out, runtime.handle()) {
        Ok(()) => None,
        Err(
            e
            @ (sluice::table::TableError::Schema { .. } | sluice::table::TableError::Delta { .. }),
        ) => return Err(e.into()),
        Err(e) => Some(e),
    };
    // Before the job is called valid: a schema the files refuse makes it not.
    let checked = match sluice::evolution::check_all(
        &dest,
        (&job.file.job.name, &task::repo_label(job)),
        &out,
        false,
        sluice::evolution::Form::of(&job.format),
    ) {
        Ok(changes) => Ok(changes),
        Err(
            e @ (sluice::evolution::EvolutionError::Incompatible { .. }
            | sluice::evolution::EvolutionError::Beside { .. }
            | sluice::evolution::EvolutionError::Record { .. }),
        ) => return Err(e.into()),
        Err(e) => Err(e),
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
        match job.table {
            sluice::table::TableKind::None => job.format.kind.name().to_string(),
            _ => format!(
                "{} in a Delta table{}",
                job.format.kind.name(),
                match prepared.template.partition_fields() {
                    p if p.is_empty() => String::new(),
                    p => format!(
                        " partitioned by {}",
                        p.into_iter().map(|(n, _)| n).collect::<Vec<_>>().join(", ")
                    ),
                }
            ),
        },
        dest.url()
    );
    if template.cuts_names() {
        println!(
            "  its folder paths could pass the {room} bytes the destination has for them: folder names of {} bytes or more (after a `name=` head) are cut to fit",
            sluice::sink::paths::TIGHT_SEGMENT
        );
    }
    match checked {
        Ok(changes) => {
            for c in changes {
                println!("  schema change (new files carry it): {c}");
            }
        }
        Err(e) => println!("  the schema was not checked against the written files: {e}"),
    }
    if let Some(e) = table_unread {
        println!("  the schema was not checked against the Delta table's: {e}");
    }
    if let Some(e) = plain_unread {
        println!("  whether the destination holds a Delta table was not checked: {e}");
    }
    Ok(())
}
