//! The table's live files, and versions that replace some of them by one (compaction):
//! `remove` + `add` with `dataChange = false`, so readers see the same rows before and after.

use std::collections::{BTreeMap, HashSet};

use deltalake_core::kernel::{Action, Add, Remove};
use futures::TryStreamExt;
use serde_json::json;

use super::{engine_info, log_name, DeltaTable, MAX_LOST, MAX_WRITER_VERSION};
use crate::commit::now_ms;
use crate::store::StoreError;
use crate::table::TableError;

/// A file of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveFile {
    /// Its key relative to the table's root, as the log names it (decoded; see
    /// `Destination::key`: for a local table, the relative path itself).
    pub path: String,
    pub size: u64,
    /// `numRecords` of its statistics, when recorded.
    pub rows: Option<u64>,
    /// Its partition values (`None`: null).
    pub partition: BTreeMap<String, Option<String>>,
}

/// How a replacement ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Replaced {
    /// At this version.
    Done(u64),
    /// Another writer removed one of the files first (another compaction): nothing changed.
    Lost,
    /// Its version landed below a newer checkpoint, where no reader sees it, and was removed
    /// again: nothing changed, and the table moved on far past the version the caller knew.
    Unseen,
}

impl DeltaTable {
    /// The table's newest version and those of its files that `keep` selects (the file list
    /// streams from the log; only the selected files are held).
    pub fn live_files(
        &self,
        mut keep: impl FnMut(&LiveFile) -> bool,
    ) -> Result<(u64, Vec<LiveFile>), TableError> {
        let log = self.log.clone();
        let r: Result<_, deltalake_core::DeltaTableError> = self.runtime.block_on(async {
            let s = deltalake_core::kernel::Snapshot::try_new(log.as_ref(), None).await?;
            let mut out = Vec::new();
            let mut views = s.file_views(log.as_ref(), None);
            while let Some(v) = views.try_next().await? {
                let rows = v
                    .stats()
                    .and_then(|st| serde_json::from_str::<serde_json::Value>(&st).ok())
                    .and_then(|st| st.get("numRecords").and_then(|n| n.as_u64()));
                let partition = v
                    .partition_values()
                    .map(|pv| {
                        pv.fields()
                            .iter()
                            .zip(pv.values())
                            .map(|(f, s)| (f.name().clone(), partition_text(s)))
                            .collect()
                    })
                    .unwrap_or_default();
                let f = LiveFile {
                    path: v.path().into_owned(),
                    size: v.size().max(0) as u64,
                    rows,
                    partition,
                };
                if keep(&f) {
                    out.push(f);
                }
            }
            Ok((s.version(), out))
        });
        r.map_err(|e| self.fail(format!("cannot list its files: {e}")))
    }

