//! Integration tests: the `sluice` binary on fixtures, read back by independent readers.

mod abuse;
mod admin;
mod bounds;
mod config_schema;
mod convert;
mod dead_letters;
mod disk;
mod evolution;
mod gaps;
mod helpers;
mod infer;
mod interop;
mod kafka;
mod lag_watch;
mod owners;
mod prometheus;
mod push;
mod repos;
mod retention;
mod run;
mod s3_faults;
mod s3_run;
mod slow_store;
mod stages;
mod stores;
mod tansu;
