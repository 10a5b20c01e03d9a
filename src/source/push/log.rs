//! Where pushed data waits between its acknowledgement and the commit of the files that hold
//! it: the WAL on disk (`wal` durability), or a buffer in memory (`memory`). Both are read from
//! any position still held (a rewind replays from the last commit) and release what is
//! committed.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::decode::cost::{LineCost, Tally};
use crate::decode::framing::{last_record_boundary, record_boundary_within, MAX_CHUNK_LINES};
use crate::wal::{Mark, Wal, WalError};

/// How a replay frames what it reads: where a request may be cut, and whether each
/// request is a chunk of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Framing {
    /// CSV's delimiter (records may span lines): where a replay may cut a request.
    pub quote: Option<u8>,
    /// One request a chunk at most: each is decoded with a stage account of its own, as
    /// when it was taken (see [`super::PushSettings::replay_alone`]).
    pub alone: bool,
}

/// Acknowledged records kept in memory until committed.
#[derive(Default)]
pub struct MemLog {
    start: u64,
    end: u64,
    /// (position, payload), contiguous from `start`.
    records: VecDeque<(u64, Vec<u8>)>,
}

impl MemLog {
    fn read(&self, pos: u64, limit: u64, max: usize, out: &mut Vec<u8>) -> u64 {
        let mut i = self
            .records
            .partition_point(|(p, r)| p + r.len() as u64 <= pos);
        let mut at = pos;
        let before = out.len();
        while at < limit && out.len() - before < max {
            let Some((p, r)) = self.records.get(i) else {
                break;
            };
            // Up to `limit` (a piece of a request ends inside it).
            let end = (limit - p).min(r.len() as u64);
            out.extend_from_slice(&r[(at - p) as usize..end as usize]);
            at = p + end;
            i += 1;
        }
        at
    }
}

/// What a request kept in a memory log costs beyond its bytes: its slot in the queue (32 B)
/// and its allocation's own (at least 32 B, and its rounding), counted against
/// `max_retained` (pushes of a byte or two each held about 40 times their bytes).
pub const RECORD_COST: u64 = 96;

/// The log of one push partition.
pub enum Log {
    Memory(MemLog),
    Wal(Box<Wal>),
}

impl Log {
    pub fn start(&self) -> u64 {
        match self {
            Log::Memory(m) => m.start,
            Log::Wal(w) => w.start(),
        }
    }

    pub fn end(&self) -> u64 {
        match self {
            Log::Memory(m) => m.end,
            Log::Wal(w) => w.end(),
        }
    }

    /// What a record it holds costs beyond its bytes: in memory, [`RECORD_COST`] (a WAL
    /// holds them on disk, behind a 16-byte header each).
    pub fn record_cost(&self) -> u64 {
        match self {
            Log::Memory(_) => RECORD_COST,
            Log::Wal(_) => 0,
        }
    }

    /// What the records it holds cost beyond their bytes ([`Log::record_cost`] each).
    pub fn fixed_cost(&self) -> u64 {
        match self {
            Log::Memory(m) => m.records.len() as u64 * RECORD_COST,
            Log::Wal(_) => 0,
        }
    }

    /// Appends one request's records; returns their (start, end) positions.
    pub fn append(&mut self, mut payload: Vec<u8>) -> Result<(u64, u64), WalError> {
        match self {
            Log::Memory(m) => {
                // Kept until committed and counted by its length (`max_retained`): a
                // request's buffer, grown by doubling as its body (or gzip) was read, holds
                // up to twice that, and a small one 64 KiB.
                if payload.capacity() > payload.len() + payload.len() / 8 + 64 {
                    payload.shrink_to_fit();
                }
                let start = m.end;
                m.end += payload.len() as u64;
                m.records.push_back((start, payload));
                Ok((start, m.end))
            }
            Log::Wal(w) => w.append(&payload),
        }
    }

    /// Where the log ends now, to take back to when a sync fails (`None`: memory, which syncs
    /// nothing).
    pub fn mark(&self) -> Option<Mark> {
        match self {
            Log::Memory(_) => None,
            Log::Wal(w) => Some(w.mark()),
        }
    }

