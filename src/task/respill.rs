//! Whether a spill is read again from the source instead of restored: its batches were made
//! by other stages (or another `on_error`), or decoded with another schema, than this start's,
//! and the source still holds every record it has. Restored, such batches skip the new stages
//! (rows a new filter drops) or miss what the new schema reads (fields added since are null
//! though the records hold them). Where the source may not hold them all (a memory push log,
//! items an earlier log restored, a file cut short), the spill is their only copy and is
//! restored by column name, with a warning. Kafka reads again: a position past the topic's
//! retention is `on_gap`'s (a clear stop, or a counted skip), not rows that skipped the new
//! stages.

use std::path::Path;

use arrow::datatypes::SchemaRef;

use super::TaskError;
use crate::channel::spill::{self, SpillHeader, SpillOwner};
use crate::source::Source;

/// What this start makes of the spill in `state_dir` (`head`: its header; `mine`: this run).
pub(super) enum Respill {
    /// The same stages and schema: restored.
    Same,
    /// Made otherwise, and the source holds every record of it: read again from there.
    ReadAgain(&'static str),
    /// Made otherwise, and maybe its records' only copy: restored by column name.
    Restore(&'static str),
}

pub(super) fn decide(
    state_dir: &Path,
    head: &SpillHeader,
    mine: &SpillOwner,
    schema: &SchemaRef,
    source: &mut dyn Source,
) -> Result<Respill, TaskError> {
    let restaged = head
        .owner
        .as_ref()
        .is_some_and(|o| o.stages.is_some() && o.stages != mine.stages);
    let why = if restaged {
        "the stages (or on_error) changed since the spill was written"
    } else if spill::written_schema(state_dir)?.fields() != schema.fields() {
        "the schema changed since the spill was written"
    } else {
        return Ok(Respill::Same);
    };
    Ok(if holds_all(state_dir, head, source)? {
        Respill::ReadAgain(why)
    } else {
        Respill::Restore(why)
    })
}

/// Whether the source can read every item of the spill again: a log it names is this
/// source's own, which is not a memory log's, and each item's positions are within what the
/// source holds of its partition. A source that cannot say (Kafka: its broker answers, and a
/// position past its retention is `on_gap`'s, a clear stop or a counted skip) reads again.
fn holds_all(
    state_dir: &Path,
    head: &SpillHeader,
    source: &mut dyn Source,
) -> Result<bool, TaskError> {
    if source.only_copy() {
        return Ok(false);
    }
    match head.logs.as_slice() {
        [] => {}
        [only] if source.log_id().as_ref() == Some(only) => {}
        _ => return Ok(false),
    }
    let partitions = source.partitions();
    // Asked once a partition (a gzip file is read through to tell).
    let mut held: std::collections::HashMap<u32, Option<(u64, u64)>> = Default::default();
    for (key, from, next) in spill::ranges(state_dir)? {
        let p = match (&key, partitions.as_slice()) {
            (Some(k), _) => partitions.iter().find(|p| p.key() == *k),
            (None, [one]) => Some(one),
            (None, _) => None,
        };
        let Some(p) = p else {
            return Ok(false);
        };
        let range = match held.get(&p.id) {
            Some(r) => *r,
            None => *held.entry(p.id).or_insert(source.replayable(p.id)?),
        };
        match range {
            Some((low, high)) if low <= from && next <= high => {}
            None if head.logs.is_empty() => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;
    use crate::channel::{Item, Provenance};
    use crate::decode::Chunk;
    use crate::source::{Next, PartitionInfo, SourceError};

    /// A file-like source of one partition that holds `held` of it (`None`: cannot say).
    struct Holds {
        held: Option<(u64, u64)>,
    }

    impl Source for Holds {
        fn partitions(&self) -> Vec<PartitionInfo> {
            vec![PartitionInfo {
                id: 0,
                topic: "f".into(),
                number: 0,
            }]
        }
        fn seek(&mut self, _: u32, _: u64, _: u64) -> Result<(), SourceError> {
            Ok(())
        }
        fn next(&mut self, _: &mut Chunk) -> Result<Next, SourceError> {
            Ok(Next::End)
        }
        fn replayable(&mut self, _: u32) -> Result<Option<(u64, u64)>, SourceError> {
            Ok(self.held)
        }
    }

    fn schema(name: &str) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new(name, DataType::Int64, true)]))
    }

    fn owner(stages: &str) -> SpillOwner {
        SpillOwner {
            job: "j".into(),
            url: "file:///out".into(),
            stages: Some(stages.into()),
        }
    }

    /// A spill of one item, positions 10..20 of partition `f-0`, by stages `a`.
    fn spilled(dir: &Path) -> SpillHeader {
        let s = schema("n");
        let item = Item {
            batch: RecordBatch::try_new(s.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap(),
            dead: Vec::new(),
            prov: Provenance {
                partition: 0,
                from_offset: 10,
                first_offset: 10,
                last_offset: 19,
                next_offset: 20,
                next_line: 3,
                epoch: 0,
                mark: None,
            },
            records: 2,
        };
        let meta = spill::SpillMeta {
            owner: owner("a"),
            logs: Vec::new(),
            restored: false,
        };
        spill::write(dir, &s, &[item], |_| Some("f-0".into()), &meta).unwrap();
        spill::header(dir).unwrap()
    }

    #[test]
    fn a_spill_made_otherwise_is_read_again_only_where_the_source_holds_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let head = spilled(dir.path());
        let all = &mut Holds {
            held: Some((0, 30)),
        };
        let cut = &mut Holds {
            held: Some((0, 15)),
        };
        let same = decide(dir.path(), &head, &owner("a"), &schema("n"), all).unwrap();
        assert!(matches!(same, Respill::Same));
        let restaged = decide(dir.path(), &head, &owner("b"), &schema("n"), all).unwrap();
        assert!(matches!(restaged, Respill::ReadAgain(w) if w.contains("stages")));
        let reschemed = decide(dir.path(), &head, &owner("a"), &schema("m"), all).unwrap();
        assert!(matches!(reschemed, Respill::ReadAgain(w) if w.contains("schema")));
        // The source no longer holds all of it (a file cut short): the spill is their copy.
        let kept = decide(dir.path(), &head, &owner("b"), &schema("n"), cut).unwrap();
        assert!(matches!(kept, Respill::Restore(_)));
        // A source that cannot say (Kafka's broker answers; retention is `on_gap`'s).
        let unsaid = &mut Holds { held: None };
        let kafka = decide(dir.path(), &head, &owner("b"), &schema("n"), unsaid).unwrap();
        assert!(matches!(kafka, Respill::ReadAgain(_)));
    }
}
