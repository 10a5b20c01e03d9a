//! What a Delta table must be for sluice to append to it, and its schema against the
//! job's: version 0 of a new table, fields added to an existing one, differences refused.

use delta_kernel::schema::{StructField, StructType};
use delta_kernel::snapshot::SnapshotRef;
use deltalake_core::kernel::{new_metadata, Action, MetadataExt};
use serde_json::json;

use super::{engine_info, log_name, DeltaTable, MAX_WRITER_VERSION};
use crate::commit::now_ms;
use crate::store::{Destination, StoreError};
use crate::table::TableError;

impl DeltaTable {
    /// What a table must be for sluice to append to it: a writer protocol of version 2 or
    /// below, the job's partition columns (the template's plain fields), and `txn` actions
    /// that never expire (they say what the table holds of each partition).
    pub(super) fn check_table(&self, snapshot: &SnapshotRef) -> Result<(), TableError> {
        let config = snapshot.table_configuration();
        let w = config.protocol().min_writer_version() as u64;
        let problem = if w > MAX_WRITER_VERSION {
            Some(format!(
                "its protocol asks writers for version {w} (constraints, generated columns, column mapping or table features); sluice appends to tables of writer version {MAX_WRITER_VERSION} or below"
            ))
        } else if self
            .partitions
            .as_ref()
            .is_some_and(|p| p != config.metadata().partition_columns())
        {
            Some(format!(
                "it is partitioned by {:?} and the job's template gives {:?} (its plain `{{field}}` placeholders); a table's partition columns cannot change: write into a new URL",
                config.metadata().partition_columns(),
                self.partitions.as_deref().unwrap_or_default()
            ))
        } else if config
            .metadata()
            .configuration()
            .contains_key("delta.setTransactionRetentionDuration")
        {
            Some("it sets delta.setTransactionRetentionDuration (expired `txn` actions would make sluice publish commits again): unset it".into())
        } else {
            None
        };
        match problem {
            Some(reason) => Err(TableError::Conflict {
                url: self.url.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Checks the job's schema against the table's; new fields are added to the table. The
    /// version written is checked to be seen, as a publish's is: a pause after `snapshot`
    /// was read may have let another writer's clean-up free its name below a checkpoint.
    pub(super) fn evolve(&self, snapshot: &SnapshotRef) -> Result<(), TableError> {
        let mut snapshot = snapshot.clone();
        // Each pass reads the table again after another writer took the next version, or
        // after this one's landed where no reader sees it: a loop, not a recursion.
        let added = loop {
            let table = snapshot.schema();
            let (problems, added) = compare(&table, &self.schema);
            if !problems.is_empty() {
                return Err(TableError::Schema {
                    url: self.url.clone(),
                    problems,
                });
            }
            if added.is_empty() {
                return Ok(());
            }
            let v = snapshot.version() + 1;
            let entry = self.evolution(&snapshot, &added)?;
            #[cfg(test)]
            crate::hooks::at("delta: before an evolution's put");
            match self.dest.put_atomic(&log_name(v), entry.as_bytes(), true) {
                // Below a checkpoint written before it, however long ago the table was read
                // (another writer may have lowered the log's retention meanwhile).
                Ok(()) if self.checked_below_a_checkpoint(v)? => {
                    let fresh = self.refresh()?;
                    let names: Vec<&String> = added.iter().map(|f| f.name()).collect();
                    if names.iter().all(|n| fresh.schema().field(n).is_some()) {
                        break added;
                    }
                    // Below a checkpoint written before it, and the table read from there
                    // lacks the fields: unseen. Removed (the log's clean-up, which keeps
                    // entries in order, would stop at it), and written again after the newest.
                    tracing::warn!(table = %self.url, version = v, "a schema change landed below a checkpoint written before it, where no reader sees it (the table was read long before); it is written again");
                    self.dest.delete(&log_name(v))?;
                    snapshot = fresh;
                }
                Ok(()) => break added,
                // Another writer moved the table on: read it again (it may have added them too).
                Err(StoreError::Exists { .. }) => snapshot = self.refresh()?,
                Err(e) => return Err(e.into()),
            }
        };
        tracing::warn!(table = %self.url, fields = ?added.iter().map(|f| f.name()).collect::<Vec<_>>(), "added fields to the Delta table's schema");
        Ok(())
    }

    /// The log entry that adds `added` to `snapshot`'s schema.
    fn evolution(
        &self,
        snapshot: &SnapshotRef,
        added: &[StructField],
    ) -> Result<String, TableError> {
        let table = snapshot.schema();
        let merged = StructType::try_new(table.fields().cloned().chain(added.iter().cloned()))
            .map_err(|e| self.fail(e.to_string()))?;
        let metadata = snapshot
            .table_configuration()
            .metadata()
            .clone()
            .with_schema(&merged)
            .map_err(|e| self.fail(e.to_string()))?;
        let lines = [
            json!({"commitInfo": {
                "timestamp": now_ms(),
                "operation": "ADD COLUMNS",
                "operationParameters": {"columns": added.iter().map(|f| f.name().clone()).collect::<Vec<_>>()},
                "engineInfo": engine_info(),
            }})
            .to_string(),
            serde_json::to_string(&Action::Metadata(metadata)).expect("metadata serializes"),
        ];
        Ok(format!("{}\n", lines.join("\n")))
    }
}

/// The job's schema against the table at `dest`, read only: the differences [`DeltaTable::open`]
/// refuses, found before anything is written (a schema the table refuses must not be recorded
/// as the job's first). No table there: nothing to refuse beyond what Delta cannot declare.
pub fn check_fits(
    dest: &Destination,
    schema: &arrow::datatypes::SchemaRef,
    runtime: &tokio::runtime::Handle,
) -> Result<(), TableError> {
    let url = dest.url().to_string();
    let ours = delta_schema(schema).map_err(|reason| TableError::Delta {
        url: url.clone(),
        reason,
    })?;
    if !crate::table::present(dest)? {
        return Ok(());
    }
    let (_, engine, location) = super::log_of(dest, runtime)?;
    let snapshot = delta_kernel::snapshot::Snapshot::builder_for(location.as_str())
        .build(engine.as_ref())
        .map_err(|e| TableError::Unread {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let (problems, _) = compare(&snapshot.schema(), &ours);
    match problems.is_empty() {
        true => Ok(()),
        false => Err(TableError::Schema { url, problems }),
    }
}

/// Version 0 of a new table: protocol (reader 1, writer 2), metadata with `schema`.
pub(super) fn create(
    dest: &Destination,
    job: &str,
    schema: &StructType,
    partitions: &[String],
    checkpoint_every: u64,
) -> Result<(), TableError> {
    let metadata = new_metadata(
        schema,
        partitions.iter().cloned(),
        [(
            "delta.checkpointInterval".to_string(),
            checkpoint_every.to_string(),
        )],
    )
    .map_err(|e| TableError::Delta {
        url: dest.url().to_string(),
        reason: e.to_string(),
    })?;
    let lines = [
        json!({"commitInfo": {
            "timestamp": now_ms(),
            "operation": "CREATE TABLE",
            "operationParameters": {"mode": "ErrorIfExists", "job": job},
            "engineInfo": engine_info(),
        }})
        .to_string(),
        json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}).to_string(),
        serde_json::to_string(&Action::Metadata(metadata)).expect("metadata serializes"),
    ];
    match dest.put_atomic(
        &log_name(0),
        format!("{}\n", lines.join("\n")).as_bytes(),
        true,
    ) {
        Ok(()) => {
            tracing::info!(table = %dest.url(), "created a Delta table");
            Ok(())
        }
        // Another process created it first: its schema is checked like any table's.
        Err(StoreError::Exists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The job's fields against the table's: problems (a type that differs, a required field
/// the job does not write, a new field that is required) and the fields to add.
pub(super) fn compare(table: &StructType, ours: &StructType) -> (Vec<String>, Vec<StructField>) {
    let mut problems = Vec::new();
    let mut added = Vec::new();
    for f in ours.fields() {
        match table.field(f.name()) {
            Some(t) if t.data_type() != f.data_type() => problems.push(format!(
                "`{}` is {} in the table, {} in the job",
                f.name(),
                t.data_type(),
                f.data_type()
            )),
            Some(t) if !t.is_nullable() && f.is_nullable() => problems.push(format!(
                "`{}` is required in the table and optional in the job",
                f.name()
            )),
            Some(_) => {}
            None if !f.is_nullable() => problems.push(format!(
                "`{}` is new and required; a field added to a table must be nullable",
                f.name()
            )),
            None => added.push(f.clone()),
        }
    }
    for t in table.fields() {
        if t.metadata().contains_key("delta.invariants") {
            problems.push(format!(
                "`{}` carries a column invariant (`delta.invariants`), which sluice does not check",
                t.name()
            ));
        }
        if !t.is_nullable() && ours.field(t.name()).is_none() {
            problems.push(format!(
                "`{}` is required in the table and the job does not write it",
                t.name()
            ));
        }
    }
    (problems, added)
}

/// The job's schema as a Delta table's: a timestamp with any time zone is Delta's
/// `timestamp` (an instant; the files store UTC whatever zone the schema names), and one
/// without a zone is refused, naming the field (Delta's `timestamp_ntz` needs a table
/// feature sluice does not write). Timestamps in seconds or nanoseconds are declared as the
/// files hold them, in microseconds (`format::units`).
pub(super) fn delta_schema(schema: &arrow::datatypes::SchemaRef) -> Result<StructType, String> {
    use arrow::datatypes::{DataType, Field, Schema};
    use delta_kernel::engine::arrow_conversion::TryFromArrow;
    if let Some(why) = undeclarable(schema) {
        return Err(why);
    }
    let micros = crate::format::units::micros_schema(schema);
    let schema = micros.as_ref().unwrap_or(schema);
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let f = match f.data_type() {
            DataType::Timestamp(_, None) => {
                return Err(format!(
                    "field `{}` is a timestamp without a time zone, which a Delta table holds only with a table feature sluice does not write: give it one (`timezone` in the schema file, or a stage such as `arrow_cast(x, 'Timestamp(Millisecond, Some(\"UTC\"))')`)",
                    f.name()
                ))
            }
            DataType::Timestamp(unit, Some(_)) => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(*unit, Some("UTC".into()))),
            _ => f.as_ref().clone(),
        };
        fields.push(f);
    }
    StructType::try_from_arrow(&Schema::new(fields))
        .map_err(|e| format!("the schema has no Delta form: {e}"))
}

/// A column, at any depth, whose Delta type would not be what the files hold: Delta has no
/// unsigned integers (a `UInt16` declared `short` made 41,234 unreadable) and declares a
/// `Date64` a `date` while Parquet holds it as plain int64 (readers then fail on the table);
/// or that needs a table feature sluice does not write (a nested timestamp without a zone).
fn undeclarable(schema: &arrow::datatypes::Schema) -> Option<String> {
    use arrow::datatypes::DataType;
    crate::format::find_type(schema, |ty, path| {
        let nested = path.contains(['.', '[', '{']);
        if nested && matches!(ty, DataType::Timestamp(_, None)) {
            // Declared `timestamp_ntz`, a table feature sluice does not write: the table's
            // next snapshot, and every reader, refused it (top-level ones: see the caller).
            return Some(format!(
                "field `{path}` is a timestamp without a time zone, which a Delta table holds \
                 only with a table feature sluice does not write: give it one (a stage such \
                 as `arrow_cast(x, 'Timestamp(Microsecond, Some(\"UTC\"))')`)"
            ));
        }
        let to = match ty {
            DataType::UInt8 => "Int16",
            DataType::UInt16 => "Int32",
            DataType::UInt32 | DataType::UInt64 => "Int64",
            DataType::Date64 => "Date32",
            _ => return None,
        };
        Some(format!(
            "field `{path}` is {ty}, which a Delta table would declare as a type its files do \
             not hold: cast it (`arrow_cast(x, '{to}')`)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};

    use super::delta_schema;

    #[test]
    fn unsigned_integers_date64_and_nested_naive_timestamps_are_refused_at_any_depth() {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let ok = Schema::new(vec![Field::new("t", ts, true)]);
        assert!(delta_schema(&Arc::new(ok)).is_ok());
        let top = Schema::new(vec![Field::new("n", DataType::UInt16, true)]);
        let err = delta_schema(&Arc::new(top)).unwrap_err();
        assert!(
            err.contains("field `n` is UInt16") && err.contains("'Int32'"),
            "{err}"
        );
        let nested = Schema::new(vec![Field::new(
            "s",
            DataType::Struct(Fields::from(vec![Field::new("d", DataType::Date64, true)])),
            true,
        )]);
        let err = delta_schema(&Arc::new(nested)).unwrap_err();
        assert!(err.contains("field `s.d` is Date64"), "{err}");
        // A timestamp without a zone inside a list's struct (declared `timestamp_ntz`: a
        // table no reader opened).
        let naive = DataType::Timestamp(TimeUnit::Microsecond, None);
        let item = DataType::Struct(Fields::from(vec![Field::new("at", naive, true)]));
        let listed = Schema::new(vec![Field::new(
            "l",
            DataType::List(Arc::new(Field::new("item", item, true))),
            true,
        )]);
        let err = delta_schema(&Arc::new(listed)).unwrap_err();
        assert!(
            err.contains("field `l[].at` is a timestamp without a time zone"),
            "{err}"
        );
    }
}