    /// Takes back, durably, every record appended since `good` (the mark of the last sync
    /// that succeeded): their requests are refused, and the next start must not replay them
    /// (see `wal::cut`). Returns what to tell them.
    pub fn take_back(&mut self, good: Option<Mark>) -> String {
        let (Log::Wal(w), Some(good)) = (self, good) else {
            return String::new();
        };
        match w.cut_back(good) {
            Ok(()) => format!(
                "; the log was cut back to position {} (nothing of a refused request stays)",
                good.end()
            ),
            Err(e) => {
                tracing::error!(error = %e, "cutting the WAL back to its last sync failed: refused requests may be replayed at the next start");
                format!(
                    "; cutting the log back to its last sync failed too ({e}): a refused request may still be exported"
                )
            }
        }
    }

    /// The file to fsync for durability (`None`: memory, nothing to sync).
    pub fn sync_handle(&self) -> Option<Arc<File>> {
        match self {
            Log::Memory(_) => None,
            Log::Wal(w) => Some(w.sync_handle()),
        }
    }

    /// Payload bytes from `pos` up to `limit` (see `Wal::read_records`; `sums`: checksums
    /// checked).
    pub fn read(
        &mut self,
        pos: u64,
        limit: u64,
        max: usize,
        out: &mut Vec<u8>,
        sums: bool,
    ) -> Result<u64, WalError> {
        match self {
            Log::Memory(m) => Ok(m.read(pos, limit, max, out)),
            Log::Wal(w) => w.read_records(pos, limit, max, out, sums),
        }
    }

    /// Reads records to decode again (a replay) from `pos` (a record boundary) up to
    /// `limit`: up to `max` bytes of whole requests (at least one; only one with
    /// `framing.alone`), and at most [`MAX_CHUNK_LINES`] lines, cutting a request at a record
    /// boundary when one holds more (`framing.quote`: CSV's delimiter, as the request was
    /// framed when taken; each request holds whole records). Returns where reading stopped.
    pub fn replay(
        &mut self,
        pos: u64,
        limit: u64,
        max: usize,
        framing: Framing,
        mut cost: Option<(&LineCost, &mut Tally)>,
        out: &mut Vec<u8>,
    ) -> Result<u64, WalError> {
        let quote = framing.quote;
        let (mut at, mut lines, before) = (pos, 0, out.len());
        while at < limit
            && out.len() - before < max
            && lines < MAX_CHUNK_LINES
            && !cost.as_ref().is_some_and(|(c, t)| c.full(t))
        {
            let from = out.len();
            let next = self.read(at, limit, 1, out, true)?;
            if next == at {
                break;
            }
            let read = memchr::memchr_iter(b'\n', &out[from..]).count();
            // Where the request is cut, if it is.
            let mut cut = None;
            if lines + read > MAX_CHUNK_LINES {
                cut = record_boundary_within(&out[from..], quote, MAX_CHUNK_LINES - lines)
                    .filter(|&c| from + c < out.len());
            }
            if let Some((c, tally)) = cost.as_mut() {
                // Lines that decode to many times their bytes (see `decode::cost`): every
                // line kept is measured, into `tally`.
                let upto = cut.unwrap_or(out.len() - from);
                cut = c.cut(&out[from..from + upto], tally).or(cut);
            }
            if let Some(cut) = cut {
                out.truncate(from + cut);
                return Ok(at + cut as u64);
            }
            at = next;
            lines += read;
            if framing.alone {
                break;
            }
            // A request taken by an older framer may end inside a CSV quote under today's
            // (`a"b,"c`): it ends its chunk, so its open quote cannot swallow the next
            // request's records into its own dead letter.
            if quote.is_some()
                && last_record_boundary(&out[from..], quote) != Some(out.len() - from)
            {
                break;
            }
        }
        Ok(at)
    }

    /// Makes `pos` a valid reading position (see [`Wal::seek_check`]): past the end the log
    /// continues from `pos`; before the start is an error (a memory log holds nothing from
    /// before this process, e.g. the records of a restored spill).
    pub fn seek_check(&mut self, pos: u64) -> Result<(), WalError> {
        match self {
            Log::Memory(m) => {
                if pos > m.end {
                    // A checkpoint or spill ahead of a log that started empty: continue there.
                    m.records.clear();
                    m.start = pos;
                    m.end = pos;
                } else if pos < m.start {
                    return Err(WalError::Released {
                        dir: PathBuf::from("(memory)"),
                        want: pos,
                        start: m.start,
                    });
                }
                Ok(())
            }
            Log::Wal(w) => w.seek_check(pos),
        }
    }

