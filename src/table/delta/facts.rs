//! What a Delta log entry says besides the files it adds and removes: how far it published
//! the job's partitions (`txn`), and the schema, partition columns, protocol and `txn`
//! retention another writer set, checked against what this job writes.

use std::collections::HashMap;
use std::time::Duration;

use delta_kernel::schema::StructType;
use serde_json::Value;

use super::schema::compare;
use super::{DeltaTable, MAX_WRITER_VERSION};

/// What log entries set besides `txn`s (the newest of each).
#[derive(Default)]
pub(super) struct Facts {
    schema: Option<String>,
    partitions: Option<Vec<String>>,
    /// `delta.setTransactionRetentionDuration` is set.
    expiring_txns: Option<bool>,
    /// `delta.logRetentionDuration` (`None`: the default).
    pub(super) retention: Option<Option<Duration>>,
    pub(super) writer: Option<u64>,
    unreadable: Option<String>,
}

impl Facts {
    /// What a `metaData` action says.
    pub(super) fn metadata(&mut self, m: &Value) {
        self.schema = Some(
            m.get("schemaString")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        );
        self.partitions = Some(
            m.get("partitionColumns")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        );
        let settings = m.get("configuration").and_then(Value::as_object);
        self.expiring_txns =
            Some(settings.is_some_and(|c| c.contains_key("delta.setTransactionRetentionDuration")));
        let props = delta_kernel::table_properties::TableProperties::from(
            settings
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))),
        );
        self.retention = Some(props.log_retention_duration);
    }

    /// `newer` over these.
    pub(super) fn merge(&mut self, newer: Facts) {
        if newer.schema.is_some() {
            self.schema = newer.schema;
            self.partitions = newer.partitions;
            self.expiring_txns = newer.expiring_txns;
            self.retention = newer.retention;
        }
        self.writer = newer.writer.or(self.writer);
        self.unreadable = newer.unreadable.or(self.unreadable.take());
    }
}

/// Whether a log line is an action about files or a commit's description (`add`, `remove`,
/// `cdc`, `commitInfo`), which say nothing `learn` reads: not parsed. Another writer's
/// OPTIMIZE or DELETE writes millions of them in one entry.
fn files_only(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"{") else {
        return false;
    };
    let rest = rest.trim_ascii_start();
    [
        &b"\"add\""[..],
        b"\"remove\"",
        b"\"cdc\"",
        b"\"commitInfo\"",
    ]
    .iter()
    .any(|k| rest.starts_with(k))
}

impl DeltaTable {
    /// What a version says: how far it published the job's partitions (into `known`), and
    /// the schema and protocol it set, if any (for [`Self::check_facts`]; only the newest
    /// count, so a reader of several versions checks the last ones).
    pub(super) fn learn(&self, entry: &[u8], known: &mut HashMap<String, u64>) -> Facts {
        let ours = super::app_id(&self.job, "");
        let mut facts = Facts::default();
        for line in entry
            .split(|b| *b == b'\n')
            .map(|l| l.trim_ascii())
            .filter(|l| !l.is_empty() && !files_only(l))
        {
            let v: Value = match serde_json::from_slice(line) {
                Ok(v) => v,
                Err(e) => {
                    facts.unreadable = Some(format!("not a log entry: {e}"));
                    continue;
                }
            };
            if let Some(t) = v.get("txn") {
                let app = t.get("appId").and_then(Value::as_str).unwrap_or_default();
                let at = t.get("version").and_then(Value::as_u64).unwrap_or(0);
                if let Some(key) = app.strip_prefix(&ours) {
                    let held = known.entry(key.to_string()).or_default();
                    *held = (*held).max(at);
                }
            } else if let Some(m) = v.get("metaData") {
                facts.metadata(m);
            } else if let Some(p) = v.get("protocol") {
                facts.writer = p.get("minWriterVersion").and_then(Value::as_u64);
            }
        }
        facts
    }

    /// A schema or protocol another writer set must still allow this job's files.
    pub(super) fn check_facts(&self, facts: Facts) -> Result<(), String> {
        if let Some(e) = facts.unreadable {
            return Err(e);
        }
        if let Some(s) = facts.schema {
            let table: StructType = serde_json::from_str(&s)
                .map_err(|e| format!("a schema that cannot be read: {e}"))?;
            let (problems, added) = compare(&table, &self.schema);
            if !problems.is_empty() || !added.is_empty() {
                return Err(format!(
                    "another writer changed the table's schema so that this job's files no longer fit: {}",
                    problems
                        .into_iter()
                        .chain(added.iter().map(|f| format!("`{}` is gone", f.name())))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
        if let Some(w) = facts.writer.filter(|w| *w > MAX_WRITER_VERSION) {
            return Err(format!(
                "another writer raised the table's writer protocol to {w}, which asks for features sluice does not write: write into a new URL"
            ));
        }
        if let (Some(ours), Some(theirs)) = (&self.partitions, &facts.partitions) {
            if ours != theirs {
                return Err(format!(
                    "the table's partition columns are now {theirs:?}, this job's {ours:?}"
                ));
            }
        }
        if facts.expiring_txns == Some(true) {
            return Err("the table now sets delta.setTransactionRetentionDuration (expired `txn` actions would make sluice publish commits again): unset it".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::files_only;

    #[test]
    fn actions_about_files_are_passed_over_and_the_rest_read() {
        for skipped in [
            &br#"{"add":{"path":"a.parquet"}}"#[..],
            br#"{ "remove":{"path":"a.parquet"}}"#,
            br#"{"cdc":{}}"#,
            br#"{"commitInfo":{"operation":"OPTIMIZE"}}"#,
        ] {
            assert!(files_only(skipped), "{}", String::from_utf8_lossy(skipped));
        }
        for read in [
            &br#"{"txn":{"appId":"sluice/j/t-0","version":3}}"#[..],
            br#"{"metaData":{}}"#,
            br#"{"protocol":{"minWriterVersion":2}}"#,
            br#"{"added":1}"#,
            b"not json",
        ] {
            assert!(!files_only(read), "{}", String::from_utf8_lossy(read));
        }
    }
}
