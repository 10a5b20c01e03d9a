//! Where a job writes: its destination (`[sink] url` with `[sink.storage]`), another URL with
//! the same store settings, and where a repo's dead letters go.

use serde::Deserialize;

use super::TaskError;
use crate::config::Job;
use crate::store::remote::StoreOptions;
use crate::store::Destination;

/// Builds the destination of a job (store settings from `[sink.storage]`).
pub fn destination(job: &Job, runtime: &tokio::runtime::Runtime) -> Result<Destination, TaskError> {
    destination_at(job, &job.file.sink.url, runtime)
}

/// Where the dead letters of repo `label` go: the destination and the folder in it (beside
/// the data in `dest`, or `[dead_letters] url`).
pub fn dead_letters_at(
    job: &Job,
    dest: &Destination,
    label: &str,
    runtime: &tokio::runtime::Runtime,
) -> Result<(Destination, String), TaskError> {
    Ok(match &job.file.dead_letters.url {
        // Readers of a dead-letter folder of its own skip names starting with `_` or `.`.
        Some(u) => (
            destination_at(job, u, runtime)?,
            format!("{}/", crate::sink::paths::visible_name(label)),
        ),
        None => (dest.clone(), format!("_dead_letters/{label}/")),
    })
}

/// A destination at `url` with the job's store settings.
pub fn destination_at(
    job: &Job,
    url: &str,
    runtime: &tokio::runtime::Runtime,
) -> Result<Destination, TaskError> {
    let opts = StoreOptions::deserialize(toml::Value::Table(job.file.sink.storage.clone()))
        .map_err(|e| TaskError::Job {
            job: job.file.job.name.clone(),
            reason: format!("sink.storage: {e}"),
        })?;
    Ok(Destination::parse_with(
        &job.resolve_url(url),
        &opts,
        runtime.handle().clone(),
    )?)
}
