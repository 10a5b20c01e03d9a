//! One Kafka partition as the source sees it: where reading stands, and the messages buffered
//! for the next chunk (one per line, with their offsets and the metadata the schema asks for).

use super::batch::Msg;
use super::unreadable::Probe;
use crate::decode::cost::{LineCost, Tally};
use crate::decode::meta::{MessageMeta, MetaNeeds, RecordMark, SKIPPED, UNREADABLE};
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
    /// Where each buffered message's line ends in `buf` (its newline), so the decoder need
    /// not scan for them ([`Chunk::ends`]).
    pub ends: Vec<usize>,
    pub offsets: Vec<u64>,
    pub meta: MessageMeta,
    /// The bytes `meta` holds of the buffered messages (keys, headers, the bytes of
    /// unreadable ones): counted with `buf` against the partition's share of the budget, or a
    /// message of a few bytes with a megabyte of key would be buffered 16,384 at a time.
    pub meta_bytes: usize,
    /// A seek that librdkafka refused for now (retried before each poll).
    pub seek_pending: bool,
    /// `next` was checked against the broker's log since the last restart.
    pub checked: bool,
    /// Just past the highest offset ever buffered or sought to: what a bounded run must
    /// commit.
    pub owed: i64,
    /// Static runs: (re)assigned, and no message of it buffered since (see
    /// `read::forward_again`).
    pub forward_pending: bool,
    /// The search for the end of a record batch the client cannot read (see `unreadable`).
    pub probe: Option<Probe>,
    /// Group mode: librdkafka stopped fetching it; to be assigned again at `next`.
    pub refetch_pending: bool,
    /// Group mode: a gap met while reading (why): refused once what it buffered before the
    /// gap is handed on (see `refused`); nothing more is taken meanwhile.
    pub refusing: Option<String>,
    /// Bounded runs: librdkafka fetched to the log's end at or past `end` (see `log_end`).
    pub ended: bool,
    /// Bounded runs: an end-of-log event below `end` was the partition's last item: its
    /// position in librdkafka is one past the log's end (see `log_end`).
    pub past_end: bool,
    /// The buffered messages are what a chunk cut by what its lines decode to left (see
    /// `emit`): they go on at once, not when more arrive.
    pub cut: bool,
    /// The last message buffered: its timestamp, and whether it stands for a record batch
    /// the client could not read (see `push_unreadable`); for the chunk's [`RecordMark`].
    last_stamp: Option<i64>,
    last_batch: bool,
    /// A checkpoint's mark of its last message, to compare with the broker's before reading
    /// on (see `identity`): set by a start from a checkpoint, taken when compared. It stays
    /// through a restart elsewhere (a restored spill's end): it is about the log, not about
    /// where reading stands in it.
    pub expect: Option<RecordMark>,
    /// The log's start when `next` was last checked against it (see `gap::check_position`).
    pub low: Option<i64>,
}

/// The smallest chunk a partition hands on (`KafkaSource::threshold`): while partitions'
/// shares of the budget are at least this, each keeps room for about twice its last chunk.
pub const MIN_CHUNK: usize = 64 * 1024;

