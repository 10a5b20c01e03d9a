//! A size guard on the stage functions that build values whose size a record decides (and a
//! work guard on those whose work is a product of two texts' lengths, [`MAX_STEPS`]):
//! `lpad(s, n)`, `rpad(s, n)` and `repeat(s, n)` with `n` from the data, and `replace(s, from,
//! to)` and `regexp_replace(s, pattern, to[, flags])`, whose values can reach about `len(s) ×
//! len(to)` bytes (an empty match between every character, or `$0` group references in `to`),
//! a product of two values from the data. DataFusion sizes their output buffer for the whole
//! batch before it checks any one value, so a few records asking for billions of characters
//! make one allocation of terabytes, which aborts the process.
//!
//! At planning, each such call is replaced by a guarded one (`sluice_guarded_repeat`, ...)
//! before the expression is simplified (so a call of constants is folded only within the
//! bounds, and what folding leaves is checked: [`check_constants`]); the guarded call runs
//! the function on the same evaluated arguments, within three bounds:
//! - before it builds, the worst case of each value (`n` × `len(s)` for `repeat`, 4 bytes a
//!   character for the pads, `(2 × len(s) + 1) × len(to) + len(s)` for the replacements) is
//!   held to [`MAX_VALUE`], and their sum to [`MAX_BATCH`] per evaluation;
//! - what it builds beyond its text `s` (its growth) is added to the chunk's account
//!   ([`account`]), kept per thread (a chunk is decoded on one thread) across the chunk's
//!   batches and stages, and held to [`MAX_GROWTH`]; the least growth the call can have
//!   (exact for `repeat`, `n − len(s)` for the pads) is checked before it builds.
//!
//! A batch past a bound fails, and is halved like any other stage failure, so only the records
//! asking for too much become dead letters; an evaluation that fails gives back what it
//! counted ([`give_back`]). Without the chunk's account, the halves of a batch over the bound
//! each passed and were put together again: a 1 MiB chunk could grow to 16 GiB (1,000 records
//! asking for 16 MiB each), past memory and past what one Arrow string column holds. Counting
//! what was built rather than the worst case keeps `regexp_replace` redacting a large text
//! from counting 20 times its size. Growth is counted as built, kept or not (a guarded call
//! inside a filter's condition counts too).

use std::cell::Cell;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::kernels::cast::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{exec_err, plan_err, Result, ScalarValue};
use datafusion_expr::expr::ScalarFunction;
use datafusion_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// The most bytes one value of a guarded function may be asked to hold.
pub const MAX_VALUE: u64 = 16 << 20;
/// The most bytes the values of one batch may be asked to hold, per evaluation.
pub const MAX_BATCH: u64 = 256 << 20;
/// The most bytes guarded calls may grow one chunk's values by, in all its batches and stages.
pub const MAX_GROWTH: u64 = 256 << 20;

/// The most steps (pairs of bytes a function may compare) one value of a function whose work
/// grows with the product of its texts' lengths may take: `levenshtein(a, b)` fills a table of
/// `len(a) × len(b)`; `strpos(s, sub)` with `sub` from the data compares it at each place of
/// `s` in the worst case (a text of `a`s, a substring of `a`s ending in `b`), a pattern from
/// the data (the `regexp_*` functions, `~`, `LIKE` and `SIMILAR TO`: see `patterns`) is
/// compiled per row and may be matched in `len(pattern) × len(s)`, and a trim's
/// characters are each compared with each character trimmed. One record of two 1 MiB texts
/// took minutes of a decoding thread, and every partition behind it waited.
pub const MAX_STEPS: u64 = 1 << 26;
/// The most steps such functions may take for the rows one chunk keeps, in all its batches
/// and stages: an evaluation that fails (another row's error) gives its steps back, as its
/// rows are tried again in halves.
pub const MAX_CHUNK_STEPS: u64 = 1 << 32;
/// The most steps such functions may take for one chunk whatever fails: the halving of
/// failed evaluations repeats their work (about log2 of the batch's rows times, for one bad
/// row), but not past this; beyond it every evaluation of the chunk fails.
pub const MAX_CHUNK_WORK: u64 = 1 << 36;

