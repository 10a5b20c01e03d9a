//! The end of a bounded run: each partition's committed position against what the source
//! handed out.

use super::TaskError;
use crate::sink::control::Control;

/// The safety net of a bounded run that ended: each partition's committed position must reach
/// what the source handed out. A shortfall is a bug (records were read and neither written nor
/// dead-lettered); the run fails instead of reporting success without them, and running it
/// again exports them (it resumes from the checkpoints).
pub(super) fn check_committed(
    job: &str,
    control: &Control,
    handed: Vec<(u32, u64)>,
) -> Result<(), TaskError> {
    let short = shortfall(control, handed);
    if short.is_empty() {
        return Ok(());
    }
    let short = short.join("; ");
    tracing::error!(job, partitions = %short, "the run ended with records read but not committed");
    Err(TaskError::Job {
        job: job.to_string(),
        reason: format!(
            "the run ended with records read but not committed ({short}); nothing past the checkpoints is lost: run it again to export them, and please report this as a bug"
        ),
    })
}

/// The partitions whose committed position is short of what the source handed out, described.
pub(super) fn shortfall(control: &Control, handed: Vec<(u32, u64)>) -> Vec<String> {
    let committed = control.partitions.positions();
    let keys = control.partitions.keys();
    handed
        .into_iter()
        .filter_map(|(p, owed)| {
            let at = committed.get(&p).map_or(0, |(o, _)| *o);
            (at < owed).then(|| {
                let key = keys.get(&p).cloned().unwrap_or_else(|| p.to_string());
                format!("{key}: read to {owed}, committed to {at}")
            })
        })
        .collect()
}
