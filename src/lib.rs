//! sluice: moves record streams into Parquet, ORC, gzip JSON lines and text files on object
//! storage. See `docs/ARCHITECTURE.md` for the module map.

pub mod decode;
pub mod schema;
pub mod format;
pub mod sink;
pub mod convert;
pub mod deadletter;
pub mod input;
