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
        // more, not counted in the request's reservation: see OPERATIONS, Sizing memory).
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
        // One account of stage growth and work for the whole request, as for a request of
        // one piece: all pieces are held at once. Each counted from nothing, a request held
        // 256 MiB of growth per piece.
        let decoded = match k {
            0 => decoder.decode(&piece),
            _ => decoder.decode_on(&piece),
        };
        pieces.push((end as u64, decoded));
        cut = end;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::decode::DecodeOptions;
    use crate::schema::RepoSchema;
    use crate::stage::{OnError, Stages};

    /// The pieces of one request are held at once, so they share one account of what stage
    /// functions grow their values by (256 MiB): past it, records are dead letters. Before,
    /// each piece counted from nothing and a request of n pieces grew by n × 256 MiB.
    #[test]
    fn the_pieces_of_a_request_share_one_account_of_stage_growth() {
        let schema = "name = \"m\"\n[[fields]]\nname = \"m\"\ntype = \"string\"\n";
        let schema = Arc::new(RepoSchema::parse(schema, Path::new("m.toml")).unwrap());
        let mut decoder = RecordDecoder::new(schema, DecodeOptions::default(), None).unwrap();
        // Each record grows by 6 KiB: a piece (16,384 records) by 96 MiB, three by 288 MiB.
        let spec = toml::from_str("select = [\"repeat(m, 1025) AS m\"]").unwrap();
        let stages = Stages::plan(&[spec], decoder.output_schema(), OnError::DeadLetter);
        decoder = decoder.with_stages(stages.unwrap());
        let lines = 3 * MAX_CHUNK_LINES;
        let chunk = Chunk {
            data: "{\"m\":\"aaaaaa\"}\n".repeat(lines).into_bytes(),
            first_line: 1,
            ..Chunk::default()
        };
        let pieces = decode_in_pieces(&mut decoder, &chunk, lines as u64);
        assert_eq!(pieces.len(), 3);
        let (rows, dead): (u64, Vec<_>) = (
            pieces.iter().map(|(_, d)| d.rows()).sum(),
            pieces.iter().flat_map(|(_, d)| &d.dead).collect(),
        );
        assert!(!dead.is_empty(), "no record past 256 MiB grown in all");
        assert!(
            dead.iter()
                .all(|d| d.reason.contains("may grow a chunk by at most")),
            "{}",
            dead[0].reason
        );
        // Rows up to 256 MiB grown, all of the first two pieces; the rest dead letters.
        let most = (crate::stage::guard::MAX_GROWTH / (6 * 1024)) as usize;
        assert!(
            rows as usize <= most && rows as usize > 2 * MAX_CHUNK_LINES,
            "{rows}"
        );
        assert_eq!(rows as usize + dead.len(), lines);
    }
}
