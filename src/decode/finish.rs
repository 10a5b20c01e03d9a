//! The decoder's shared last step for a group of records, whatever the input kind read them:
//! Kafka metadata columns, defaults, required fields, the raw column, the split into good
//! rows and dead letters, then the stages and the writers' checks on what they leave.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, StringBuilder};
use arrow::record_batch::RecordBatch;

use super::{columns, writable, Chunk, DeadLetter, Decoded, Record, RecordDecoder, Stage};

impl RecordDecoder {
    /// Shared last step: defaults, required fields, the raw column, and the split of the group
    /// into the good rows' batch and the bad rows' dead letters.
    pub(super) fn finish(&self, chunk: &Chunk, recs: &[Record], stage: Stage, out: &mut Decoded) {
        let data = &chunk.data[..];
        let Stage {
            rows,
            mut columns,
            mut errors,
        } = stage;
        if rows.is_empty() {
            return;
        }
        self.meta
            .fill(&self.schema, chunk, recs, &rows, &mut columns, &mut errors);
        let mut already_bad = vec![false; rows.len()];
        for (r, _) in &errors {
            already_bad[*r] = true;
        }
        for (i, f) in self.schema.fields.iter().enumerate() {
            if let Some(d) = &self.defaults[i] {
                columns[i] = columns::fill_default(&columns[i], d);
            }
            if !f.nullable && columns[i].null_count() > 0 {
                let col = &columns[i];
                // A field reading another key names it: the record holds that key, not the
                // field's name.
                let reason = if f.source == f.name {
                    format!("missing required field `{}`", f.name)
                } else {
                    format!(
                        "missing required field `{}` (read from the key `{}`)",
                        f.name, f.source
                    )
                };
                for (r, bad) in already_bad.iter().enumerate() {
                    if col.is_null(r) && !bad {
                        errors.push((r, reason.clone()));
                    }
                }
            }
        }
        if self.opts.keep_raw {
            let mut b = StringBuilder::with_capacity(rows.len(), 0);
            for &r in &rows {
                let rec = &recs[r];
                // Every record here passed the UTF-8 check.
                b.append_value(String::from_utf8_lossy(&data[rec.start..rec.end]));
            }
            columns.push(Arc::new(b.finish()));
        }
        let mut keep = vec![true; rows.len()];
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.0);
            let mut i = 0;
            while i < errors.len() {
                let row = errors[i].0;
                let mut reason = errors[i].1.clone();
                i += 1;
                while i < errors.len() && errors[i].0 == row {
                    reason.push_str("; ");
                    reason.push_str(&errors[i].1);
                    i += 1;
                }
                keep[row] = false;
                let rec = &recs[rows[row]];
                out.dead.push(DeadLetter {
                    position: rec.pos,
                    reason,
                    record: data[rec.start..rec.end].to_vec(),
                });
            }
            let mask = BooleanArray::from(keep.clone());
            columns = columns
                .iter()
                .map(|c| {
                    arrow::compute::filter(c, &mask).expect("filter by a mask of equal length")
                })
                .collect();
        }
        if columns[0].is_empty() {
            return;
        }
        let batch = RecordBatch::try_new(self.out_schema.clone(), columns)
            .expect("decoded columns match the output schema");
        // Rows of the batch → their records.
        let mut kept: Vec<usize> = rows
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(r, _)| *r)
            .collect();
        let mut refused = Vec::new();
        let batch = match &self.stages {
            None => Some(batch),
            Some(stages) => {
                let applied = stages.apply(batch);
                refused = applied.failed;
                out.filtered += applied.filtered;
                let before = kept;
                kept = applied.kept.iter().map(|&r| before[r as usize]).collect();
                for (row, _) in &mut refused {
                    *row = before[*row];
                }
                applied.batch
            }
        };
        let batch = batch.and_then(|b| {
            let (orc, cols) = (self.opts.orc, &self.opts.partition_columns);
            writable::without_refused(b, orc, cols, &kept, &mut refused)
        });
        for (r, reason) in refused {
            let rec = &recs[r];
            out.dead.push(DeadLetter {
                position: rec.pos,
                reason,
                record: data[rec.start..rec.end].to_vec(),
            });
        }
        out.batches.extend(batch);
    }
}
