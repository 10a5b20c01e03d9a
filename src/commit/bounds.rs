//! The most a commit's records can hold, held within what is read back
//! ([`crate::store::RECORD_CAP`]): a record the next read refuses stops its partition for
//! good. A commit names at most `sink.max_open_files` files open when its item came (at most
//! [`crate::config::MAX_OPEN_FILES`]) and the files the item parked, one per row at most
//! ([`crate::decode::framing::MAX_CHUNK_LINES`]: every source cuts its chunks there, a push
//! request of more lines decoded in pieces of that many), each under a path of at most 4,095 bytes
//! (the local room; percent-escaped, so JSON adds nothing) and, in a table, with at most
//! [`crate::decode::writable::MAX_PARTITION_COLUMNS`] partition values (names of at most
//! [`crate::table::MAX_COLUMN_NAME`] bytes) taking at most
//! [`crate::decode::writable::MAX_PARTITION_VALUES`] bytes as JSON writes them. The test
//! below writes the largest such checkpoint and claim.

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::commit::checkpoint::{Checkpoint, FileEntry, FileHead, Outcome, VERSION};
    use crate::commit::fence::Claim;
    use crate::decode::writable::{json_len, MAX_PARTITION_COLUMNS, MAX_PARTITION_VALUES};
    use crate::store::RECORD_CAP;

    /// The longest path a local destination holds.
    const PATH: usize = 4095;

    #[test]
    fn the_largest_commit_a_job_can_make_is_read_back() {
        let files = crate::config::MAX_OPEN_FILES + crate::decode::framing::MAX_CHUNK_LINES + 1;
        // Values of control characters (6 bytes each as JSON) up to the limit in all, under
        // names of the most a partition column's name takes.
        let mut partition = BTreeMap::new();
        let mut left = MAX_PARTITION_VALUES;
        for c in 0..MAX_PARTITION_COLUMNS {
            let value = "\u{1}".repeat(left.min(1024) / 6);
            left -= json_len(&value);
            let name = format!("{c:0>w$}", w = crate::table::MAX_COLUMN_NAME);
            partition.insert(name, (!value.is_empty()).then_some(value));
        }
        let entry = |i: usize| FileEntry {
            path: format!("{i:a>PATH$}"),
            first_offset: u64::MAX,
            last_offset: u64::MAX,
            rows: u64::MAX,
            bytes: u64::MAX,
            partition: partition.clone(),
        };
        let key = "k".repeat(300);
        let checkpoint = Checkpoint {
            version: VERSION,
            job: "j".repeat(100),
            key: key.clone(),
            seq: u64::MAX,
            next_offset: u64::MAX,
            next_line: u64::MAX,
            files: (0..files).map(entry).collect(),
            dead_letter_files: vec!["d".repeat(PATH); 16],
            rows: u64::MAX,
            dead_letters: u64::MAX,
            committed_at_ms: i64::MAX,
            term: u64::MAX,
            owner: "o".repeat(200),
            log: Some("l".repeat(100)),
            log_runs: vec![("r".repeat(100), u64::MAX); 16],
            file: Some(FileHead {
                len: usize::MAX,
                crc: u32::MAX,
            }),
            record: None,
            behind: Some(FileHead {
                len: usize::MAX,
                crc: u32::MAX,
            }),
        };
        let claim = Claim {
            version: VERSION,
            key,
            seq: u64::MAX,
            term: u64::MAX,
            owner: "o".repeat(200),
            from_offset: u64::MAX,
            next_offset: u64::MAX,
            next_line: u64::MAX,
            files: vec!["f".repeat(PATH); files],
            staged: vec!["s".repeat(PATH); files],
            dead_letter_files: vec!["d".repeat(PATH); 16],
            dead_letter_staged: vec!["d".repeat(PATH); 16],
            claimed_at_ms: i64::MAX,
            undo: false,
        };
        let record = serde_json::to_vec_pretty(&Outcome::Commit(Box::new(checkpoint))).unwrap();
        let claimed = serde_json::to_vec_pretty(&claim).unwrap();
        for (what, len) in [("checkpoint", record.len()), ("claim", claimed.len())] {
            assert!(
                len as u64 <= RECORD_CAP,
                "the largest {what} takes {len} bytes, past the {RECORD_CAP} read back"
            );
            eprintln!("the largest {what}: {len} bytes of {RECORD_CAP}");
        }
    }
}