    /// Drops what is before `committed` (whole records / whole segments).
    pub fn release(&mut self, committed: u64) -> Result<(), WalError> {
        match self {
            Log::Memory(m) => {
                while let Some((p, r)) = m.records.front() {
                    if p + r.len() as u64 > committed {
                        break;
                    }
                    m.records.pop_front();
                }
                // The queue's slots are counted while held (`RECORD_COST`): a burst of tiny
                // requests leaves none behind once released.
                if m.records.capacity() > 1024 && m.records.len() < m.records.capacity() / 4 {
                    m.records.shrink_to(2 * m.records.len());
                }
                m.start = m.records.front().map_or(m.end, |(p, _)| *p);
                Ok(())
            }
            Log::Wal(w) => w.release(committed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv() -> Framing {
        Framing {
            quote: Some(b','),
            alone: false,
        }
    }

    /// A request's buffer grown past its body (64 KiB for a line, by doubling for more) is
    /// kept at its length: the log's bound counts lengths. (Kept whole, a push of one
    /// 100-byte line held 64 KiB.)
    #[test]
    fn memory_log_keeps_payloads_at_their_length() {
        let mut log = Log::Memory(MemLog::default());
        let mut payload = Vec::with_capacity(64 << 10);
        payload.extend_from_slice(b"{\"a\":1}\n");
        log.append(payload).unwrap();
        let Log::Memory(m) = &log else { unreachable!() };
        let kept = &m.records[0].1;
        assert!(
            kept.capacity() < 64,
            "{} bytes kept for {}",
            kept.capacity(),
            kept.len()
        );
    }

    #[test]
    fn memory_log_reads_from_any_position_and_releases_whole_records() {
        let mut log = Log::Memory(MemLog::default());
        log.seek_check(100).unwrap();
        assert_eq!(log.append(b"a\nbb\n".to_vec()).unwrap(), (100, 105));
        assert_eq!(log.append(b"ccc\n".to_vec()).unwrap(), (105, 109));
        let mut out = Vec::new();
        assert_eq!(log.read(102, 109, 1, &mut out, true).unwrap(), 105);
        assert_eq!(out, b"bb\n");
        out.clear();
        assert_eq!(log.read(100, 109, 100, &mut out, true).unwrap(), 109);
        assert_eq!(out, b"a\nbb\nccc\n");
        log.release(104).unwrap();
        assert_eq!(
            log.start(),
            100,
            "a record is kept until all of it is committed"
        );
        log.release(105).unwrap();
        assert_eq!(log.start(), 105);
        log.release(109).unwrap();
        assert_eq!((log.start(), log.end()), (109, 109));
        assert!(
            log.seek_check(100).is_err(),
            "released records cannot be read again"
        );
        log.seek_check(109).unwrap();
        assert_eq!(
            (log.start(), log.end()),
            (109, 109),
            "the end never moves back"
        );
    }

    /// A read stops at its limit inside a record (a piece of a request decoded in pieces ends
    /// there), and the next goes on from it: each piece's read copies that piece, not the
    /// rest of the request (k pieces read about k²/2 pieces' worth, then cut it). A read
    /// from a record's start that checks sums still checks the whole record.
    #[test]
    fn a_read_stops_at_its_limit_inside_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), 1 << 20, crate::wal::Damage::Refuse)
            .unwrap()
            .0;
        for mut log in [Log::Memory(MemLog::default()), Log::Wal(Box::new(wal))] {
            log.seek_check(0).unwrap();
            log.append(b"0123456789".to_vec()).unwrap();
            log.append(b"ab".to_vec()).unwrap();
            let mut read = |pos, limit, sums| {
                let mut out = Vec::new();
                let next = log.read(pos, limit, usize::MAX, &mut out, sums).unwrap();
                (next, String::from_utf8(out).unwrap())
            };
            assert_eq!(read(0, 4, true), (4, "0123".into()));
            assert_eq!(read(4, 7, false), (7, "456".into()));
            assert_eq!(read(7, 11, false), (11, "789a".into()));
            assert_eq!(read(11, 12, true), (12, "b".into()));
            assert_eq!(read(0, 12, true), (12, "0123456789ab".into()));
        }
    }

