//! The disk spill: what is left in the channel at shutdown, saved in the task's state folder
//! and restored into the channel first on the next start.
//!
//! Layout: `<state>/spill/data-<tag>.arrow` (an Arrow IPC stream of the non-empty batches) and
//! `<state>/spill/manifest.json` (format version, each item's provenance, row count and dead
//! letters, the data file's length and CRC-32, and the logs whose positions the provenances
//! count). The manifest is written last, by rename, so a spill without one never completed, and
//! a spill written over an earlier one replaces it whole (each names its own data file). A
//! spill whose data does not match its manifest is reported with its path and never
//! half-loaded. A restore may move the items' positions and add its own log ([`record`]):
//! only the manifest is written again, by rename, before any item is restored.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Item, Provenance};
use crate::decode::{DeadLetter, Position};

/// 2: the data file named in the manifest, the owner and `restored` (version 1 spills are
/// read too).
const VERSION: u32 = 2;

/// Spill problems. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("spill {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "spill {path} is damaged: {reason}. Nothing was loaded. The data is still in the \
         source: start with --discard-spill to replay it from the last checkpoint instead"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "spill {path} holds batches this job's output cannot take ({reason}): nothing was \
         loaded. Start the job with the schema and stages that wrote it to commit them, or \
         with --discard-spill to drop it (its records are read again from the source where \
         it holds them; a memory push log's are lost)"
    )]
    Schema { path: PathBuf, reason: String },
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    data_len: u64,
    data_crc32: u32,
    items: Vec<ItemEntry>,
    /// The logs whose positions the items count (a push source's: the one that spilled, and
    /// each that restored the spill since); empty for sources without one, and in spills of
    /// older versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    logs: Vec<String>,
    /// The run that wrote it; none in spills of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<SpillOwner>,
    /// The data file's name in the spill folder (`data.arrow` in spills of older versions):
    /// a new spill writes a file of its own, so the manifest's rename replaces a spill whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    /// A start restored (some of) its items: commits of them may stand.
    #[serde(default)]
    restored: bool,
}

/// What a spill says of itself besides its items.
#[derive(Debug, Clone)]
pub struct SpillMeta {
    pub owner: SpillOwner,
    /// The logs whose positions the items count (a push source's; empty for others).
    pub logs: Vec<String>,
    /// Some items were restored by a start already (and may be committed).
    pub restored: bool,
}

impl Manifest {
    fn data_path(&self, d: &Path) -> PathBuf {
        d.join(self.data.as_deref().unwrap_or("data.arrow"))
    }

    fn header(&self) -> SpillHeader {
        SpillHeader {
            owner: self.owner.clone(),
            logs: self.logs.clone(),
            restored: self.restored,
        }
    }
}

/// The run a spill belongs to: its job's name (a backfill's own) and destination. A state
/// folder may be shared (a job and its backfills; jobs left at the default folder): a run
/// restores only its own spill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpillOwner {
    pub job: String,
    pub url: String,
    /// The stages its batches went through (a fingerprint of their specs; none in spills of
    /// older versions): a start with other stages cannot take its batches as its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<String>,
}

/// Whose a spill is, read from its manifest alone.
#[derive(Debug, Clone)]
pub struct SpillHeader {
    /// `None`: a spill of an older version.
    pub owner: Option<SpillOwner>,
    /// The logs whose positions it counts: a push source's, whose records may exist
    /// nowhere else (empty for sources that read them again).
    pub logs: Vec<String>,
    /// A start restored it (see [`SpillMeta::restored`]).
    pub restored: bool,
}

/// A spill as read: its items, each with its partition's key (none in spills of older
/// versions), and the logs their positions count in.
#[derive(Debug)]
pub struct Spill {
    pub items: Vec<(Option<String>, Item)>,
    pub head: SpillHeader,
}

#[derive(Serialize, Deserialize)]
struct ItemEntry {
    /// The source partition's key (`<topic>-<partition>`): handles are per process, so a
    /// restore finds the partition by key. Spills of older versions have none.
    #[serde(default)]
    key: Option<String>,
    prov: Provenance,
    rows: usize,
    dead: Vec<DeadEntry>,
}

#[derive(Serialize, Deserialize)]
struct DeadEntry {
    line: u64,
    offset: u64,
    reason: String,
    record_base64: String,
}

