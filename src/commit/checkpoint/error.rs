//! What a checkpoint operation can fail with: a store error, a damaged or oversized record,
//! a fence, a taken sequence number, a refused roll-back or skip.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Sink(#[from] StoreError),
    #[error("checkpoint record {path} is damaged: {reason}")]
    Corrupt { path: String, reason: String },
    /// Another owner took the partition over (a newer term): this process must stop writing
    /// it at once.
    #[error(
        "partition {key} of job {job} is fenced: owner {owner} took it over (term {theirs}, \
         this process holds term {ours}); this process stops writing it"
    )]
    Fenced {
        key: String,
        job: String,
        owner: String,
        theirs: u64,
        ours: u64,
    },
    /// The commit's sequence number was claimed or decided by an older owner meanwhile: the
    /// partition reconciles (fencing that claim) and replays.
    #[error("partition {key}: sequence {seq} was claimed or decided by owner {owner} first")]
    Taken {
        key: String,
        seq: u64,
        owner: String,
    },
    #[error("no checkpoint {seq} for partition {key} (see `sluice checkpoints list`)")]
    Unknown { key: String, seq: u64 },
    #[error("partition {key} cannot be skipped forward: {reason}")]
    Skip { key: String, reason: String },
    /// The destination replaces a record written create-only (or cannot write one): the
    /// fence cannot keep two writers of one partition apart there. Nothing was written.
    #[error(
        "{url} cannot fence writers: {reason}. sluice needs a store that refuses a create-only \
         write of an existing object (conditional writes: S3 `If-None-Match: *`, Azure, GCS, \
         HDFS, a local file system); it stopped before writing any data or record there"
    )]
    NotFenceable { url: String, reason: String },
    /// A record longer than what is read back ([`crate::store::RECORD_CAP`]): written, the
    /// next read would refuse it and stop its partition for good. Nothing was written.
    #[error(
        "record {path} would hold {bytes} bytes, more than the {cap} sluice reads back; it was \
         not written"
    )]
    TooLarge { path: String, bytes: u64, cap: u64 },
    /// A roll-back whose claim would name more files than one record holds.
    #[error(
        "partition {key} cannot be rolled back to checkpoint {target} at once: the files of the \
         commits it undoes take {bytes} bytes to list, more than the {cap} one record holds. \
         Nothing was changed. Roll back in steps: {step}"
    )]
    RollbackTooLarge {
        key: String,
        target: u64,
        bytes: u64,
        cap: u64,
        step: String,
    },
}

impl CheckpointError {
    /// True when this process no longer owns the partition.
    pub fn is_fenced(&self) -> bool {
        matches!(self, CheckpointError::Fenced { .. })
    }
}
