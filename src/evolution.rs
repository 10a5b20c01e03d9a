//! Schema evolution: a repo's schema may change between runs as long as the files already
//! written and the new ones stay readable together (by name, as DuckDB's `union_by_name` and
//! pyarrow datasets read them). Allowed: new nullable fields, dropped fields, nullability
//! to nullable. Refused: a field whose type changes (also against fields dropped earlier: older
//! files still have them, and against fields named so but for case, which Spark, Hive and
//! Delta read as one column), a new field that is not nullable, a nullable field becoming
//! required (rows of the older schema, e.g. in a spill, may hold nulls); for CSV or TSV
//! without a header, read by position, any change of the fields or their order.
//!
//! The schema of the files a job writes is recorded in its destination
//! (`_sluice/<job>/schemas/<number>.json`, create-only: the fields for people, the Arrow schema
//! as IPC for the check); each start compares the current schema with the newest record before
//! any data moves, and records the new one once it is accepted; then against the records of
//! the repo's backfills whose files share the folder ([`check_beside`]). Batches of an older
//! schema (a spill) are adapted by name.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::new_null_array;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::store::Destination;

/// Errors of schema evolution.
#[derive(Debug, thiserror::Error)]
pub enum EvolutionError {
    #[error("schema of job `{job}` changed in a way readers of its files cannot follow:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Incompatible { job: String, problems: Vec<String> },
    #[error("schema of job `{job}` cannot be read beside the files backfill `{backfill}` wrote into its folder (with another schema):\n{}\n(give the job a schema the backfill's files fit, or move that backfill's files out)", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Beside {
        job: String,
        backfill: String,
        problems: Vec<String>,
    },
    #[error("schema record {path}: {reason}")]
    Record { path: String, reason: String },
    #[error(transparent)]
    Sink(#[from] crate::store::StoreError),
}

#[derive(Debug, Serialize, Deserialize)]
struct FieldRecord {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    nullable: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct SchemaRecord {
    version: u32,
    fields: Vec<FieldRecord>,
    /// The Arrow schema as an IPC stream with no batches, base64.
    arrow_ipc: String,
    /// Every field the files were ever written with (dropped ones too), the same way.
    #[serde(default)]
    all_fields_ipc: Option<String>,
}

/// The folder of the job's schema records, `<number:012>.json` each, written create-only: a
/// start records its schema as the number after the newest it read, so two starts that read
/// the same record cannot both record a change of their own.
fn records_dir(job: &str) -> String {
    format!("_sluice/{job}/schemas/")
}

/// The single record earlier versions kept (number 0); it is still written after each new
/// record, for people and for those versions, and read when no numbered record exists.
fn legacy_path(job: &str) -> String {
    format!("_sluice/{job}/schema.json")
}

/// Records numbered past this many others recorded while this start checked (each a start
/// that won a race with it) end the check with an error rather than looping on.
const MAX_RACES: usize = 64;

/// The newest schema record: its number and (the current schema, every field ever), if any;
/// and whether the copy for earlier versions differs from it.
struct Latest {
    number: u64,
    schemas: Option<(Schema, Schema)>,
    stale_copy: bool,
}

fn latest(dest: &Destination, job: &str) -> Result<Latest, EvolutionError> {
    let dir = records_dir(job);
    let newest = dest
        .list(&dir)?
        .into_iter()
        .filter_map(|p| {
            let n = p
                .strip_prefix(&dir)?
                .strip_suffix(".json")?
                .parse::<u64>()
                .ok()?;
            Some((n, p))
        })
        .max();
    let legacy = match dest.read_record(&legacy_path(job)) {
        Ok(b) => Some(b),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let Some((number, path)) = newest else {
        return Ok(Latest {
            number: 0,
            schemas: legacy
                .map(|b| parse_record(&legacy_path(job), &b))
                .transpose()?,
            stale_copy: false,
        });
    };
    let text = dest.read_record(&path)?;
    let (current, mut ever) = parse_record(&path, &text)?;
    let stale_copy = legacy.as_ref() != Some(&text);
    // An earlier version of this program, running beside this one, records its schema in the
    // copy only: the types it wrote there count too.
    if let Some(b) = legacy.filter(|_| stale_copy) {
        let (theirs, their_ever) = parse_record(&legacy_path(job), &b)?;
        let mut fields: Vec<_> = ever.fields().iter().cloned().collect();
        for f in theirs.fields().iter().chain(their_ever.fields()) {
            if !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(f.clone());
            }
        }
        ever = Schema::new(fields);
    }
    Ok(Latest {
        number,
        schemas: Some((current, ever)),
        stale_copy,
    })
}

/// A record's (current schema, every field ever).
fn parse_record(path: &str, text: &[u8]) -> Result<(Schema, Schema), EvolutionError> {
    let bad = |reason: String| EvolutionError::Record {
        path: path.to_string(),
        reason,
    };
    let rec: SchemaRecord =
        serde_json::from_slice(text).map_err(|e| bad(format!("does not parse: {e}")))?;
    let current = from_ipc(&rec.arrow_ipc).map_err(|e| bad(format!("arrow_ipc is {e}")))?;
    let ever = match &rec.all_fields_ipc {
        Some(t) => from_ipc(t).map_err(|e| bad(format!("all_fields_ipc is {e}")))?,
        None => current.clone(),
    };
    Ok((current, ever))
}

/// How the files a schema is checked for hold it: by position only (CSV or TSV without a
/// header), and with timestamps in microseconds (a Delta table's: `format::units`), so that a
/// stage's nanoseconds and an explicit microsecond cast, which write the same files, are the
/// same schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Form {
    pub positional: bool,
    pub micros: bool,
}

