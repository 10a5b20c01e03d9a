//! One Kafka partition as the source sees it: where reading stands, and the messages buffered
//! for the next chunk (one per line, with their offsets and the metadata the schema asks for).

use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::decode::meta::{MessageMeta, MetaNeeds};
use crate::decode::Chunk;
use crate::source::{Next, PartitionInfo};

pub(super) struct Part {
    pub info: PartitionInfo,
    pub partition: i32,
    pub owned: bool,
    /// The next offset to read.
    pub next: i64,
    /// Bounded runs: the offset to stop at.
    pub end: Option<i64>,
    /// Where the buffered messages begin (the position before them).
    pub from: i64,
    pub buf: Vec<u8>,
    pub offsets: Vec<u64>,
    pub meta: MessageMeta,
    /// A seek that librdkafka refused for now (retried before each poll).
    pub seek_pending: bool,
}

impl Part {
    pub fn new(info: PartitionInfo, partition: i32) -> Part {
        let meta = MessageMeta {
            topic: info.topic.clone(),
            partition,
            ..MessageMeta::default()
        };
        Part {
            info,
            partition,
            owned: false,
            next: 0,
            end: None,
            from: 0,
            buf: Vec::new(),
            offsets: Vec::new(),
            meta,
            seek_pending: false,
        }
    }

    /// Reading restarts at `offset`; what was buffered is dropped.
    pub fn restart(&mut self, offset: i64) {
        self.next = offset;
        self.from = offset;
        self.drop_buffer();
    }

    pub fn drop_buffer(&mut self) {
        self.buf.clear();
        self.offsets.clear();
        self.meta.clear();
        self.seek_pending = false;
    }

    /// A bounded run reached its end here.
    pub fn done(&self) -> bool {
        self.end.is_some_and(|e| self.next >= e)
    }

    /// Buffers a message unless it is not wanted (not owned, from before a seek, past the
    /// end of a bounded run). Returns whether it was buffered.
    pub fn push(&mut self, msg: &BorrowedMessage<'_>, needs: MetaNeeds) -> bool {
        let offset = msg.offset();
        if !self.owned || offset < self.next || self.end.is_some_and(|e| offset >= e) {
            return false;
        }
        // JSON allows raw line breaks only as whitespace: they become spaces, so each message
        // stays one line.
        match msg.payload() {
            None | Some([]) => self.buf.extend_from_slice(b"null"),
            Some(bytes) if memchr::memchr2(b'\n', b'\r', bytes).is_none() => {
                self.buf.extend_from_slice(bytes)
            }
            Some(bytes) => {
                self.buf.extend(
                    bytes
                        .iter()
                        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
                )
            }
        }
        self.buf.push(b'\n');
        self.offsets.push(offset as u64);
        if needs.timestamps {
            self.meta.timestamps.push(msg.timestamp().to_millis());
        }
        if needs.keys {
            self.meta.keys.push(msg.key().map(<[u8]>::to_vec));
        }
        if needs.headers {
            self.meta.headers.push(msg.headers().map(|hs| {
                let mut obj = serde_json::Map::new();
                for h in hs.iter() {
                    let v = h.value.map_or(serde_json::Value::Null, |v| {
                        serde_json::Value::String(String::from_utf8_lossy(v).into_owned())
                    });
                    obj.insert(h.key.to_string(), v);
                }
                serde_json::Value::Object(obj).to_string()
            }));
        }
        self.next = offset + 1;
        true
    }

    /// Moves the buffered messages into `chunk` (whose buffers come back for reuse).
    pub fn emit(&mut self, chunk: &mut Chunk) -> Next {
        std::mem::swap(&mut chunk.data, &mut self.buf);
        std::mem::swap(&mut chunk.offsets, &mut self.offsets);
        std::mem::swap(&mut chunk.meta, &mut self.meta);
        self.buf.clear();
        self.offsets.clear();
        self.meta.clear();
        self.meta.topic.clone_from(&self.info.topic);
        self.meta.partition = self.partition;
        chunk.first_line = 1;
        chunk.first_offset = 0;
        chunk.from_offset = Some(self.from as u64);
        self.from = self.next;
        Next::Chunk(self.info.id)
    }
}
