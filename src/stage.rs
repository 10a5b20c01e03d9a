//! Filter and transform stages: SQL over every decoded batch, between decoding and the channel.
//!
//! Each stage is one of `filter` (a boolean SQL expression), `select` (output columns as SQL
//! expressions with aliases) or `sql` (`SELECT ... FROM input [WHERE ...]`). All three become a
//! query over a table `input` with the previous stage's schema, planned once at start-up by
//! DataFusion's SQL planner (so unknown columns, type mismatches and syntax errors are reported
//! before any data moves) and kept as physical expressions: a predicate and a projection,
//! evaluated on whole Arrow batches. Only a projection over a filter over `input` is a stage: no
//! aggregates, joins, sorts or limits (each batch is transformed on its own).
//!
//! A batch whose evaluation fails (a bad cast, bad regex input) is split in halves until the
//! failing rows stand alone; those rows fail with the stage's name and the reason, the others go
//! on. What happens to them is the repo's `on_error`. Functions that build values of a size the
//! data decides (`lpad`, `rpad`, `repeat`) are guarded so that a record cannot make a batch
//! allocate past a bound (see `stage/guard.rs`).

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::datatypes::{Schema, SchemaRef};
use datafusion_common::DFSchemaRef;
use datafusion_expr::{Expr, LogicalPlan};
use datafusion_physical_expr::PhysicalExpr;
use serde::Deserialize;

use planner::{clean, Planner};

/// One stage as the job file gives it: exactly one of `filter`, `select`, `sql`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Names the stage in errors and dead letters (default: its kind and number).
    #[serde(default)]
    pub name: Option<String>,
    /// A SQL condition: rows for which it is not true are dropped (counted).
    #[serde(default)]
    pub filter: Option<String>,
    /// SQL expressions, each `expr AS name`: the columns the stage outputs.
    #[serde(default)]
    pub select: Option<Vec<String>>,
    /// `SELECT ... FROM input [WHERE ...]`: a projection over a filter of one batch.
    #[serde(default)]
    pub sql: Option<String>,
}

impl StageSpec {
    /// The stage as a query over `input`, or why the spec is not one stage.
    fn query(&self) -> Result<(&'static str, String), String> {
        match (&self.filter, &self.select, &self.sql) {
            (Some(f), None, None) => Ok(("filter", format!("SELECT * FROM input WHERE {f}"))),
            (None, Some(cols), None) if !cols.is_empty() => {
                Ok(("select", format!("SELECT {} FROM input", cols.join(", "))))
            }
            (None, Some(_), None) => Err("`select` names no columns".into()),
            (None, None, Some(q)) => Ok(("sql", q.clone())),
            _ => Err("a stage has exactly one of `filter`, `select` or `sql`".into()),
        }
    }
}

/// What happens to rows a stage fails on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// They become dead letters with the stage and the reason (default).
    #[default]
    DeadLetter,
    /// They are dropped and counted.
    Drop,
    /// The task stops.
    Fail,
}

impl OnError {
    pub fn parse(s: &str) -> Result<OnError, String> {
        match s {
            "dead_letter" => Ok(OnError::DeadLetter),
            "drop" => Ok(OnError::Drop),
            "fail" => Ok(OnError::Fail),
            other => Err(format!("`{other}` (expected dead_letter, drop or fail)")),
        }
    }
}

/// Errors found while planning stages, each naming the stage.
#[derive(Debug, thiserror::Error)]
#[error("stage {number} (`{name}`): {reason}")]
pub struct StageError {
    pub number: usize,
    pub name: String,
    pub reason: String,
}

struct Planned {
    name: String,
    filter: Option<Arc<dyn PhysicalExpr>>,
    project: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

/// The planned stages of a repo.
pub struct Stages {
    planned: Vec<Planned>,
    input: SchemaRef,
    pub on_error: OnError,
}

impl std::fmt::Debug for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stages")
            .field(
                "stages",
                &self.planned.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .field("on_error", &self.on_error)
            .finish()
    }
}

/// The result of applying the stages to one batch.
#[derive(Debug, Default)]
pub struct Applied {
    /// What is left (None: no row).
    pub batch: Option<RecordBatch>,
    /// Rows of the input batch that a stage failed on, with the reason (naming the stage).
    pub failed: Vec<(usize, String)>,
    /// Rows removed by filters.
    pub filtered: u64,
    /// For each row of `batch`, its row in the input batch.
    pub kept: Vec<u32>,
}