/// What guarded calls spent on the chunk a thread decodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    /// Bytes values were grown by.
    pub grown: u64,
    /// Steps of functions whose work is a product of lengths ([`MAX_STEPS`]), for the
    /// evaluations kept.
    pub steps: u64,
    /// Those steps, and the steps of evaluations thrown away ([`MAX_CHUNK_WORK`]).
    pub work: u64,
}

thread_local! {
    /// What guarded calls spent on the chunk this thread decodes.
    static SPENT: Cell<Account> = const {
        Cell::new(Account {
            grown: 0,
            steps: 0,
            work: 0,
        })
    };
}

/// What guarded calls spent on the chunk this thread decodes.
pub fn account() -> Account {
    SPENT.get()
}

/// Sets this thread's account (to nothing when a chunk starts).
pub fn set_account(spent: Account) {
    SPENT.set(spent);
}

/// Gives back what an evaluation that is thrown away (it failed, and its rows are tried again)
/// grew values by and its steps, since the account was `before`: that memory is freed, and
/// its rows are counted again when tried. The work it did stays counted ([`MAX_CHUNK_WORK`]).
pub fn give_back(before: Account) {
    SPENT.set(Account {
        work: account().work,
        ..before
    });
}

/// The chunk's account with `grown` bytes more, or the error when that is past [`MAX_GROWTH`].
fn room(grown: u64) -> Result<Account> {
    let spent = account();
    let total = spent.grown.saturating_add(grown);
    if total > MAX_GROWTH {
        return exec_err!(
            "stage functions grew this record's chunk by {total} bytes; they may grow a chunk by at most {MAX_GROWTH} bytes"
        );
    }
    Ok(Account {
        grown: total,
        ..spent
    })
}

/// Which function a guarded call runs, for its worst case and its least growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `repeat(s, n)`.
    Repeat,
    /// `lpad(s, n[, fill])`, `rpad(s, n[, fill])`.
    Pad,
    /// `replace(s, from, to)`, `regexp_replace(s, pattern, to[, flags])`.
    Replace,
    /// `levenshtein(a, b)`; `strpos(s, sub)` (`instr`, `position`) and the `regexp_*`
    /// matches with a substring or pattern from the data; `btrim`/`ltrim`/`rtrim(s, chars)`
    /// (each character trimmed is compared with each of `chars`): work, not size, is
    /// `len(a) × len(b)`.
    Steps,
}

/// What the second argument of a call counted in steps weighs: its bytes, or, for a regular
/// expression, the states it compiles to (with its flags, argument `flags`, when given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Measure {
    Bytes,
    /// `flags`: the argument holding them; `fold`: the operator matches regardless of case
    /// (`~*`, `!~*`), as with the flag `i`.
    Regex {
        flags: Option<usize>,
        fold: bool,
    },
}

/// Where a `regexp_*` function takes its flags, which DataFusion compiles into the pattern
/// (`(?flags)pattern`): flags from the data make a constant pattern one from the data.
fn flags_at(name: &str) -> Option<usize> {
    match name {
        "regexp_like" | "regexp_match" => Some(2),
        "regexp_count" | "regexp_replace" => Some(3),
        "regexp_instr" => Some(4),
        _ => None,
    }
}

/// The `regexp_*` call `name(args)` compiles a pattern from the data: its pattern, or its
/// flags, are not constants.
fn pattern_from_data(name: &str, args: &[Expr]) -> bool {
    let constant = |i: usize| args.get(i).is_none_or(|a| matches!(a, Expr::Literal(..)));
    flags_at(name).is_some_and(|f| !constant(1) || !constant(f))
}

