//! The rows of a batch each folder path takes: as row numbers until a group's turn comes
//! ([`Rows::take`]), or split at once ([`PathTemplate::split`], what tests compare).

use arrow::array::{RecordBatch, UInt32Array};

use super::{PathTemplate, TemplateError};

/// The rows of a batch one path takes ([`PathTemplate::group`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows {
    /// Every row: the batch itself.
    All,
    /// These rows, in order.
    Some(Vec<u32>),
}

impl Rows {
    /// The rows gathered from `batch` (the batch itself for [`Rows::All`]).
    pub fn take(self, batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
        match self {
            Rows::All => Ok(batch.clone()),
            Rows::Some(at) => arrow::compute::take_record_batch(batch, &UInt32Array::from(at)),
        }
    }
}

impl PathTemplate {
    /// Splits a batch into (relative folder path, rows of that path), in order of first
    /// appearance; each folder path ends with `/` (or is "" for an empty template). Rows keep
    /// their order within a group. When every row maps to one path, returns the batch itself
    /// without copying. `ingest_ms` is the ingestion time (ms since epoch) used by `{_ingest:...}`.
    ///
    /// A batch without rows gives no groups.
    pub fn split(
        &self,
        batch: &RecordBatch,
        ingest_ms: i64,
    ) -> Result<Vec<(String, RecordBatch)>, TemplateError> {
        self.group(batch, ingest_ms)?
            .into_iter()
            .map(|(path, rows)| {
                rows.take(batch)
                    .map(|b| (path, b))
                    .map_err(|e| self.error(format!("cannot gather the rows of a group: {e}")))
            })
            .collect()
    }
}