    /// A replay holds at most MAX_CHUNK_LINES lines (tiny records decode to many times their
    /// bytes): it cuts a request at a record boundary (a CSV quoted record kept whole), and
    /// reading on from the cut gives the rest; on a WAL too.
    #[test]
    fn a_replay_holds_at_most_so_many_lines_cutting_requests_at_records() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), 1 << 20, crate::wal::Damage::Refuse)
            .unwrap()
            .0;
        let max = MAX_CHUNK_LINES;
        for mut log in [Log::Memory(MemLog::default()), Log::Wal(Box::new(wal))] {
            let lines = |n: usize| "}\n".repeat(n).into_bytes();
            let third = max / 3 + 1;
            let mut all = Vec::new();
            for n in [third, third, third, 3 * max, 1] {
                all.extend(lines(n));
                log.append(lines(n)).unwrap();
            }
            // A CSV record whose quoted field spans the cap's line stays whole.
            let quoted = format!("a\n\"{}\"\nb\n", "x\n".repeat(max)).into_bytes();
            all.extend_from_slice(&quoted);
            log.append(quoted).unwrap();
            let end = log.end();
            let (mut at, mut got, mut sizes) = (0, Vec::new(), Vec::new());
            while at < end {
                let mut out = Vec::new();
                let next = log.replay(at, end, 1 << 30, csv(), None, &mut out).unwrap();
                assert_eq!(next - at, out.len() as u64);
                sizes.push(memchr::memchr_iter(b'\n', &out).count());
                got.extend(out);
                at = next;
            }
            assert_eq!(got, all);
            // The fifth stops before the quoted record, which the sixth holds whole.
            assert_eq!(sizes, [max, max, max, max, 4, max + 1, 1]);
            // Bytes still cap a replay too (at least one request).
            let mut out = Vec::new();
            assert_eq!(
                log.replay(0, end, 10, Framing::default(), None, &mut out)
                    .unwrap(),
                2 * third as u64
            );
        }
    }

    /// A CSV request that ends inside a quote under today's framing (an older framer took
    /// `a"b,"c`) ends its replay chunk: the next request is framed afresh, not swallowed.
    #[test]
    fn a_csv_request_ending_inside_a_quote_ends_its_replay_chunk() {
        let mut log = Log::Memory(MemLog::default());
        let (_, first) = log.append(b"a\"b,\"c\n".to_vec()).unwrap();
        let (_, end) = log.append(b"x,y\n".to_vec()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            log.replay(0, end, 1 << 20, csv(), None, &mut out).unwrap(),
            first
        );
        out.clear();
        assert_eq!(
            log.replay(0, end, 1 << 20, Framing::default(), None, &mut out)
                .unwrap(),
            end
        );
    }

    /// Requests of lines whose list items decode to many times their text: a replay ends
    /// before the line that would take it past the cap (cutting a request there, or before
    /// the request), holds at least one line, and reading on from each cut gives the log
    /// whole; on a WAL too.
    #[test]
    fn a_replay_of_heavy_lines_is_cut_by_what_they_decode_to() {
        let (_, cost) = crate::decode::cost::wide_schema("");
        let items = |n: usize| format!("{{\"l\":[{}]}}\n", vec!["{}"; n].join(","));
        let one = cost.line(items(100).trim_end().as_bytes()).unwrap();
        let cost = cost.with_cap(4 * one);
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), 1 << 20, crate::wal::Damage::Refuse)
            .unwrap()
            .0;
        for mut log in [Log::Memory(MemLog::default()), Log::Wal(Box::new(wal))] {
            let mut all = Vec::new();
            // Requests of 3, 1, 6 and 2 lines; one line of 900 items.
            for request in [vec![100; 3], vec![900], vec![100; 6], vec![100, 1]] {
                let text: String = request.iter().map(|&n| items(n)).collect();
                all.extend_from_slice(text.as_bytes());
                log.append(text.into_bytes()).unwrap();
            }
            let end = log.end();
            let (mut at, mut got, mut sizes) = (0, Vec::new(), Vec::new());
            while at < end {
                let mut out = Vec::new();
                let mut tally = Tally::default();
                let next = log
                    .replay(
                        at,
                        end,
                        1 << 30,
                        Framing::default(),
                        Some((&cost, &mut tally)),
                        &mut out,
                    )
                    .unwrap();
                assert!(!tally.flagged);
                assert_eq!(next - at, out.len() as u64);
                let lines: Vec<&[u8]> = out
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .collect();
                let spent: u64 = lines.iter().map(|l| cost.line(l).unwrap()).sum();
                assert_eq!(tally.bytes, spent, "every line replayed was measured");
                assert!(
                    spent <= 4 * one || lines.len() == 1,
                    "{} lines, {spent}",
                    lines.len()
                );
                sizes.push(lines.len());
                got.extend(out);
                at = next;
            }
            assert_eq!(got, all);
            assert_eq!(sizes, [3, 1, 4, 4]);
        }
    }
}
