//! Sink workers: items from the channel → open files per (source partition, path), rotation,
//! output path templates, and the commit of a source partition through `commit/`. Bytes go
//! through `store/`.

mod commit;
pub mod control;
mod open;
pub mod partitions;
pub mod paths;
mod recovery;
mod rotation;
mod share;
mod values;
pub mod worker;