impl Form {
    /// The form of the files `format` writes.
    pub fn of(format: &crate::format::FormatOptions) -> Form {
        Form {
            positional: format.positional(),
            micros: format.micros,
        }
    }

    /// `schema` as these files hold it.
    fn files(self, schema: &Schema) -> Cow<'_, Schema> {
        match self
            .micros
            .then(|| crate::format::units::micros_schema(schema))
            .flatten()
        {
            Some(s) => Cow::Owned(Schema::clone(&s)),
            None => Cow::Borrowed(schema),
        }
    }
}

/// A plain `positional` flag: files without microsecond timestamps.
impl From<bool> for Form {
    fn from(positional: bool) -> Form {
        Form {
            positional,
            micros: false,
        }
    }
}

/// With `positional` output (CSV or TSV without a header, read by position), the fields of
/// `new` must be those of `old`, in its order: any other change makes readers take the
/// columns after it for others.
fn same_positions(old: &Schema, new: &Schema, positional: bool) -> Result<(), Vec<String>> {
    let names =
        |s: &Schema| -> Vec<String> { s.fields().iter().map(|f| f.name().clone()).collect() };
    if !positional || names(old) == names(new) {
        return Ok(());
    }
    Err(vec![format!(
        "the files are CSV or TSV without a header, which readers read by position: their fields were ({}) and would be ({}); every column after the first difference would be read as another (keep the fields and their order, write a header with `header = true`, or write to another folder)",
        names(old).join(", "),
        names(new).join(", ")
    )])
}

/// A field of `old` or `ever` named as `f` but for case, of another type.
fn other_case<'a>(
    old: &'a Schema,
    ever: &'a Schema,
    f: &arrow::datatypes::Field,
) -> Option<&'a arrow::datatypes::Field> {
    old.fields()
        .iter()
        .chain(ever.fields().iter())
        .find(|o| {
            o.name() != f.name()
                && o.name().eq_ignore_ascii_case(f.name())
                && o.data_type() != f.data_type()
        })
        .map(|o| o.as_ref())
}