fn dir(state: &Path) -> PathBuf {
    state.join("spill")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpillError + '_ {
    move |source| SpillError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// True when a completed spill is waiting.
pub fn exists(state: &Path) -> bool {
    dir(state).join("manifest.json").exists()
}

/// Writes `items` as the spill, each with its partition's key (`key_of` the partition
/// handle), their positions counted in `log` (the source's, when it has one). An empty list
/// writes nothing.
pub fn write(
    state: &Path,
    schema: &SchemaRef,
    items: &[Item],
    key_of: impl Fn(u32) -> Option<String>,
    meta: &SpillMeta,
) -> Result<(), SpillError> {
    if items.is_empty() {
        return Ok(());
    }
    let d = dir(state);
    crate::durable::create_dirs(&d).map_err(io(&d))?;
    let data_name = format!("data-{}.arrow", crate::commit::random_tag());
    let data_path = d.join(&data_name);
    let mut data = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut data, schema).map_err(|e| SpillError::Io {
            path: data_path.clone(),
            source: std::io::Error::other(e),
        })?;
        for it in items.iter().filter(|i| i.batch.num_rows() > 0) {
            w.write(&it.batch).map_err(|e| SpillError::Io {
                path: data_path.clone(),
                source: std::io::Error::other(e),
            })?;
        }
        w.finish().map_err(|e| SpillError::Io {
            path: data_path.clone(),
            source: std::io::Error::other(e),
        })?;
    }
    let written = std::fs::File::create(&data_path).and_then(|mut f| {
        f.write_all(&data)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // What landed of it goes (a full disk: a try again needs the room).
        let _ = std::fs::remove_file(&data_path);
        return Err(io(&data_path)(e));
    }
    let manifest = Manifest {
        version: VERSION,
        data_len: data.len() as u64,
        data_crc32: crc32fast::hash(&data),
        items: items
            .iter()
            .map(|i| ItemEntry {
                key: key_of(i.prov.partition),
                prov: i.prov,
                rows: i.batch.num_rows(),
                dead: i
                    .dead
                    .iter()
                    .map(|d| DeadEntry {
                        line: d.position.line,
                        offset: d.position.offset,
                        reason: d.reason.clone(),
                        record_base64: base64::engine::general_purpose::STANDARD.encode(&d.record),
                    })
                    .collect(),
            })
            .collect(),
        logs: meta.logs.clone(),
        owner: Some(meta.owner.clone()),
        data: Some(data_name.clone()),
        restored: meta.restored,
    };
    if let Err(e) = write_manifest(&d, &manifest) {
        // The data goes too, unless the manifest there names it (its rename landed before the
        // folder's sync failed): a full disk's next try needs the room.
        if read_manifest(&d).ok().and_then(|m| m.data) != Some(data_name) {
            let _ = std::fs::remove_file(&data_path);
        }
        return Err(e);
    }
    // The spill this one replaced (a restored one kept until committed): its data goes.
    if let Ok(entries) = std::fs::read_dir(&d) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".arrow") && name != data_name.as_str() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Writes the manifest by rename, durably.
fn write_manifest(d: &Path, manifest: &Manifest) -> Result<(), SpillError> {
    let text = serde_json::to_vec(manifest).expect("manifest serializes");
    // The manifest's name (and the data file's) must be durable before the stop reports done.
    crate::durable::write_small(d, "manifest.json", &text).map_err(io(&d.join("manifest.json")))
}

fn read_manifest(d: &Path) -> Result<Manifest, SpillError> {
    let m_path = d.join("manifest.json");
    let text = std::fs::read(&m_path).map_err(io(&m_path))?;
    let mut m: Manifest = serde_json::from_slice(&text).map_err(|e| SpillError::Corrupt {
        path: m_path.clone(),
        reason: format!("the manifest does not parse ({e})"),
    })?;
    if !(1..=VERSION).contains(&m.version) {
        return Err(SpillError::Corrupt {
            path: m_path,
            reason: format!("format version {} is not 1 to {VERSION}", m.version),
        });
    }
    if m.version == 1 {
        // Version 1 had no flag: a start that restored the spill added its log to `logs`.
        m.restored |= m.logs.len() > 1;
    }
    Ok(m)
}

/// Records, before a restore puts any item back, the provenance each item is restored with
/// (in the order [`read`] returned them) and the logs their positions now count in: a start
/// that finds the spill again (this one stopped before removing it) reads the positions its
/// commits used.
pub fn record(state: &Path, provs: &[Provenance], logs: Vec<String>) -> Result<(), SpillError> {
    let d = dir(state);
    let mut m = read_manifest(&d)?;
    assert_eq!(m.items.len(), provs.len(), "one provenance per spill item");
    for (e, p) in m.items.iter_mut().zip(provs) {
        e.prov = *p;
    }
    m.logs = logs;
    m.restored = true;
    write_manifest(&d, &m)
}

/// Whose the waiting spill is (its manifest only).
pub fn header(state: &Path) -> Result<SpillHeader, SpillError> {
    Ok(read_manifest(&dir(state))?.header())
}

/// The positions `[from, next)` its items hold (its manifest only), in the log its header's
/// last `logs` entry names.
pub fn positions(state: &Path) -> Result<Vec<(u64, u64)>, SpillError> {
    Ok(read_manifest(&dir(state))?
        .items
        .iter()
        .map(|e| (e.prov.from_offset, e.prov.next_offset))
        .collect())
}

/// The items' partitions (their keys; none in spills of older versions) and the positions
/// `[from, next)` they hold (its manifest only).
pub fn ranges(state: &Path) -> Result<Vec<(Option<String>, u64, u64)>, SpillError> {
    Ok(read_manifest(&dir(state))?
        .items
        .iter()
        .map(|e| (e.key.clone(), e.prov.from_offset, e.prov.next_offset))
        .collect())
}