/// A guarded call of the function `inner`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Guarded {
    inner: Arc<ScalarUDF>,
    kind: Kind,
    /// The call's work is counted as steps ([`MAX_STEPS`]): every [`Kind::Steps`] call, and
    /// `regexp_replace` with a pattern from the data.
    steps: bool,
    /// What a step of the second argument is.
    measure: Measure,
    name: String,
    signature: Signature,
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(types)
    }

    /// The function's own field: its type and whether it can be null are unchanged.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let text = lengths(&args.args[0], rows);
        let spent = account();
        let (mut steps, mut work) = (spent.steps, spent.work);
        if self.steps {
            let these = self.steps(&args.args, &text, rows)?;
            (steps, work) = (steps.saturating_add(these), work.saturating_add(these));
            if steps > MAX_CHUNK_STEPS {
                return exec_err!(
                    "stage functions would take {steps} steps for this record's chunk; `levenshtein`, `strpos`, matches of patterns from the data and trims may take at most {MAX_CHUNK_STEPS} steps per chunk"
                );
            }
            if work > MAX_CHUNK_WORK {
                return exec_err!(
                    "stage functions would take {work} steps for this record's chunk, counting evaluations other records failed; they may take at most {MAX_CHUNK_WORK}"
                );
            }
        }
        if self.kind == Kind::Steps {
            let out = self.inner.invoke_with_args(args)?;
            set_account(Account {
                steps,
                work,
                ..spent
            });
            return Ok(out);
        }
        let least = self.check(&args.args, &text, rows)?;
        room(least)?;
        let mut args = args;
        if self.kind != Kind::Replace {
            // A negative count in a column is 0, as a constant one is: DataFusion's pads sized
            // their buffer from it as an unsigned number and panicked ("capacity overflow").
            args.args[1] = at_least_zero(&args.args[1]);
        }
        let out = self.inner.invoke_with_args(args)?;
        let grown = lengths(&out, rows)
            .iter()
            .zip(&text)
            .map(|(b, t)| b.unwrap_or(0).saturating_sub(t.unwrap_or(0)))
            .fold(0u64, u64::saturating_add);
        set_account(Account {
            steps,
            work,
            ..room(grown)?
        });
        Ok(out)
    }
}

impl Guarded {
    /// Checks the worst case of each value the call would build (`text`: the byte lengths of
    /// its first argument) against [`MAX_VALUE`] and [`MAX_BATCH`]; the least it grows its
    /// texts by.
    fn check(&self, args: &[ColumnarValue], text: &[Option<u64>], rows: usize) -> Result<u64> {
        if self.kind == Kind::Steps {
            self.steps(args, text, rows)?;
            return Ok(0);
        }
        let mut budget = Budget::default();
        let mut least = 0u64;
        if self.kind == Kind::Replace {
            let to = lengths(&args[2], rows);
            // `replace`'s text to find is text: at most len(s) / len(from) matches, none when it
            // is empty. A pattern can match the empty text between every character.
            let from = (self.inner.name() == "replace").then(|| lengths(&args[1], rows));
            for (i, (t, s)) in to.iter().zip(text).enumerate() {
                let (Some(t), Some(s)) = (t, s) else {
                    continue;
                };
                let bytes = match from.as_ref().map(|f| f[i]) {
                    Some(None | Some(0)) => *s,
                    Some(Some(f)) => (s / f)
                        .saturating_mul(t.saturating_sub(f))
                        .saturating_add(*s),
                    None => s
                        .saturating_mul(2)
                        .saturating_add(1)
                        .saturating_mul(*t)
                        .saturating_add(*s),
                };
                budget.add(bytes, || {
                    format!("a replacement could build {bytes} bytes (a text of {s} bytes, a replacement of {t})")
                })?;
            }
            return Ok(0);
        }
        // A pad's fill: a null or empty one pads nothing.
        let fill = args.get(2).map(|f| lengths(f, rows));
        // A constant count is checked too: `repeat(s, 200)` takes its size from `s`, and the
        // pads' constant counts add up over a batch.
        for (i, n) in counts(&args[1], rows)?.into_iter().enumerate() {
            let Some(n) = n else {
                continue;
            };
            let n = n.max(0) as u64;
            let s = text.get(i).copied().flatten();
            let pads = s.is_some() && fill.as_ref().is_none_or(|f| f[i].unwrap_or(0) > 0);
            let s = s.unwrap_or(0);
            // repeat: each value is its text's length times n, exactly; the pads: n
            // characters, each 1 to 4 bytes, at least n bytes when they pad.
            let (bytes, grows) = match self.kind {
                Kind::Repeat => (n.saturating_mul(s), n.saturating_mul(s).saturating_sub(s)),
                _ if pads => (n.saturating_mul(4), n.saturating_sub(s)),
                _ => (n.saturating_mul(4), 0),
            };
            budget.add(bytes, || {
                format!("a value of {bytes} bytes was asked for (count {n})")
            })?;
            least = least.saturating_add(grows);
        }
        Ok(least)
    }
}