impl Stages {
    /// Plans `specs` over batches of `input`.
    pub fn plan(
        specs: &[StageSpec],
        input: SchemaRef,
        on_error: OnError,
    ) -> Result<Stages, StageError> {
        let sql_planner = Planner::new();
        let mut schema = input.clone();
        let mut planned = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let number = i + 1;
            let fail = |name: &str, reason: String| StageError {
                number,
                name: name.to_string(),
                reason,
            };
            let (kind, sql) = spec
                .query()
                .map_err(|r| fail(spec.name.as_deref().unwrap_or("?"), r))?;
            let name = spec
                .name
                .clone()
                .unwrap_or_else(|| format!("{kind}-{number}"));
            // SQL reads `A` as `a` unless quoted: with both, an unquoted `A` read `a`'s values.
            if let Some(word) = ambiguous_word(&sql, &schema) {
                return Err(fail(&name, format!("the schema has fields that differ only in case, and stage SQL reads an unquoted `{word}` as `{}`: write the one meant double-quoted (`\"{word}\"`)", word.to_lowercase())));
            }
            let plan = sql_planner
                .plan(&sql, schema.clone())
                .map_err(|e| fail(&name, clean(e)))?;
            let p = lower(&sql_planner, &plan, name.clone()).map_err(|r| fail(&name, r))?;
            // A trial on an empty batch: what cannot be evaluated at all fails here, not on
            // every row later.
            eval(&p, &RecordBatch::new_empty(schema.clone())).map_err(|r| fail(&name, r))?;
            temporal::check_zones(&p.schema).map_err(|r| fail(&name, r))?;
            schema = p.schema.clone();
            planned.push(p);
        }
        Ok(Stages {
            planned,
            input,
            on_error,
        })
    }

    /// The schema of batches the stages take.
    pub fn input_schema(&self) -> SchemaRef {
        self.input.clone()
    }

    /// The schema of what the stages produce (what the writers write).
    pub fn output_schema(&self) -> SchemaRef {
        self.planned
            .last()
            .map_or_else(|| self.input.clone(), |p| p.schema.clone())
    }

    /// Each stage's name and output schema.
    pub fn describe(&self) -> Vec<(String, SchemaRef)> {
        self.planned
            .iter()
            .map(|p| (p.name.clone(), p.schema.clone()))
            .collect()
    }

    /// Applies every stage to `batch`.
    pub fn apply(&self, batch: RecordBatch) -> Applied {
        let mut out = Applied::default();
        let mut rows = UInt32Array::from_iter_values(0..batch.num_rows() as u32);
        let mut cur = batch;
        for st in &self.planned {
            if cur.num_rows() == 0 {
                break;
            }
            let before = cur.num_rows();
            let (next, kept, failed) = isolate(st, &cur, &rows);
            let failures = failed.len();
            for (i, reason) in failed {
                out.failed.push((rows.value(i) as usize, reason));
            }
            out.filtered += (before - failures - next.num_rows()) as u64;
            rows = kept;
            cur = next;
        }
        out.batch = (cur.num_rows() > 0).then_some(cur);
        out.kept = rows.values().to_vec();
        out
    }
}