/// What changed from `old` to `new`, or why readers could not follow. `ever` holds every field
/// the files were ever written with (for the types of fields dropped since).
pub fn compare(old: &Schema, ever: &Schema, new: &Schema) -> Result<Vec<String>, Vec<String>> {
    let mut changes = Vec::new();
    let mut problems = Vec::new();
    for f in new.fields() {
        let earlier = old
            .field_with_name(f.name())
            .or_else(|_| ever.field_with_name(f.name()));
        // Readers that take names without case (Spark, Hive, Athena, Delta) read a field one
        // of another case was, as that column.
        if let Some(o) = earlier.is_err().then(|| other_case(old, ever, f)).flatten() {
            problems.push(format!(
                "field `{}` ({}) is new, but the files already written have `{}` ({}): readers that take names without case (Spark, Hive, Athena, Delta) read them as one column (give it a name of its own, or `{}`'s type)",
                f.name(),
                f.data_type(),
                o.name(),
                o.data_type(),
                o.name()
            ));
            continue;
        }
        match (old.field_with_name(f.name()), earlier) {
            (_, Ok(o)) if o.data_type() != f.data_type() => problems.push(format!(
                "field `{}` is {} in the files already written and {} now; a reader cannot take both as one column (add a field with a new name instead)",
                f.name(),
                o.data_type(),
                f.data_type()
            )),
            (Ok(o), _) if o.is_nullable() && !f.is_nullable() => problems.push(format!(
                "field `{}` was nullable and is required now; rows already taken may hold nulls (keep it nullable)",
                f.name()
            )),
            (Ok(o), _) if o.is_nullable() != f.is_nullable() => {
                changes.push(format!("field `{}` is nullable now", f.name()))
            }
            (Ok(_), _) => {}
            (Err(_), _) if !f.is_nullable() => problems.push(format!(
                "field `{}` is new and not nullable, but the files already written do not have it (make it nullable)",
                f.name()
            )),
            (Err(_), _) => {
                changes.push(format!("field `{}` ({}) is new", f.name(), f.data_type()))
            }
        }
    }
    for o in old.fields() {
        if new.field_with_name(o.name()).is_err() {
            changes.push(format!(
                "field `{}` is gone (older files still have it)",
                o.name()
            ));
        }
    }
    if problems.is_empty() {
        Ok(changes)
    } else {
        Err(problems)
    }
}

fn to_ipc(schema: &Schema) -> Result<String, String> {
    let mut ipc = Vec::new();
    let mut w = StreamWriter::try_new(&mut ipc, schema).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(base64::engine::general_purpose::STANDARD.encode(ipc))
}

fn from_ipc(text: &str) -> Result<Schema, String> {
    let ipc = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))?;
    schema_from_ipc(&ipc)
}

/// The schema of an Arrow IPC stream's first message, read from the message alone. A
/// stream reader allocates the body the message claims (a record's `bodyLength` of 2^62
/// aborted the process); a schema message has none. A panic of the flatbuffer's reading is
/// this error too.
pub fn schema_from_ipc(ipc: &[u8]) -> Result<Schema, String> {
    std::panic::catch_unwind(|| arrow::ipc::convert::try_schema_from_ipc_buffer(ipc))
        .map_err(|p| {
            format!(
                "not an Arrow schema: {}",
                crate::panics::message(p.as_ref())
            )
        })?
        .map_err(|e| format!("not an Arrow schema: {e}"))
}

/// The schema recorded for `job` in `dest`, if any: (the current one, every field ever).
pub fn recorded(dest: &Destination, job: &str) -> Result<Option<(Schema, Schema)>, EvolutionError> {
    Ok(latest(dest, job)?.schemas)
}

/// Checks `schema` against the one recorded for `job`; with `record`, records it when it is new
/// or changed. Returns the changes (empty: same schema or first run). A record another start
/// makes between this one's read and its write makes this one check again against it.
pub fn check(
    dest: &Destination,
    job: &str,
    schema: &SchemaRef,
    record: bool,
    form: impl Into<Form>,
) -> Result<Vec<String>, EvolutionError> {
    let form = form.into();
    let files = files_ref(form, schema);
    check_recording(dest, job, &files, record, form).map(|(changes, _)| changes)
}

/// `schema` as `form`'s files hold it.
fn files_ref(form: Form, schema: &SchemaRef) -> SchemaRef {
    match form.files(schema) {
        Cow::Owned(s) => Arc::new(s),
        Cow::Borrowed(_) => Arc::clone(schema),
    }
}

