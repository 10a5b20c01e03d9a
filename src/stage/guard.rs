//! A size guard on the stage functions that build values whose size a record decides:
//! `lpad(s, n)`, `rpad(s, n)` and `repeat(s, n)` with `n` from the data. DataFusion sizes their
//! output buffer for the whole batch before it checks any one value, so a few records asking
//! for billions of characters make one allocation of terabytes, which aborts the process.
//!
//! At planning, each such call gets its `n` wrapped in `sluice_size_guard(n[, s])`, which
//! passes `n` through when the values it would build stay within [`MAX_VALUE`] bytes each and
//! [`MAX_BATCH`] bytes per evaluation, and fails the batch otherwise. A failing batch is halved
//! like any other stage failure, so only the records asking for too much become dead letters.
//! A constant `n` is checked as well: `repeat(s, 200)` takes its size from the data's `s`, and
//! a constant pad adds up over a batch.
//!
//! `replace(s, from, to)` and `regexp_replace(s, pattern, to[, flags])` build values of up to
//! about `len(s) × len(to)` bytes (an empty match between every character, or `$0` group
//! references in `to`), a product of two values from the data. Their `to` is wrapped in
//! `sluice_replace_guard(to, s)`, which passes `to` through when `(2 × len(s) + 1) × len(to) +
//! len(s)` stays within the same bounds.
//!
//! Those bounds are worst cases, checked before building, per evaluation. What the calls
//! really built is counted too: each guarded call is wrapped in `sluice_growth(call, s)`, which
//! adds what its values grew beyond their text `s` to the chunk's account ([`spent`]), kept per
//! thread (a chunk is decoded on one thread) across the chunk's batches and stages, and fails
//! the batch once the chunk's growth passes [`MAX_GROWTH`]. An evaluation that fails gives back
//! what it counted ([`set_spent`]). Without the account, a batch over the bound was halved,
//! each half passed, and the halves were put together again: a 1 MiB chunk could grow to
//! 16 GiB (1,000 records asking for 16 MiB each), past memory and past what one Arrow string
//! column holds. Counting growth rather than the worst case keeps `regexp_replace` redacting
//! a large text from counting 20 times its size.

use std::cell::Cell;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{exec_err, Result, ScalarValue};
use datafusion_expr::expr::{Cast, ScalarFunction};
use datafusion_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

/// The most bytes one value of a guarded function may be asked to hold.
pub const MAX_VALUE: u64 = 16 << 20;
/// The most bytes the values of one batch may be asked to hold, per evaluation.
pub const MAX_BATCH: u64 = 256 << 20;
/// The most bytes guarded calls may grow one chunk's values by, in all its batches and stages.
pub const MAX_GROWTH: u64 = 256 << 20;

thread_local! {
    /// Bytes guarded calls grew values by, for the chunk this thread decodes.
    static SPENT: Cell<u64> = const { Cell::new(0) };
}

/// Bytes guarded calls grew values by, for the chunk this thread decodes.
pub fn spent() -> u64 {
    SPENT.get()
}

/// Sets this thread's account: to 0 when a chunk starts, back to an earlier value when an
/// evaluation that counted is thrown away (it failed, and its rows are tried again).
pub fn set_spent(bytes: u64) {
    SPENT.set(bytes);
}

/// Counts what a guarded call built beyond its text: `sluice_growth(call, s)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Growth {
    signature: Signature,
}

impl ScalarUDFImpl for Growth {
    fn name(&self) -> &str {
        "sluice_growth"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(types[0].clone())
    }

    /// The call's own field: its type and whether it can be null are unchanged.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(args.arg_fields[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let (built, text) = (lengths(&args.args[0], rows), lengths(&args.args[1], rows));
        let grown = built
            .iter()
            .zip(&text)
            .map(|(b, t)| b.unwrap_or(0).saturating_sub(t.unwrap_or(0)))
            .fold(0u64, u64::saturating_add);
        set_spent(room(grown)?);
        Ok(args.args[0].clone())
    }
}