/// A stage's plan as a predicate and a projection, or why it is not a stage.
fn lower(ctx: &Planner, plan: &LogicalPlan, name: String) -> Result<Planned, String> {
    let not_a_stage = |what: &str| {
        format!("{what} is not allowed in a stage: a stage is `SELECT expressions FROM input [WHERE condition]` over one batch at a time (no aggregates, joins, ORDER BY, LIMIT or DISTINCT)")
    };
    let mut node = plan;
    let mut projection = None;
    let mut filter = None;
    loop {
        match node {
            LogicalPlan::Projection(p) if projection.is_none() && filter.is_none() => {
                projection = Some(p);
                node = p.input.as_ref();
            }
            LogicalPlan::Filter(f) if filter.is_none() => {
                filter = Some(f);
                node = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            LogicalPlan::TableScan(t) if t.table_name.table() == "input" => break,
            LogicalPlan::TableScan(t) => {
                return Err(format!(
                    "table `{}`: a stage reads only `input` (the batch)",
                    t.table_name
                ))
            }
            other => return Err(not_a_stage(&format!("`{}`", other.display()))),
        }
    }
    let predicate = match filter {
        Some(f) => {
            let input = f.input.schema();
            let e = physical(ctx, f.predicate.clone(), input)?;
            let ty = e.data_type(input.as_arrow()).map_err(clean)?;
            if ty != arrow::datatypes::DataType::Boolean {
                return Err(format!("the condition is {ty}, not a boolean expression"));
            }
            Some(e)
        }
        None => None,
    };
    let (project, schema) = match projection {
        Some(p) if p.expr.is_empty() => return Err("the stage selects no columns".into()),
        Some(p) => {
            // A derived column without an alias is named after its expression
            // (`lower(input.method)`), which no reader of the output expects.
            if let Some(e) = p
                .expr
                .iter()
                .find(|e| !matches!(e, Expr::Column(_) | Expr::Alias(_)))
            {
                let named = e.schema_name().to_string();
                return Err(format!("`{e}` has no name: give it one (`... AS name`); to keep the name it gets now, `AS \"{named}\"`"));
            }
            let input = p.input.schema();
            let exprs = p
                .expr
                .iter()
                .map(|e| physical(ctx, e.clone(), input))
                .collect::<Result<Vec<_>, _>>()?;
            // Each output column's type is what its expression evaluates to (the plan's schema
            // can differ, e.g. for CASE), under the plan's name.
            let fields = exprs
                .iter()
                .zip(plan.schema().fields())
                .map(|(e, f)| {
                    Ok(arrow::datatypes::Field::new(
                        f.name(),
                        e.data_type(input.as_arrow()).map_err(clean)?,
                        e.nullable(input.as_arrow()).map_err(clean)? || f.is_nullable(),
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            (exprs, Arc::new(Schema::new(fields)))
        }
        None => (Vec::new(), Arc::new(plan.schema().as_arrow().clone())),
    };
    Ok(Planned {
        name,
        filter: predicate,
        project,
        schema,
    })
}

/// A logical expression as a physical one, coerced, simplified and size-guarded.
fn physical(
    ctx: &Planner,
    expr: Expr,
    schema: &DFSchemaRef,
) -> Result<Arc<dyn PhysicalExpr>, String> {
    ctx.physical(expr, schema, guard::guard_sizes, guard::check_constants)
        .map_err(clean)
}

/// Evaluates one stage on `batch`: (output, the mask of rows kept, when a filter ran).
fn eval(st: &Planned, batch: &RecordBatch) -> Result<(RecordBatch, Option<BooleanArray>), String> {
    // A panic in a function (a library bug some value triggers) fails the batch like an
    // error, so the rows it panics on are isolated and handled per `on_error`.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eval_unguarded(st, batch)))
        .unwrap_or_else(|panic| {
            Err(format!(
                "the function panicked: {}",
                crate::panics::message(panic.as_ref())
            ))
        })
}

fn eval_unguarded(
    st: &Planned,
    batch: &RecordBatch,
) -> Result<(RecordBatch, Option<BooleanArray>), String> {
    let (filtered, mask) = match &st.filter {
        Some(f) => {
            let v = f
                .evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()))
                .map_err(clean)?;
            let mask = v
                .as_boolean_opt()
                .ok_or("the filter is not a boolean expression")?
                .clone();
            // SQL: a null condition does not keep the row.
            let mask = if mask.null_count() > 0 {
                arrow::compute::prep_null_mask_filter(&mask)
            } else {
                mask
            };
            (
                arrow::compute::filter_record_batch(batch, &mask).map_err(|e| e.to_string())?,
                Some(mask),
            )
        }
        None => (batch.clone(), None),
    };
    if st.project.is_empty() {
        let out = RecordBatch::try_new(st.schema.clone(), filtered.columns().to_vec())
            .map_err(|e| e.to_string())?;
        return Ok((out, mask));
    }
    let columns = st
        .project
        .iter()
        .map(|e| {
            e.evaluate(&filtered)
                .and_then(|v| v.into_array(filtered.num_rows()))
                .map_err(clean)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = RecordBatch::try_new_with_options(
        st.schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(filtered.num_rows())),
    )
    .map_err(|e| e.to_string())?;
    // A date, time or duration a stage computed that readers cannot take (`to_timestamp_seconds`
    // of a huge number), at any depth, is that row's failure, as it is the decoder's for input
    // (see `temporal`).
    for (field, col) in out.schema().fields().iter().zip(out.columns()) {
        if let Some(why) = temporal::check(field.name(), col) {
            return Err(why);
        }
    }
    Ok((out, mask))
}

/// Evaluates a stage, isolating rows it fails on: (output, the original row numbers of the
/// output's rows, failed rows as (index into `batch`, reason)).
fn isolate(
    st: &Planned,
    batch: &RecordBatch,
    rows: &UInt32Array,
) -> (RecordBatch, UInt32Array, Vec<(usize, String)>) {
    // A failed evaluation gives back the growth its guarded calls counted: its rows are tried
    // again, in halves.
    let spent = guard::account();
    let result = eval(st, batch);
    if result.is_err() {
        guard::give_back(spent);
    }
    match result {
        Ok((out, mask)) => {
            let kept = match mask {
                Some(m) => arrow::compute::filter(rows, &m)
                    .expect("a mask of the batch's length")
                    .as_primitive()
                    .clone(),
                None => rows.clone(),
            };
            (out, kept, Vec::new())
        }
        Err(reason) if batch.num_rows() == 1 => (
            RecordBatch::new_empty(st.schema.clone()),
            UInt32Array::from(Vec::<u32>::new()),
            vec![(0, format!("stage `{}`: {reason}", st.name))],
        ),
        Err(_) => {
            let half = batch.num_rows() / 2;
            let (a_out, a_rows, a_failed) =
                isolate(st, &batch.slice(0, half), &rows.slice(0, half));
            let rest = batch.num_rows() - half;
            let (b_out, b_rows, b_failed) =
                isolate(st, &batch.slice(half, rest), &rows.slice(half, rest));
            let mut failed = a_failed;
            failed.extend(b_failed.into_iter().map(|(i, r)| (i + half, r)));
            let joined = arrow::compute::concat_batches(&st.schema, [&a_out, &b_out]);
            join(
                st,
                &rows.values()[half..],
                half,
                (a_out, a_rows),
                (b_rows, failed),
                joined,
            )
        }
    }
}

/// The two halves' outputs as one, with their row numbers: `joined` (the outputs put
/// together) and the kept row numbers of both. When the outputs do not fit one batch (a
/// string column past 2 GiB: functions no guard bounds, such as `concat`, over a large
/// chunk), the second half's kept rows fail instead, so the chunk goes on with what fits;
/// `b_all` are the second half's row numbers, from index `half`.
fn join(
    st: &Planned,
    b_all: &[u32],
    half: usize,
    (a_out, a_rows): (RecordBatch, UInt32Array),
    (b_rows, mut failed): (UInt32Array, Vec<(usize, String)>),
    joined: Result<RecordBatch, arrow::error::ArrowError>,
) -> (RecordBatch, UInt32Array, Vec<(usize, String)>) {
    match joined {
        Ok(out) => {
            let mut kept = a_rows.values().to_vec();
            kept.extend_from_slice(b_rows.values());
            (out, UInt32Array::from(kept), failed)
        }
        Err(e) => {
            let reason = format!(
                "stage `{}`: the output of this record's chunk does not fit one batch ({e}); lower `source.chunk_bytes`",
                st.name
            );
            // Row numbers are ascending: a kept one is found among the half's by search.
            failed.extend(b_rows.values().iter().filter_map(|r| {
                b_all
                    .binary_search(r)
                    .ok()
                    .map(|j| (half + j, reason.clone()))
            }));
            failed.sort_by_key(|f| f.0);
            (a_out, a_rows, failed)
        }
    }
}

/// Applies `on_error` to the dead letters of one item: rows stages failed on (class `stage`)
/// stay dead letters, are dropped (returns how many), or stop the task (the error names the
/// first one and its position).
pub fn enforce(
    on_error: OnError,
    dead: &mut Vec<crate::decode::DeadLetter>,
) -> Result<u64, String> {
    match on_error {
        OnError::DeadLetter => Ok(0),
        OnError::Drop => {
            let before = dead.len();
            dead.retain(|d| d.class() != "stage");
            Ok((before - dead.len()) as u64)
        }
        OnError::Fail => match dead.iter().find(|d| d.class() == "stage") {
            Some(d) => Err(format!(
                "{} (the record at offset {}, line {}; on_error = \"fail\")",
                d.reason, d.position.offset, d.position.line
            )),
            None => Ok(0),
        },
    }
}

pub(crate) mod guard;
mod patterns;
mod planner;
mod temporal;
/// An unquoted word of `sql` with capitals that names, in lower case, one of `schema`'s
/// fields that differ only in case (`A` beside `a`), if any: SQL reads it as the lower-case
/// one. Words in single or double quotes are passed over.
fn ambiguous_word(sql: &str, schema: &SchemaRef) -> Option<String> {
    let mut count: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for f in schema.fields() {
        *count.entry(f.name().to_lowercase()).or_default() += 1;
    }
    if count.values().all(|&n| n < 2) {
        return None;
    }
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                // To the closing quote (a doubled quote inside is two of them).
                for (_, d) in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if !(d.is_alphanumeric() || d == '_') {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                let word = &sql[i..end];
                let lower = word.to_lowercase();
                if word != lower && count.get(&lower).is_some_and(|&n| n > 1) {
                    return Some(word.to_string());
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests;