impl Guarded {
    /// The steps of a [`Kind::Steps`] call (`text`: the byte lengths of its first argument),
    /// each value's held to [`MAX_STEPS`].
    fn steps(&self, args: &[ColumnarValue], text: &[Option<u64>], rows: usize) -> Result<u64> {
        let weights = match self.measure {
            Measure::Bytes => lengths(&args[1], rows),
            Measure::Regex { flags, fold } => super::patterns::regex_weights(
                &args[1],
                flags.and_then(|f| args.get(f)),
                fold,
                rows,
            )?,
        };
        let mut all = 0u64;
        for (a, b) in text.iter().zip(weights) {
            let (Some(a), Some(b)) = (a, b) else {
                continue;
            };
            let steps = a.saturating_mul(b);
            if steps > MAX_STEPS {
                let of = match self.measure {
                    Measure::Bytes => format!("texts of {a} and {b} bytes"),
                    Measure::Regex { .. } => {
                        format!("a text of {a} bytes and a pattern of {b} states compiled")
                    }
                };
                return exec_err!(
                    "`{}` of {of} could take {steps} steps; it may take at most {MAX_STEPS} per value",
                    self.inner.name()
                );
            }
            all = all.saturating_add(steps);
        }
        Ok(all)
    }
}

/// A count column with its negative values made 0 (itself when it has none).
fn at_least_zero(n: &ColumnarValue) -> ColumnarValue {
    let ColumnarValue::Array(a) = n else {
        return n.clone();
    };
    let Some(ints) = a.as_primitive_opt::<Int64Type>() else {
        return n.clone();
    };
    if !ints.iter().any(|v| v.is_some_and(|v| v < 0)) {
        return n.clone();
    }
    let clamped: arrow::array::Int64Array = ints.iter().map(|v| v.map(|v| v.max(0))).collect();
    ColumnarValue::Array(Arc::new(clamped))
}

/// The counts of `rows` values as 64-bit integers (`None` for nulls); a count no integer of 64
/// bits holds fails the batch.
fn counts(n: &ColumnarValue, rows: usize) -> Result<Vec<Option<i64>>> {
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    Ok(match n {
        ColumnarValue::Scalar(ScalarValue::Int64(v)) => vec![*v; rows],
        ColumnarValue::Scalar(s) => {
            let one = cast_with_options(&s.to_array_of_size(1)?, &DataType::Int64, &strict)?;
            vec![one.as_primitive::<Int64Type>().iter().next().flatten(); rows]
        }
        ColumnarValue::Array(a) => cast_with_options(a, &DataType::Int64, &strict)?
            .as_primitive::<Int64Type>()
            .iter()
            .collect(),
    })
}

/// The bytes the values of one batch would take, within [`MAX_VALUE`] each and [`MAX_BATCH`]
/// in all.
#[derive(Default)]
struct Budget(u64);