/// The chunk's growth with `grown` bytes more, or the error when that is past [`MAX_GROWTH`].
fn room(grown: u64) -> Result<u64> {
    let total = spent().saturating_add(grown);
    if total > MAX_GROWTH {
        return exec_err!(
            "stage functions grew this record's chunk by {total} bytes; they may grow a chunk by at most {MAX_GROWTH} bytes"
        );
    }
    Ok(total)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SizeGuard {
    signature: Signature,
}

impl ScalarUDFImpl for SizeGuard {
    fn name(&self) -> &str {
        "sluice_size_guard"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = &args.args[0];
        let rows = args.number_rows;
        // A constant count is checked too: `repeat(s, 200)` takes its size from `s`, and the
        // pads' constant counts add up over a batch.
        let counts: Vec<Option<i64>> = match n {
            ColumnarValue::Array(a) => a.as_primitive::<Int64Type>().iter().collect(),
            ColumnarValue::Scalar(ScalarValue::Int64(v)) => vec![*v; rows],
            ColumnarValue::Scalar(_) => vec![None; rows],
        };
        // repeat: each value is its string's length times n; the pads: n characters, each up
        // to 4 bytes.
        let lengths = args.args.get(1).map(|s| lengths(s, counts.len()));
        let mut budget = Budget::default();
        // What `repeat` will grow its texts by, exactly: past the chunk's room, the batch
        // fails before it builds (the pads' growth is counted once they are built).
        let mut growth = 0u64;
        for (i, n) in counts.iter().enumerate() {
            let Some(n) = n else {
                continue;
            };
            let n = (*n).max(0) as u64;
            let bytes = match &lengths {
                None => n.saturating_mul(4),
                Some(l) => n.saturating_mul(l[i].unwrap_or(0)),
            };
            budget.add(bytes, || {
                format!("a value of {bytes} bytes was asked for (count {n})")
            })?;
            if let Some(l) = &lengths {
                growth = growth.saturating_add(bytes.saturating_sub(l[i].unwrap_or(0)));
            }
        }
        room(growth)?;
        Ok(n.clone())
    }
}

/// Guards the replacement of `replace` and `regexp_replace`: `sluice_replace_guard(to, s)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ReplaceGuard {
    signature: Signature,
}

impl ScalarUDFImpl for ReplaceGuard {
    fn name(&self) -> &str {
        "sluice_replace_guard"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let (to, text) = (lengths(&args.args[0], rows), lengths(&args.args[1], rows));
        let mut budget = Budget::default();
        for (t, s) in to.iter().zip(&text) {
            let (Some(t), Some(s)) = (t, s) else {
                continue;
            };
            let bytes = s
                .saturating_mul(2)
                .saturating_add(1)
                .saturating_mul(*t)
                .saturating_add(*s);
            budget.add(bytes, || {
                format!("a replacement could build {bytes} bytes (a text of {s} bytes, a replacement of {t})")
            })?;
        }
        Ok(args.args[0].clone())
    }
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

/// `expr` with the count of every `lpad`, `rpad` and `repeat` call and the replacement of
/// every `replace` and `regexp_replace` call guarded, and each such call's growth counted.
pub fn guard_sizes(expr: Expr) -> Result<Expr> {
    let guard = Arc::new(ScalarUDF::from(SizeGuard {
        signature: Signature::one_of(
            vec![TypeSignature::Any(1), TypeSignature::Any(2)],
            Volatility::Immutable,
        ),
    }));
    let replace_guard = Arc::new(ScalarUDF::from(ReplaceGuard {
        signature: Signature::any(2, Volatility::Immutable),
    }));
    let growth = Arc::new(ScalarUDF::from(Growth {
        signature: Signature::any(2, Volatility::Immutable),
    }));
    // The call with `args`, its growth beyond its text (the first argument) counted.
    let counted = |f: &ScalarFunction, args: Vec<Expr>| {
        let text = f.args[0].clone();
        let call = Expr::ScalarFunction(ScalarFunction::new_udf(f.func.clone(), args));
        Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
            growth.clone(),
            vec![call, text],
        )))
    };
    expr.transform_up(|e| {
        let Expr::ScalarFunction(f) = &e else {
            return Ok(Transformed::no(e));
        };
        let name = f.func.name();
        if matches!(name, "replace" | "regexp_replace") && f.args.len() >= 3 {
            let mut args = f.args.clone();
            args[2] = Expr::ScalarFunction(ScalarFunction::new_udf(
                replace_guard.clone(),
                vec![f.args[2].clone(), f.args[0].clone()],
            ));
            return Ok(counted(f, args));
        }
        if !matches!(name, "lpad" | "rpad" | "repeat") || f.args.len() < 2 {
            return Ok(Transformed::no(e));
        }
        let count = Expr::Cast(Cast::new(Box::new(f.args[1].clone()), DataType::Int64));
        let guard_args = if name == "repeat" {
            vec![count, f.args[0].clone()]
        } else {
            vec![count]
        };
        let mut args = f.args.clone();
        args[1] = Expr::ScalarFunction(ScalarFunction::new_udf(guard.clone(), guard_args));
        Ok(counted(f, args))
    })
    .map(|t| t.data)
}
