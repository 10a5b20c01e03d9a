//! The dead-letter output: one JSON line per record that could not be decoded or that a stage
//! failed on, with its source, position, the reason, its class, the stage, and the original
//! record (as text, or base64 when it is not UTF-8). The file is created on the first dead
//! letter, so clean runs leave none. A job may send its dead letters to a Kafka topic instead
//! (see [`topic`]).

pub mod topic;

use std::io::Write;

use serde::Serialize;

use crate::decode::DeadLetter;
use crate::store::{Destination, OutputFile, StoreError};
use topic::{DeadTopic, TopicBatch};

#[derive(Serialize)]
struct Line<'a> {
    source: &'a str,
    line: u64,
    offset: u64,
    reason: &'a str,
    class: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a str>,
    /// Encoded as it is written (no copy of the record in memory).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_base64")]
    record_base64: Option<&'a [u8]>,
}

/// A record that is not UTF-8, written as base64 straight into the output.
fn as_base64<S: serde::Serializer>(bytes: &Option<&[u8]>, s: S) -> Result<S::Ok, S::Error> {
    let engine = &base64::engine::general_purpose::STANDARD;
    s.collect_str(&base64::display::Base64Display::new(
        bytes.unwrap_or_default(),
        engine,
    ))
}

/// The dead-letter file's write buffer. Lines are serialized through it, not into a buffer
/// of their own: a record of 40 MiB of control characters is 240 MiB as a JSON string
/// (`\u0001` each), and a batch of tiny records many times their size.
const WRITE_BUFFER: usize = 64 * 1024;

/// The stage a dead letter's reason names (`stage `mask`: ...`), if any.
pub fn stage_of(reason: &str) -> Option<&str> {
    reason
        .strip_prefix("stage `")?
        .split_once('`')
        .map(|(s, _)| s)
}

/// Where a writer's dead letters go.
enum Target {
    /// A file at `rel` under `dest`, created on the first dead letter.
    File {
        dest: Destination,
        rel: String,
        file: Option<OutputFile>,
    },
    /// Messages on a Kafka topic.
    Topic(TopicBatch),
}

/// Writes the dead letters of one source partition until they are committed with it.
pub struct DeadLetterWriter {
    target: Target,
    source: String,
    count: u64,
}

impl DeadLetterWriter {
    /// Dead letters of `source` to the file `rel` under `dest`.
    pub fn new(dest: Destination, rel: String, source: String) -> Self {
        DeadLetterWriter {
            target: Target::File {
                dest,
                rel,
                file: None,
            },
            source,
            count: 0,
        }
    }

    /// Dead letters of `source` to a Kafka topic.
    pub fn to_topic(topic: std::sync::Arc<DeadTopic>, source: String) -> Self {
        DeadLetterWriter {
            target: Target::Topic(topic.batch()),
            source,
            count: 0,
        }
    }

    /// The file the dead letters go to (`None` for a topic).
    pub fn file(&self) -> Option<&str> {
        match &self.target {
            Target::File { rel, .. } => Some(rel),
            Target::Topic(_) => None,
        }
    }

    /// The dead-letter file's temporary name while it is written locally (see
    /// [`OutputFile::staged`]).
    pub fn staged(&self) -> Option<&str> {
        match &self.target {
            Target::File { file: Some(f), .. } => f.staged(),
            _ => None,
        }
    }

    /// Appends dead letters.
    pub fn write(&mut self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        if letters.is_empty() {
            return Ok(());
        }
        let (dest, rel, file) = match &mut self.target {
            Target::Topic(batch) => {
                for d in letters {
                    batch.send(&self.source, d)?;
                }
                self.count += letters.len() as u64;
                return Ok(());
            }
            Target::File { dest, rel, file } => (dest, rel, file),
        };
        if file.is_none() {
            *file = Some(dest.create(rel)?);
        }
        let f = file.as_mut().expect("created above");
        let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, f);
        let written = letters
            .iter()
            .try_for_each(|d| {
                serde_json::to_writer(&mut out, &line(&self.source, d))?;
                out.write_all(b"\n")
            })
            // Into the file's own buffer, not flushed through it (a write call per item).
            .and_then(|()| out.into_inner().map(drop).map_err(|e| e.into_error()));
        written.map_err(|source| StoreError::Io {
            path: dest.display(rel),
            source,
        })?;
        self.count += letters.len() as u64;
        Ok(())
    }

    /// The memory the dead letters hold until they commit: their file's buffers (an
    /// object-store upload's part being filled and its parts in flight). A topic's messages
    /// wait in the producer's queue, bounded by its own settings.
    pub fn held_bytes(&self) -> u64 {
        match &self.target {
            Target::File { file: Some(f), .. } => f.held_bytes(),
            _ => 0,
        }
    }

    /// The bytes written into the dead-letter file (0 for a topic): a file rolls at the
    /// sink's `max_bytes` as data files do.
    pub fn bytes_written(&self) -> u64 {
        match &self.target {
            Target::File { file: Some(f), .. } => f.bytes_written(),
            _ => 0,
        }
    }

    /// Whether a dead-letter file is open (one was written since the last commit).
    pub fn has_file(&self) -> bool {
        matches!(&self.target, Target::File { file: Some(_), .. })
    }

    /// Dead letters written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Commits the dead letters: the file, if any dead letter was written (its location is
    /// returned); for a topic, waits until the broker has every message.
    pub fn commit(self) -> Result<Option<String>, StoreError> {
        match self.target {
            Target::File { file: None, .. } => Ok(None),
            Target::File { file: Some(f), .. } => {
                let location = f.location().to_string();
                f.commit()?;
                Ok(Some(location))
            }
            Target::Topic(batch) => batch.finish().map(|()| None),
        }
    }

    /// [`DeadLetterWriter::commit`], but a file only where none stands yet (create-only; a
    /// file already there is `StoreError::Exists`).
    pub fn commit_new(self) -> Result<Option<String>, StoreError> {
        match self.target {
            Target::File { file: Some(f), .. } => {
                let location = f.location().to_string();
                f.commit_new()?;
                Ok(Some(location))
            }
            _ => self.commit(),
        }
    }

    /// Discards what was written (messages already sent to a topic stay there).
    pub fn abort(self) -> Result<(), StoreError> {
        match self.target {
            Target::File { file: Some(f), .. } => f.abort(),
            _ => Ok(()),
        }
    }
}

/// The JSON line of a dead letter.
fn line<'a>(source: &'a str, d: &'a DeadLetter) -> Line<'a> {
    let (record, record_base64) = match std::str::from_utf8(&d.record) {
        Ok(s) => (Some(s), None),
        Err(_) => (None, Some(&d.record[..])),
    };
    Line {
        source,
        line: d.position.line,
        offset: d.position.offset,
        reason: &d.reason,
        class: d.class(),
        stage: stage_of(&d.reason),
        record,
        record_base64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_the_class_and_the_stage() {
        let d = DeadLetter {
            position: crate::decode::Position { offset: 7, line: 3 },
            reason: "stage `mask`: Cast error: cannot cast".into(),
            record: b"{\"a\":1}".to_vec(),
        };
        let v = serde_json::to_value(line("events-0", &d)).unwrap();
        assert_eq!(v["stage"], "mask");
        assert_eq!(v["class"], "stage");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["record"], "{\"a\":1}");
        let d = DeadLetter {
            record: vec![0xff, 0xfe],
            reason: "not UTF-8".into(),
            ..d
        };
        let v = serde_json::to_value(line("events-0", &d)).unwrap();
        assert!(v.get("stage").is_none());
        assert_eq!(v["record_base64"], "//4=");
    }
}
