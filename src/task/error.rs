//! Errors that stop a task, and which of them no start could get past without an operator.

/// Errors that stop a task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    #[error(transparent)]
    Decode(#[from] crate::decode::DecodeError),
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
    #[error(transparent)]
    Sink(#[from] crate::store::StoreError),
    #[error(transparent)]
    Checkpoint(#[from] crate::commit::checkpoint::CheckpointError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Spill(#[from] crate::channel::spill::SpillError),
    #[error(transparent)]
    Template(#[from] crate::sink::paths::TemplateError),
    #[error(transparent)]
    Evolution(#[from] crate::evolution::EvolutionError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error(transparent)]
    Stage(#[from] crate::stage::StageError),
    #[error("job {job}: {reason}")]
    Job { job: String, reason: String },
    /// A start an operator must decide on (a roll-back that cannot be made): starting again
    /// changes nothing, so a supervised repo is not started again.
    #[error("job {job}: {reason}")]
    Refused { job: String, reason: String },
    /// Several problems found by one check (`prepare`: a missing input and a template that
    /// cannot work), each told.
    #[error("{} problems:\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Several(Vec<TaskError>),
}

impl TaskError {
    /// Whether no start could go further without an operator's decision.
    pub fn refused(&self) -> bool {
        if let TaskError::Several(all) = self {
            return all.iter().any(TaskError::refused);
        }
        matches!(
            self,
            TaskError::Refused { .. }
                | TaskError::Source(crate::source::SourceError::Refused { .. })
                | TaskError::Table(
                    crate::table::TableError::RollBack { .. }
                        | crate::table::TableError::NotATableJob { .. }
                )
                | TaskError::Checkpoint(
                    crate::commit::checkpoint::CheckpointError::RollbackTooLarge { .. }
                )
        )
    }
}
