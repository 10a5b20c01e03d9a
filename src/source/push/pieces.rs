//! A push body of more lines than a chunk holds, decoded in pieces of at most that many
//! ([`MAX_CHUNK_LINES`]), each handed on as a chunk of its own, as every source cuts its
//! chunks.

use crate::decode::framing::MAX_CHUNK_LINES;
use crate::decode::{Chunk, Decoded, RecordDecoder};

/// A request's records decoded in pieces of at most a chunk's line cap
/// ([`MAX_CHUNK_LINES`]), as one chunk each, as the source hands them on (an item of more
/// lines would make one commit of a file per path for each of them): each piece with where
/// it ends in the request. Most requests are one piece, decoded in place.
pub(super) fn decode_in_pieces(
    decoder: &mut RecordDecoder,
    chunk: &Chunk,
    lines: u64,
) -> Vec<(u64, Decoded)> {
    let len = chunk.data.len() as u64;
    if lines as usize <= MAX_CHUNK_LINES {
        return vec![(len, decoder.decode(chunk))];
    }
    let mut records = Vec::new();
    crate::decode::framing::split_records_of(chunk, decoder.kind(), &mut records);
    if records.len() <= MAX_CHUNK_LINES {
        // More lines than records (blank lines, quoted line breaks): one piece still.
        return vec![(len, decoder.decode(chunk))];
    }
    let mut pieces = Vec::new();
    let mut cut = 0usize;
    for (k, group) in records.chunks(MAX_CHUNK_LINES).enumerate() {
        let first = &group[0];
        // Each piece from where the last ended to the start of the next piece's first record
        // (the last: to the request's end): blank lines after a piece's last record go with
        // it. Each piece is a copy of its bytes while it is decoded (at most the body once
        // more, outside the request's reservation).
        let end = records
            .get((k + 1) * MAX_CHUNK_LINES)
            .map_or(chunk.data.len(), |r| r.start);
        let piece = Chunk {
            data: chunk.data[cut..end].to_vec(),
            first_line: first.pos.line
                - memchr::memchr_iter(b'\n', &chunk.data[cut..first.start]).count() as u64,
            first_offset: cut as u64,
            ..Chunk::default()
        };
        pieces.push((end as u64, decoder.decode(&piece)));
        cut = end;
    }
    pieces
}