/// The schema its batches were written with (its data file's head only).
pub fn written_schema(state: &Path) -> Result<SchemaRef, SpillError> {
    let d = dir(state);
    let m = read_manifest(&d)?;
    let data_path = m.data_path(&d);
    let file = match std::fs::File::open(&data_path) {
        Ok(f) => f,
        // A removal cut short (the data went first): the spill is gone but for its manifest.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpillError::Corrupt {
                path: data_path.clone(),
                reason: "its data file is missing".into(),
            })
        }
        Err(e) => return Err(io(&data_path)(e)),
    };
    // The stream's first message alone (a stream reader would allocate the body it claims).
    let corrupt = |reason: String| SpillError::Corrupt {
        path: data_path.clone(),
        reason,
    };
    use std::io::Read;
    let mut file = file;
    let mut head = [0u8; 8];
    file.read_exact(&mut head)
        .map_err(|e| corrupt(format!("its head: {e}")))?;
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if head[..4] != [0xff; 4] || len > MAX_SCHEMA_MESSAGE {
        return Err(corrupt(
            "its first message is not a schema of a sane size".into(),
        ));
    }
    let mut message = head.to_vec();
    message.resize(8 + len, 0);
    file.read_exact(&mut message[8..])
        .map_err(|e| corrupt(format!("its schema message: {e}")))?;
    crate::evolution::schema_from_ipc(&message)
        .map(Arc::new)
        .map_err(corrupt)
}

/// The most of a spill's data file read for its schema message.
const MAX_SCHEMA_MESSAGE: usize = 16 << 20;

/// Reads the spill, verifying it whole before returning anything.
pub fn read(state: &Path, schema: &SchemaRef) -> Result<Spill, SpillError> {
    let d = dir(state);
    let m_path = d.join("manifest.json");
    let corrupt = |path: &Path, reason: String| SpillError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let m = read_manifest(&d)?;
    let head = m.header();
    let data_path = m.data_path(&d);
    let data = std::fs::read(&data_path).map_err(io(&data_path))?;
    if data.len() as u64 != m.data_len {
        return Err(corrupt(
            &data_path,
            format!(
                "{} bytes, the manifest says {} (truncated?)",
                data.len(),
                m.data_len
            ),
        ));
    }
    if crc32fast::hash(&data) != m.data_crc32 {
        return Err(corrupt(&data_path, "checksum mismatch".into()));
    }
    let reader = StreamReader::try_new(std::io::Cursor::new(data), None)
        .map_err(|e| corrupt(&data_path, e.to_string()))?;
    // A spill of an older schema (the schema changed between runs) is read by name.
    let mut batches = Vec::new();
    for b in reader {
        let b = b.map_err(|e| corrupt(&data_path, e.to_string()))?;
        batches.push(
            crate::evolution::adapt(&b, schema).map_err(|reason| SpillError::Schema {
                path: data_path.clone(),
                reason,
            })?,
        );
    }
    let mut batches = batches.into_iter();
    let mut items = Vec::with_capacity(m.items.len());
    for e in m.items {
        let batch = if e.rows == 0 {
            RecordBatch::new_empty(Arc::clone(schema))
        } else {
            let b = batches.next().ok_or_else(|| {
                corrupt(&data_path, "fewer batches than the manifest lists".into())
            })?;
            if b.num_rows() != e.rows {
                return Err(corrupt(
                    &data_path,
                    format!(
                        "a batch has {} rows, the manifest says {}",
                        b.num_rows(),
                        e.rows
                    ),
                ));
            }
            b
        };
        let mut dead = Vec::with_capacity(e.dead.len());
        for d in e.dead {
            let record = base64::engine::general_purpose::STANDARD
                .decode(&d.record_base64)
                .map_err(|_| corrupt(&m_path, "a dead letter's record is not base64".into()))?;
            dead.push(DeadLetter {
                position: Position {
                    line: d.line,
                    offset: d.offset,
                },
                reason: d.reason,
                record,
            });
        }
        items.push((
            e.key,
            Item {
                records: (batch.num_rows() + dead.len()) as u64,
                batch,
                dead,
                prov: e.prov,
            },
        ));
    }
    if batches.next().is_some() {
        return Err(corrupt(
            &data_path,
            "more batches than the manifest lists".into(),
        ));
    }
    Ok(Spill { items, head })
}

/// Removes the spill (after it has been restored into the channel, or to discard it).
pub fn remove(state: &Path) -> Result<(), SpillError> {
    let d = dir(state);
    // The manifest first: a removal cut short leaves no manifest naming a data file that is
    // gone (refused at every start), only files no manifest names.
    let manifest = d.join("manifest.json");
    match std::fs::remove_file(&manifest) {
        // Made durable before the data file goes: after a power loss, a data file gone with
        // its manifest still there refused every start until `--discard-spill`. Best effort:
        // a folder that cannot be synced leaves that window, and fails nothing.
        Ok(()) => {
            if let Err(e) = crate::durable::sync_dir(&d) {
                tracing::warn!(path = %d.display(), error = %e, "could not make the spill manifest's removal durable");
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) => {}
        Err(e) => return Err(io(&manifest)(e)),
    }
    match std::fs::remove_dir_all(&d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(&d)(e)),
    }
}