    /// Writes, after `version`, one version that removes `inputs` and adds `output`. `gone`
    /// collects the files other writers' versions removed (across calls: a version read
    /// while placing one bin may remove another bin's files); a bin that meets it is lost.
    pub fn replace(
        &self,
        mut version: u64,
        inputs: &[LiveFile],
        output: &LiveFile,
        gone: &mut HashSet<String>,
    ) -> Result<Replaced, TableError> {
        if inputs.iter().any(|f| gone.contains(&f.path)) {
            return Ok(Replaced::Lost);
        }
        let now = now_ms();
        let mut lines = vec![json!({"commitInfo": {
            "timestamp": now,
            "operation": "OPTIMIZE",
            "operationParameters": {"files": inputs.len(), "job": self.job},
            "isBlindAppend": false,
            "engineInfo": engine_info(),
        }})
        .to_string()];
        for f in inputs {
            let r = Remove {
                path: f.path.clone(),
                data_change: false,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(
                    f.partition
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                size: Some(f.size as i64),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            };
            lines.push(serde_json::to_string(&Action::Remove(r)).expect("a remove serializes"));
        }
        let add = Add {
            path: output.path.clone(),
            partition_values: output
                .partition
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            size: output.size as i64,
            modification_time: now,
            data_change: false,
            stats: output.rows.map(|n| json!({ "numRecords": n }).to_string()),
            ..Default::default()
        };
        lines.push(serde_json::to_string(&Action::Add(add)).expect("an add serializes"));
        let bytes = format!("{}\n", lines.join("\n")).into_bytes();
        let ours: HashSet<&str> = inputs.iter().map(|f| f.path.as_str()).collect();
        for _ in 0..MAX_LOST {
            let name = log_name(version + 1);
            #[cfg(test)]
            crate::hooks::at("delta: before a replacement's put");
            let put = self.dest.put_atomic(&name, &bytes, true);
            #[cfg(test)]
            crate::hooks::at("delta: after a replacement's put");
            match put {
                Ok(()) => return self.placed(version + 1, output),
                Err(StoreError::Exists { .. }) => {
                    let winner = self.dest.read(&name)?;
                    if winner == bytes {
                        return self.placed(version + 1, output);
                    }
                    self.removed_by(&winner, gone)?;
                    if ours.iter().any(|p| gone.contains(*p)) {
                        return Ok(Replaced::Lost);
                    }
                    version += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(self.fail(format!(
            "{MAX_LOST} versions in a row went to other writers"
        )))
    }

    /// The paths every version after `version` adds or removes, as the log names them and as
    /// the store keys them. An entry missing from that run (cleaned up, or not there yet
    /// while a later one is) is an error: what it names cannot be known.
    pub fn touched_after(&self, version: u64) -> Result<HashSet<String>, TableError> {
        let mut out = HashSet::new();
        let mut next = version + 1;
        let names = self
            .dest
            .list_after("_delta_log/", &format!("{version:020}.json"))?;
        let mut versions: Vec<u64> = names
            .iter()
            .filter_map(|n| n.strip_prefix("_delta_log/")?.strip_suffix(".json"))
            .filter(|v| v.len() == 20 && v.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|v| v.parse().ok())
            .filter(|v| *v > version)
            .collect();
        versions.sort_unstable();
        for v in versions {
            if v != next {
                return Err(self.fail(format!(
                    "the log's entry for version {next} is not there (cleaned up?), so the files it names cannot be known"
                )));
            }
            let entry = self.dest.read(&log_name(v))?;
            for line in entry
                .split(|b| *b == b'\n')
                .map(|l| l.trim_ascii())
                .filter(|l| !l.is_empty())
            {
                // Fails closed: a line that adds or removes and cannot be read (or a line
                // that is not JSON) stops the vacuum; other actions are skipped unread.
                let unreadable = |e: serde_json::Error| {
                    self.fail(format!(
                        "version {v} has a line this process cannot read ({e}), so the files it names cannot be known"
                    ))
                };
                if !line.starts_with(br#"{"add""#) && !line.starts_with(br#"{"remove""#) {
                    let v: serde_json::Value = serde_json::from_slice(line).map_err(unreadable)?;
                    if v.get("add").is_none() && v.get("remove").is_none() {
                        continue;
                    }
                }
                let path = match serde_json::from_slice::<Action>(line).map_err(unreadable)? {
                    Action::Add(a) => a.path,
                    Action::Remove(r) => r.path,
                    _ => continue,
                };
                out.insert(self.dest.key(&path));
                out.insert(path);
            }
            next += 1;
        }
        Ok(out)
    }

    /// Version `v`, once it is known to be seen. A compaction may have listed the table long
    /// before (a run of many bins, or a pause): meanwhile other writers may have checkpointed
    /// past `v` and cleaned up the entry whose free name `v` took, below the newest
    /// checkpoint, where no reader looks. Such a checkpoint was there before `v` was: a
    /// complete checkpoint at or past `v` whose parts all predate `v`'s entry (by the store's
    /// clock) means `v` is unseen, and it is removed (the clean-up, which keeps entries in
    /// order, would stop at it) — when the table as readers see it does not hold `output`
    /// either (a guard against a store clock that stepped back). A checkpoint written after
    /// `v` holds it, even if a later version removed `output` again; a tie in the store's
    /// times counts as seen.
    fn placed(&self, v: u64, output: &LiveFile) -> Result<Replaced, TableError> {
        let name = log_name(v);
        if !self.below_a_checkpoint(v)? {
            return Ok(self.landed(v));
        }
        // And the table as readers see it does not hold the output (a checkpoint that holds
        // `v` has it live, unless a later version removed it): the store's clock alone, if
        // it stepped back, would take a seen version for unseen.
        let ours = file_name(&output.path);
        let (_, live) = self.live_files(|f| file_name(&f.path) == ours)?;
        if !live.is_empty() {
            return Ok(self.landed(v));
        }
        tracing::warn!(table = %self.url, version = v, "a compaction's version landed below a checkpoint written before it, where no reader sees it (the table was listed long before); it is removed and the group dropped");
        // Left in place, it would remove the inputs and add a file about to be deleted, for
        // any reader that came to it: the run stops instead, the output kept.
        self.dest.delete(&name)?;
        Ok(Replaced::Unseen)
    }

    /// [`Self::below_a_checkpoint`], asked only when the log's checkpoint hint
    /// (`_last_checkpoint`, one small read) names a checkpoint at or past `v`, or cannot be
    /// read: the listing it takes grows with the log on stores that cannot list from a name
    /// (local folders, Azure), and a version written where nothing was checkpointed past it
    /// yet is seen. (A writer that checkpoints and cleans up without updating the hint is
    /// not caught.)
    pub(super) fn checked_below_a_checkpoint(&self, v: u64) -> Result<bool, TableError> {
        let hinted = match self.checkpoint_hint() {
            Ok(hint) => hint.is_some_and(|c| c.is_none_or(|c| c >= v)),
            Err(_) => true,
        };
        if !hinted {
            return Ok(false);
        }
        self.below_a_checkpoint(v)
    }

    /// Whether version `v`'s entry sits below a complete checkpoint at or past `v` whose parts
    /// all predate the entry (by the store's clock): written into a name the log's clean-up
    /// had freed, where no reader looks. An entry gone already is not this rule's to judge
    /// (the clean-up removes only expired entries; it was just written): false.
    pub(super) fn below_a_checkpoint(&self, v: u64) -> Result<bool, TableError> {
        let after = match v.checked_sub(1) {
            Some(before) => format!("{before:020}.json"),
            None => String::new(),
        };
        let listed = self.dest.list_after_dated("_delta_log/", &after)?;
        let name = log_name(v);
        let Some(&(_, written)) = listed.iter().find(|(n, _)| *n == name) else {
            return Ok(false);
        };
        let dated: std::collections::HashMap<&str, std::time::SystemTime> =
            listed.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        let names = listed.iter().map(|(n, _)| n.clone()).collect();
        Ok(super::txns::listing(names)
            .checkpoints
            .range(v..)
            .any(|(_, parts)| {
                parts
                    .iter()
                    .all(|p| dated.get(p.as_str()).is_some_and(|t| *t < written))
            }))
    }

    fn landed(&self, v: u64) -> Replaced {
        self.after(v);
        Replaced::Done(v)
    }

    /// Adds the files another writer's version removes to `gone`; a protocol this process
    /// cannot write is an error.
    fn removed_by(&self, winner: &[u8], gone: &mut HashSet<String>) -> Result<(), TableError> {
        for line in winner
            .split(|b| *b == b'\n')
            .map(|l| l.trim_ascii())
            .filter(|l| !l.is_empty())
        {
            let Ok(action) = serde_json::from_slice::<Action>(line) else {
                continue;
            };
            match action {
                Action::Remove(r) => {
                    gone.insert(r.path);
                }
                Action::Protocol(p) if p.min_writer_version() as u64 > MAX_WRITER_VERSION => {
                    return Err(TableError::Conflict {
                        url: self.url.clone(),
                        reason: format!(
                            "another writer raised the table's writer protocol to {}",
                            p.min_writer_version()
                        ),
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The last part of a path (a compaction's output is named by a random tag there, which no
/// escaping changes).
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A partition value as the log writes it (`None`: null).
fn partition_text(s: &delta_kernel::expressions::Scalar) -> Option<String> {
    use delta_kernel::expressions::Scalar;
    match s {
        Scalar::Null(_) => None,
        Scalar::String(v) => Some(v.clone()),
        Scalar::Boolean(b) => Some(b.to_string()),
        Scalar::Byte(v) => Some(v.to_string()),
        Scalar::Short(v) => Some(v.to_string()),
        Scalar::Integer(v) => Some(v.to_string()),
        Scalar::Long(v) => Some(v.to_string()),
        Scalar::Date(days) => chrono::DateTime::from_timestamp(i64::from(*days) * 86_400, 0)
            .map(|d| d.format("%Y-%m-%d").to_string()),
        other => Some(other.to_string()),
    }
}
