//! sluice: moves record streams into Parquet, ORC, gzip JSON lines and text files on object
//! storage. See `docs/ARCHITECTURE.md` for the module map.

pub mod admin;
pub mod channel;
pub mod commit;
pub mod config;
pub mod convert;
pub mod deadletter;
pub mod decode;
pub mod demo;
pub mod durable;
pub mod evolution;
pub mod fanout;
pub mod fault;
pub mod format;
#[cfg(test)]
pub mod hooks;
pub mod input;
pub mod lock;
pub mod metrics;
pub mod panics;
pub mod pipeline;
pub mod schema;
pub mod sink;
pub mod source;
pub mod stage;
pub mod store;
pub mod table;
pub mod task;
pub mod wal;