impl Budget {
    /// Adds one value of `bytes`; `what` says what asked for it when that is too much.
    fn add(&mut self, bytes: u64, what: impl FnOnce() -> String) -> Result<()> {
        if bytes > MAX_VALUE {
            return exec_err!(
                "{}; a stage function may build at most {MAX_VALUE} bytes per value",
                what()
            );
        }
        self.0 = self.0.saturating_add(bytes);
        if self.0 > MAX_BATCH {
            return exec_err!(
                "{} bytes were asked for by one batch; stage functions may build at most {MAX_BATCH} bytes per batch",
                self.0
            );
        }
        Ok(())
    }
}

/// Byte lengths of an argument's `rows` values: a string column's or a constant's (`None` for
/// nulls and other types).
fn lengths(v: &ColumnarValue, rows: usize) -> Vec<Option<u64>> {
    match v {
        ColumnarValue::Array(a) => text_lengths(a.as_ref()),
        ColumnarValue::Scalar(s) if s.is_null() => vec![None; rows],
        ColumnarValue::Scalar(s) => vec![Some(s.to_string().len() as u64); rows],
    }
}

/// Byte lengths of a column's values as text (`None` for nulls): a string column's, or, for
/// another type (a dictionary of strings, a number), its values cast to text.
fn text_lengths(a: &dyn Array) -> Vec<Option<u64>> {
    match a.data_type() {
        DataType::Utf8 => a
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(|s| s.len() as u64))
            .collect(),
        DataType::LargeUtf8 => a
            .as_string::<i64>()
            .iter()
            .map(|v| v.map(|s| s.len() as u64))
            .collect(),
        DataType::Utf8View => a
            .as_string_view()
            .iter()
            .map(|v| v.map(|s| s.len() as u64))
            .collect(),
        _ => match arrow::compute::cast(a, &DataType::Utf8) {
            Ok(text) if text.data_type() == &DataType::Utf8 => text_lengths(text.as_ref()),
            _ => vec![None; a.len()],
        },
    }
}

/// The most bytes a string or binary constant in a stage may hold: a constant output is copied
/// into every row of a batch (up to 16,384 rows).
pub const MAX_CONSTANT: usize = 64 << 10;

