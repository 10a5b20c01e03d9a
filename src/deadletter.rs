//! The dead-letter output: one JSON line per record that could not be decoded, with its
//! source, position, the reason, and the original record (as text, or base64 when it is not
//! UTF-8). The file is created on the first dead letter, so clean runs leave none.

use std::io::Write;

use base64::Engine;
use serde::Serialize;

use crate::decode::DeadLetter;
use crate::sink::{Destination, OutputFile, SinkError};

#[derive(Serialize)]
struct Line<'a> {
    source: &'a str,
    line: u64,
    offset: u64,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_base64: Option<String>,
}

/// Writes dead letters of one source to `rel` under a destination.
pub struct DeadLetterWriter {
    dest: Destination,
    rel: String,
    source: String,
    file: Option<OutputFile>,
    count: u64,
    buf: Vec<u8>,
}

impl DeadLetterWriter {
    pub fn new(dest: Destination, rel: String, source: String) -> Self {
        DeadLetterWriter {
            dest,
            rel,
            source,
            file: None,
            count: 0,
            buf: Vec::new(),
        }
    }

    /// Appends dead letters.
    pub fn write(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        if letters.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(self.dest.create(&self.rel)?);
        }
        self.buf.clear();
        for d in letters {
            let (record, record_base64) = match std::str::from_utf8(&d.record) {
                Ok(s) => (Some(s), None),
                Err(_) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(&d.record)),
                ),
            };
            let line = Line {
                source: &self.source,
                line: d.position.line,
                offset: d.position.offset,
                reason: &d.reason,
                record,
                record_base64,
            };
            serde_json::to_writer(&mut self.buf, &line).expect("serializing to memory");
            self.buf.push(b'\n');
        }
        let file = self.file.as_mut().expect("created above");
        file.write_all(&self.buf).map_err(|source| SinkError::Io {
            path: self.dest.display(&self.rel),
            source,
        })?;
        self.count += letters.len() as u64;
        Ok(())
    }

    /// Dead letters written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Commits the file, if any dead letter was written; returns its location.
    pub fn commit(self) -> Result<Option<String>, SinkError> {
        match self.file {
            None => Ok(None),
            Some(f) => {
                let location = f.location().to_string();
                f.commit()?;
                Ok(Some(location))
            }
        }
    }

    /// Discards what was written.
    pub fn abort(self) -> Result<(), SinkError> {
        match self.file {
            None => Ok(()),
            Some(f) => f.abort(),
        }
    }
}