/// [`check`], and whether it wrote a record (a first one, or a change).
fn check_recording(
    dest: &Destination,
    job: &str,
    schema: &SchemaRef,
    record: bool,
    form: Form,
) -> Result<(Vec<String>, bool), EvolutionError> {
    let mut lost_to = None;
    for _ in 0..MAX_RACES {
        let mut seen = latest(dest, job)?;
        // Recorded in another form by an earlier version (a Delta job's nanoseconds).
        if let Some((current, ever)) = &mut seen.schemas {
            for s in [current, ever] {
                if let Cow::Owned(files) = form.files(s) {
                    *s = files;
                }
            }
        }
        if lost_to.is_some_and(|n| seen.number < n) {
            return Err(EvolutionError::Record {
                path: format!("{}{:012}.json", records_dir(job), seen.number + 1),
                reason: "is there, yet the listing of its folder does not show it (a folder or a file of another kind in its place?)".into(),
            });
        }
        let changes = match &seen.schemas {
            // The same schema; recorded again only when the copy for earlier versions is
            // behind (a crash between the two writes) or holds an earlier version's record,
            // whose fields the new record then keeps.
            Some((current, _))
                if current.fields() == schema.fields() && !(record && seen.stale_copy) =>
            {
                return Ok((Vec::new(), false))
            }
            Some((current, ever)) => compare(current, ever, schema)
                .and_then(|c| same_positions(current, schema, form.positional).map(|()| c))
                .map_err(|problems| EvolutionError::Incompatible {
                    job: job.to_string(),
                    problems,
                })?,
            None => {
                if !dest
                    .list(&format!("_sluice/{job}/checkpoints/"))?
                    .is_empty()
                {
                    tracing::warn!(job, "the job's files were written before schemas were recorded; the current schema is recorded now without a check against them");
                }
                Vec::new()
            }
        };
        if !record {
            return Ok((changes, false));
        }
        crate::fault::hold_while("hold_schema_record");
        let text = record_text(job, schema, seen.schemas.as_ref().map(|(_, ever)| ever))?;
        let Some(number) = seen.number.checked_add(1) else {
            return Err(EvolutionError::Record {
                path: records_dir(job),
                reason: format!(
                    "its newest record is numbered {}, the last number there is",
                    seen.number
                ),
            });
        };
        let path = format!("{}{number:012}.json", records_dir(job));
        match dest.put_atomic(&path, &text, true) {
            Ok(()) => {}
            // Another start recorded first (or this write took effect after reporting a
            // failure): check against what is there now.
            Err(crate::store::StoreError::Exists { .. }) => {
                lost_to = Some(number);
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        if let Err(e) = dest.put_atomic(&legacy_path(job), &text, false) {
            tracing::warn!(job, error = %e, "the schema is recorded; its copy for earlier versions is not (the next start writes it)");
        }
        return Ok((changes, true));
    }
    Err(EvolutionError::Record {
        path: records_dir(job),
        reason: format!(
            "{MAX_RACES} other starts recorded a schema while this one checked its own; try again"
        ),
    })
}

/// The record of `schema`, with every field the files were ever written with: its own, then
/// those of `ever` it dropped, with their last type.
fn record_text(
    job: &str,
    schema: &Schema,
    ever: Option<&Schema>,
) -> Result<Vec<u8>, EvolutionError> {
    let bad = |reason: String| EvolutionError::Record {
        path: records_dir(job),
        reason,
    };
    let mut all: Vec<arrow::datatypes::FieldRef> = schema.fields().iter().cloned().collect();
    for f in ever.iter().flat_map(|e| e.fields()) {
        if schema.field_with_name(f.name()).is_err() {
            all.push(f.clone());
        }
    }
    let rec = SchemaRecord {
        version: 1,
        fields: schema
            .fields()
            .iter()
            .map(|f| FieldRecord {
                name: f.name().clone(),
                ty: f.data_type().to_string(),
                nullable: f.is_nullable(),
            })
            .collect(),
        arrow_ipc: to_ipc(schema).map_err(bad)?,
        all_fields_ipc: Some(to_ipc(&Schema::new(all)).map_err(bad)?),
    };
    Ok(serde_json::to_vec_pretty(&rec).expect("a schema record serializes"))
}

/// [`check_beside`], then [`check`]: what a start (`record`), a reload's check and `validate`
/// ask of the schema job `job` of repo `repo` is about to write into `dest`. The backfills'
/// records first, so that a schema they refuse is not recorded.
pub fn check_all(
    dest: &Destination,
    (job, repo): (&str, &str),
    schema: &SchemaRef,
    record: bool,
    form: impl Into<Form>,
) -> Result<Vec<String>, EvolutionError> {
    let form = form.into();
    let schema = &files_ref(form, schema);
    check_beside(dest, job, repo, schema, form)?;
    let (changes, recorded) = check_recording(dest, job, schema, record, form)?;
    if recorded {
        // A backfill starting meanwhile may have recorded its schema after the look above and
        // checked it against the record before this one, or before there was one (each side
        // writes, then reads).
        check_beside(dest, job, repo, schema, form)?;
    }
    Ok(changes)
}

/// Checks `schema`, which job `job` of repo `repo` is about to write into `dest`, against the
/// schema records of the repo's backfills whose files are read with its own: those whose
/// range is recorded there (into this folder, or a folder inside it). A backfill may have
/// written another schema than the job's records hold; a change must be one readers of its
/// files can follow too. A record that cannot be parsed is logged (the backfill's own runs
/// check it), not fatal; the store failing is.
pub fn check_beside(
    dest: &Destination,
    job: &str,
    repo: &str,
    schema: &Schema,
    form: impl Into<Form>,
) -> Result<(), EvolutionError> {
    let form = form.into();
    let schema = &*form.files(schema);
    // The store failing is not a record that cannot be read: passed over, a schema the
    // backfill's files refuse would be recorded (a finished backfill never checks again).
    for (name, r) in crate::commit::ranges::each_backfill(dest, Some(job), repo)? {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(backfill = %name, error = %e, "the backfill's range could not be read: the schema is not checked against its files");
                continue;
            }
        };
        let place = match &r.at {
            None => Some(dest.clone()),
            Some(at) => dest.child(at),
        };
        let Some(place) = place else { continue };
        match recorded(&place, &name) {
            Ok(Some((current, ever))) if form.files(&current).fields() != schema.fields() => {
                let (current, ever) = (form.files(&current), form.files(&ever));
                compare(&current, &ever, schema)
                    .and_then(|_| same_positions(&current, schema, form.positional))
                    .map_err(|problems| EvolutionError::Beside {
                        job: job.to_string(),
                        backfill: name.clone(),
                        problems,
                    })?;
            }
            Ok(_) => {}
            Err(e @ EvolutionError::Sink(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(backfill = %name, error = %e, "the backfill's schema record could not be read: the schema is not checked against its files");
            }
        }
    }
    Ok(())
}

/// `batch` (of an older schema) in `to`'s layout: columns by name, new fields null. Fails for a
/// field whose type changed or a new field that is not nullable.
pub fn adapt(batch: &RecordBatch, to: &SchemaRef) -> Result<RecordBatch, String> {
    if batch.schema().fields() == to.fields() {
        return Ok(batch.clone());
    }
    let from = batch.schema();
    let mut columns = Vec::with_capacity(to.fields().len());
    for f in to.fields() {
        match from.index_of(f.name()) {
            Ok(i) if from.field(i).data_type() == f.data_type() => {
                columns.push(batch.column(i).clone())
            }
            Ok(i) => {
                return Err(format!(
                    "field `{}` was {}, is {} now",
                    f.name(),
                    from.field(i).data_type(),
                    f.data_type()
                ))
            }
            Err(_) if f.is_nullable() => {
                columns.push(new_null_array(f.data_type(), batch.num_rows()))
            }
            Err(_) => return Err(format!("field `{}` is new and not nullable", f.name())),
        }
    }
    RecordBatch::try_new(Arc::clone(to), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "evolution_tests.rs"]
mod tests;