/// Refuses, at planning, what a stage's simplified expression would build from constants
/// alone: a string or binary constant past [`MAX_CONSTANT`] (`repeat('ab', 500000)` folds to
/// one of 1 MB, copied into every row: 8 GB a batch), and a guarded call of constants whose
/// values are past the guard's bounds (`repeat('ab', 1000000000)`, left unfolded by the
/// simplifier, would fail every batch).
pub fn check_constants(expr: &Expr) -> Result<()> {
    expr.apply(|e| {
        match e {
            Expr::Literal(v, _) => {
                let n = match v {
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::LargeUtf8(Some(s))
                    | ScalarValue::Utf8View(Some(s)) => s.len(),
                    ScalarValue::Binary(Some(b))
                    | ScalarValue::LargeBinary(Some(b))
                    | ScalarValue::BinaryView(Some(b))
                    | ScalarValue::FixedSizeBinary(_, Some(b)) => b.len(),
                    _ => 0,
                };
                if n > MAX_CONSTANT {
                    return plan_err!(
                        "a constant of {n} bytes, which every row would hold; a stage's constants may hold at most {MAX_CONSTANT} bytes"
                    );
                }
            }
            Expr::ScalarFunction(f) => {
                let constants: Option<Vec<ColumnarValue>> = f
                    .args
                    .iter()
                    .map(|a| match a {
                        Expr::Literal(v, _) => Some(ColumnarValue::Scalar(v.clone())),
                        _ => None,
                    })
                    .collect();
                if let (Some(g), Some(args)) = (f.func.inner().downcast_ref::<Guarded>(), constants)
                {
                    let text = lengths(&args[0], 1);
                    g.check(&args, &text, 1)?;
                }
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map(|_| ())
}

/// `expr` with every `lpad`, `rpad`, `repeat`, `replace`, `regexp_replace`, `levenshtein` and
/// `strpos` call guarded.
pub fn guard_sizes(expr: Expr) -> Result<Expr> {
    expr.transform_up(|e| {
        if let Some((op, args)) = super::patterns::as_call(&e) {
            let measure = match op.is_regex() {
                true => Measure::Regex {
                    flags: None,
                    fold: op.folds_case(),
                },
                false => Measure::Bytes,
            };
            let op = Arc::new(ScalarUDF::from(op));
            return Ok(Transformed::yes(guarded_by(op, Kind::Steps, args, measure)));
        }
        let Expr::ScalarFunction(f) = &e else {
            return Ok(Transformed::no(e));
        };
        let kind = match (f.func.name(), f.args.len()) {
            ("repeat", 2..) => Kind::Repeat,
            ("lpad" | "rpad", 2..) => Kind::Pad,
            ("replace" | "regexp_replace", 3..) => Kind::Replace,
            // A constant substring is searched for in linear time (memchr's `memmem`), and a
            // constant pattern (with constant flags) compiled once; one from the data, in
            // `len × states` steps.
            ("strpos", 2..) if matches!(f.args[1], Expr::Literal(..)) => {
                return Ok(Transformed::no(e))
            }
            ("regexp_like" | "regexp_match" | "regexp_count" | "regexp_instr", 2..)
                if !pattern_from_data(f.func.name(), &f.args) =>
            {
                return Ok(Transformed::no(e))
            }
            // Each 2-byte specifier of a format may write up to 32 bytes (`%+`): a format
            // from the data makes values 16 times its size, past the bounds the guard could
            // check before it builds. Refused; a constant format's values are short.
            ("to_char" | "date_format", 2..) if !f.args[1].column_refs().is_empty() => {
                return plan_err!(
                    "to_char's format must not be taken from the data (`{}`): a format may write 16 times its size; give it as text",
                    f.args[1]
                );
            }
            ("levenshtein" | "strpos" | "btrim" | "ltrim" | "rtrim", 2..) => Kind::Steps,
            ("regexp_like" | "regexp_match" | "regexp_count" | "regexp_instr", 2..) => Kind::Steps,
            _ => return Ok(Transformed::no(e)),
        };
        Ok(Transformed::yes(guarded(
            f.func.clone(),
            kind,
            f.args.clone(),
        )))
    })
    .map(|t| t.data)
}

/// A guarded call of `inner` on `args`. `regexp_replace` with a pattern (or flags) from the
/// data counts its steps too: its pattern is compiled per row and matched in `len × states`
/// steps. A `regexp_*` function's steps are counted by its pattern's states.
fn guarded(inner: Arc<ScalarUDF>, kind: Kind, args: Vec<Expr>) -> Expr {
    let measure = match flags_at(inner.name()) {
        Some(f) => Measure::Regex {
            flags: Some(f),
            fold: false,
        },
        None => Measure::Bytes,
    };
    guarded_by(inner, kind, args, measure)
}

/// A guarded call of `inner` on `args`, its second argument weighed by `measure`.
fn guarded_by(inner: Arc<ScalarUDF>, kind: Kind, args: Vec<Expr>, measure: Measure) -> Expr {
    let from_data = pattern_from_data(inner.name(), &args);
    let steps = kind == Kind::Steps || (inner.name() == "regexp_replace" && from_data);
    let guarded = Guarded {
        name: format!("sluice_guarded_{}", inner.name()),
        inner,
        kind,
        steps,
        measure,
        signature: Signature::variadic_any(Volatility::Immutable),
    };
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::from(guarded)),
        args,
    ))
}

#[cfg(test)]
#[path = "guard_tests.rs"]
pub(super) mod tests;