impl Part {
    /// After handing on a chunk of `bytes` and `lines`: room kept for about twice it, for the
    /// next chunk (at least 4 KiB, 64 entries). Where so many partitions are owned that a
    /// partition's `share` of the budget is below [`MIN_CHUNK`], at most the share: each
    /// kept room for a chunk of 64 KiB, about 128 KiB idle, so 10,000 partitions held about
    /// 1.3 GiB past a budget of 16 chunks (a chunk's room grows again as it fills, counted).
    pub fn keep_room(&mut self, bytes: usize, lines: usize, share: usize) {
        let (mut room, mut entries) = ((2 * bytes).max(4096), (2 * lines).max(64));
        if share < MIN_CHUNK {
            room = room.min(share.max(4096));
            entries = entries.min((share / 64).max(64));
        }
        self.buf.shrink_to(room);
        self.ends.shrink_to(entries);
        self.offsets.shrink_to(entries);
        self.meta.shrink_to(entries);
    }

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
            ends: Vec::new(),
            offsets: Vec::new(),
            meta,
            meta_bytes: 0,
            seek_pending: false,
            checked: false,
            owed: 0,
            forward_pending: false,
            probe: None,
            refetch_pending: false,
            refusing: None,
            ended: false,
            past_end: false,
            cut: false,
            last_stamp: None,
            last_batch: false,
            expect: None,
            low: None,
        }
    }

    /// Reading restarts at `offset`; what was buffered is dropped.
    pub fn restart(&mut self, offset: i64) {
        self.refusing = None;
        self.next = offset;
        self.from = offset;
        self.checked = false;
        self.ended = false;
        self.past_end = false;
        self.drop_buffer();
    }

    /// The partition was revoked: what it buffered is dropped and its buffers are given back
    /// (an idle partition keeps room for about twice its last chunk; one this process no
    /// longer reads keeps none, or a member that held many partitions in turn would keep
    /// room for all of them).
    pub fn release(&mut self) {
        self.refusing = None;
        self.drop_buffer();
        self.buf = Vec::new();
        self.ends = Vec::new();
        self.offsets = Vec::new();
        self.meta = MessageMeta {
            topic: self.info.topic.clone(),
            partition: self.partition,
            ..MessageMeta::default()
        };
    }

    /// The room its buffers hold, in bytes.
    #[cfg(test)]
    pub fn room(&self) -> usize {
        use std::mem::size_of;
        self.buf.capacity()
            + 8 * (self.ends.capacity() + self.offsets.capacity())
            + size_of::<Option<i64>>() * self.meta.timestamps.capacity()
            + size_of::<Option<Vec<u8>>>() * self.meta.keys.capacity()
            + size_of::<Option<String>>() * self.meta.headers.capacity()
    }

    pub fn drop_buffer(&mut self) {
        self.cut = false;
        self.buf.clear();
        self.ends.clear();
        self.offsets.clear();
        self.meta.clear();
        self.meta_bytes = 0;
        self.seek_pending = false;
        self.probe = None;
    }

    /// The bytes buffered: the lines, what the metadata holds of them, and each message's
    /// entries (its end and offset, and its timestamp, key and headers where the schema reads
    /// them): a million messages of one byte held about 20 MB beside their 2 MB of lines.
    pub fn held(&self) -> usize {
        use std::mem::size_of;
        self.buf.len()
            + self.meta_bytes
            + 8 * (self.ends.len() + self.offsets.len())
            + size_of::<Option<i64>>() * self.meta.timestamps.len()
            + size_of::<Option<Vec<u8>>>() * self.meta.keys.len()
            + size_of::<Option<String>>() * self.meta.headers.len()
    }

    /// A bounded run reached its end here.
    pub fn done(&self) -> bool {
        self.ended || self.end.is_some_and(|e| self.next >= e)
    }

    /// Bounded runs: librdkafka fetched the partition to the log's end, `offset`, after every
    /// message before it (the event comes in order with them). A run whose end lies at or
    /// before it has read all there is: what lies between its last message and its end holds
    /// no record to read (a transaction's marker, aborted or compacted records), and without
    /// this the run would wait for ever. A probe takes it as an answer. Returns whether the
    /// partition is done now. The batch read moved librdkafka's position (where a pause
    /// resumes) one past the event's offset: harmless for a partition done, and a seek
    /// pending or a probe's next seek sets it again; else, below `end` (a follower's end, a
    /// high watermark lagging after a leader change), the record at the log's end would be
    /// skipped after a pause, so a pause seeks the partition back (`past_end`).
    pub fn log_end(&mut self, offset: i64) -> bool {
        if !self.owned || self.seek_pending || self.done() {
            return false;
        }
        if let Some(probe) = self.probe.as_mut() {
            probe.message(offset);
            return false;
        }
        self.ended = self.end.is_some_and(|e| offset >= e);
        self.past_end = !self.ended;
        self.ended
    }

    /// Bounded runs: an item (a message, an unreadable batch's error) at `offset`, at or past
    /// `end`, came in order after every record before it: the partition is done, whatever
    /// lies between its last record and its end (a transaction's marker, aborted or compacted
    /// records). Without this, a range ending just before an unreadable batch would wait for
    /// ever (librdkafka fetches that batch again and again, so no end-of-log event comes),
    /// and one ending on a marker would wait for the whole rest of the log. Returns whether
    /// it ended the partition now.
    pub fn passed_end(&mut self, offset: i64) -> bool {
        let past = self.end.is_some_and(|e| offset >= e);
        if !past || !self.owned || self.seek_pending || self.probe.is_some() || self.done() {
            return false;
        }
        self.ended = true;
        true
    }

    /// Buffers a message unless it is not wanted (not owned, from before a seek, past the
    /// end of a bounded run (which ends it, see `passed_end`), or while a seek is still to
    /// be made: the fetcher may still be ahead of a rewind, and taking its messages would
    /// skip the records in between). While a probe runs, a message only answers it. Returns
    /// whether it was buffered.
    pub fn push(&mut self, msg: &Msg<'_>, needs: MetaNeeds) -> bool {
        let offset = msg.offset();
        if let Some(probe) = self.probe.as_mut().filter(|_| self.owned) {
            probe.message(offset);
            return false;
        }
        if self.passed_end(offset) {
            return false;
        }
        if !self.owned
            || self.seek_pending
            || self.refusing.is_some()
            || offset < self.next
            || self.end.is_some_and(|e| offset >= e)
        {
            return false;
        }
        self.line(msg.payload(), needs.skip_tombstones);
        self.offsets.push(offset as u64);
        self.past_end = false;
        let stamp = msg.timestamp_ms();
        (self.last_stamp, self.last_batch) = (stamp, false);
        if needs.timestamps {
            self.meta.timestamps.push(stamp);
        }
        if needs.keys {
            let key = msg.key().map(<[u8]>::to_vec);
            self.meta_bytes += key.as_ref().map_or(0, Vec::len);
            self.meta.keys.push(key);
        }
        if needs.headers {
            let headers = msg
                .headers()
                .map(|hs| super::headers::json(hs.iter().map(|(k, v)| (k.as_ref(), *v))));
            self.meta_bytes += headers.as_ref().map_or(0, String::len);
            self.meta.headers.push(headers);
        }
        self.next = offset + 1;
        self.owed = self.owed.max(self.next);
        true
    }

    /// Buffers one message's payload as one line. JSON allows raw line breaks only as
    /// whitespace between tokens: those become spaces. A message without a value (a
    /// tombstone), empty or only whitespace, or with a raw line break inside a string (invalid
    /// JSON, which a space would silently "repair"), stands as a placeholder line and becomes a
    /// dead letter with its own bytes and a reason saying which.
    /// So every line is one record, which `ends` records.
    pub(super) fn line(&mut self, payload: Option<&[u8]>, skip_tombstones: bool) {
        let unreadable = |why: &str, bytes: &[u8], meta: &mut MessageMeta, index: usize| {
            meta.unreadable
                .push((index, bytes.to_vec(), why.to_string()));
            unreadable_cost(bytes, why)
        };
        let index = self.offsets.len();
        match payload {
            None | Some([]) => {
                let why = match payload {
                    None if skip_tombstones => SKIPPED,
                    None => {
                        "a tombstone: the message has no value (no JSON value; \
                         source.tombstones = \"skip\" passes over them)"
                    }
                    Some(_) => "the message is empty (no JSON value)",
                };
                self.meta_bytes += unreadable(why, b"", &mut self.meta, index);
                self.buf.extend_from_slice(UNREADABLE);
            }
            Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {
                self.meta_bytes += unreadable(
                    "the message holds only whitespace (no JSON value)",
                    bytes,
                    &mut self.meta,
                    index,
                );
                self.buf.extend_from_slice(UNREADABLE);
            }
            Some(bytes) if memchr::memchr2(b'\n', b'\r', bytes).is_none() => {
                self.buf.extend_from_slice(bytes)
            }
            Some(bytes) if line_break_in_string(bytes) => {
                self.meta_bytes += unreadable(
                    "invalid JSON: a raw line break inside a string (JSON writes it as \\n)",
                    bytes,
                    &mut self.meta,
                    index,
                );
                self.buf.extend_from_slice(UNREADABLE);
            }
            Some(bytes) => {
                // Where each was, so that a dead letter holds the message's own bytes.
                self.meta_bytes += self.meta.rewritten.push(index, bytes);
                self.buf.extend(
                    bytes
                        .iter()
                        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
                );
            }
        }
        self.ends.push(self.buf.len());
        self.buf.push(b'\n');
    }

    /// Buffers a record batch the client could not read, ending at `last`, as one unreadable
    /// line (a dead letter with reason `why`, no bytes); reading goes on after it.
    pub fn push_unreadable(&mut self, last: i64, why: String, needs: MetaNeeds) {
        self.meta_bytes += unreadable_cost(&[], &why);
        self.meta
            .unreadable
            .push((self.offsets.len(), Vec::new(), why));
        self.buf.extend_from_slice(UNREADABLE);
        self.ends.push(self.buf.len());
        self.buf.push(b'\n');
        self.offsets.push(last as u64);
        if needs.timestamps {
            self.meta.timestamps.push(None);
        }
        if needs.keys {
            self.meta.keys.push(None);
        }
        if needs.headers {
            self.meta.headers.push(None);
        }
        self.next = last + 1;
        self.owed = self.owed.max(self.next);
        self.last_batch = true;
    }

    /// The mark of buffered message `i`, with its timestamp `stamp`: of its line, or of its
    /// own bytes where a placeholder stands for it (see `line`).
    pub(super) fn mark_at(&self, i: usize, stamp: Option<i64>) -> RecordMark {
        let start = i.checked_sub(1).map_or(0, |j| self.ends[j] + 1);
        let line = &self.buf[start..self.ends[i]];
        let bytes = match line == UNREADABLE {
            true => self
                .meta
                .unreadable
                .iter()
                .rev()
                .find(|u| u.0 == i)
                .map_or(line, |u| &u.1[..]),
            false => line,
        };
        RecordMark::of(self.offsets[i], stamp, bytes)
    }

    /// Moves the buffered messages into `chunk` (whose buffers come back for reuse): all of
    /// them, or with `cost`, the first ones whose lines may decode to no more than a chunk
    /// may (see `decode::cost`); the rest stay buffered.
    pub fn emit(&mut self, chunk: &mut Chunk, cost: Option<&LineCost>) -> Next {
        let mut tally = Tally::default();
        let k = cost.map_or(self.ends.len(), |c| {
            c.fit(&self.buf, &self.ends, &mut tally)
        });
        // The lines handed on are measured now (`fit` measured up to the first left behind).
        chunk.measured = cost.is_some() && !tally.flagged;
        self.cut = k < self.ends.len();
        if self.cut {
            return self.emit_first(k, chunk);
        }
        chunk.mark = match self.ends.len() {
            n if n > 0 && !self.last_batch => Some(self.mark_at(n - 1, self.last_stamp)),
            _ => None,
        };
        std::mem::swap(&mut chunk.data, &mut self.buf);
        std::mem::swap(&mut chunk.ends, &mut self.ends);
        std::mem::swap(&mut chunk.offsets, &mut self.offsets);
        std::mem::swap(&mut chunk.meta, &mut self.meta);
        self.buf.clear();
        self.ends.clear();
        self.offsets.clear();
        self.meta.clear();
        self.meta_bytes = 0;
        self.meta.topic.clone_from(&self.info.topic);
        self.meta.partition = self.partition;
        chunk.first_line = 1;
        chunk.first_offset = 0;
        chunk.from_offset = Some(self.from as u64);
        self.from = self.next;
        Next::Chunk(self.info.id)
    }

    /// Moves the first `k` buffered messages (at least one, not all) into `chunk`, with their
    /// offsets and metadata; the next chunk starts just past the last of them.
    fn emit_first(&mut self, k: usize, chunk: &mut Chunk) -> Next {
        // Its timestamp only when the schema keeps them. Here a tombstone's entry is not told
        // from an unreadable batch's (the full emit knows by `last_batch`): neither is marked.
        let stamp = self.meta.timestamps.get(k - 1).copied().flatten();
        chunk.mark = (!self.meta.unreadable.iter().any(|u| u.0 == k - 1))
            .then(|| self.mark_at(k - 1, stamp));
        let cut = self.ends[k - 1] + 1;
        chunk.data.clear();
        chunk.data.extend(self.buf.drain(..cut));
        chunk.ends.clear();
        chunk.ends.extend(self.ends.drain(..k));
        self.ends.iter_mut().for_each(|e| *e -= cut);
        chunk.offsets.clear();
        chunk.offsets.extend(self.offsets.drain(..k));
        let (ours, theirs) = (&mut self.meta, &mut chunk.meta);
        theirs.clear();
        theirs.topic.clone_from(&ours.topic);
        theirs.partition = ours.partition;
        // Each list holds one entry a message, or none when the schema does not ask for it.
        let first = |n: usize| k.min(n);
        theirs
            .timestamps
            .extend(ours.timestamps.drain(..first(ours.timestamps.len())));
        theirs
            .keys
            .extend(ours.keys.drain(..first(ours.keys.len())));
        theirs
            .headers
            .extend(ours.headers.drain(..first(ours.headers.len())));
        let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut ours.unreadable)
            .into_iter()
            .partition(|(line, _, _)| *line < k);
        theirs.unreadable = taken;
        ours.unreadable = kept
            .into_iter()
            .map(|(line, bytes, why)| (line - k, bytes, why))
            .collect();
        theirs.rewritten = ours.rewritten.take_first(k);
        self.meta_bytes = ours.keys.iter().flatten().map(Vec::len).sum::<usize>()
            + ours
                .headers
                .iter()
                .flatten()
                .map(String::len)
                .sum::<usize>()
            + ours
                .unreadable
                .iter()
                .map(|(_, b, why)| unreadable_cost(b, why))
                .sum::<usize>()
            + ours.rewritten.cost();
        chunk.first_line = 1;
        chunk.first_offset = 0;
        chunk.from_offset = Some(self.from as u64);
        self.from = chunk.offsets[k - 1] as i64 + 1;
        Next::Chunk(self.info.id)
    }
}

/// Whether a raw CR or LF of `bytes` stands inside a JSON string (tracking quotes and
/// backslash escapes from the start).
fn line_break_in_string(bytes: &[u8]) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                b'\n' | b'\r' => return true,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        }
    }
    false
}

/// What an unreadable message's entry holds: its bytes, its reason, and the entry itself (a
/// partition of tombstones holds little else).
fn unreadable_cost(bytes: &[u8], why: &str) -> usize {
    bytes.len() + why.len() + 64
}

#[cfg(test)]
#[path = "part_tests.rs"]
mod tests;
