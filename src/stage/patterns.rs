//! Pattern operators whose pattern comes from the data, made calls the work guard can hold:
//! `a ~ b` (and `~*`, `!~`, `!~*`), `a LIKE b` (and `ILIKE`, `NOT LIKE`, `NOT ILIKE`, and
//! their `~~` spellings) and `a SIMILAR TO b` compile `b` for each row and match it in up to `len(a) × len(b)` steps,
//! so one record of two long texts held a decoding thread, and every partition behind it,
//! for minutes. Each becomes a call of [`PatternOp`], which evaluates the very operator
//! DataFusion would (its physical expression, on the two evaluated arguments), so it is
//! guarded like `regexp_like` (see `guard`). A constant pattern is compiled once and
//! matched in linear time: it is left as it is.
//!
//! A regular expression's work is its text's length times the states it compiles to, which
//! its length does not bound (`(?:a{1000}){100}` is 16 bytes and 100,000 states): its
//! states are counted ([`regex_states`]).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Schema};
use arrow::record_batch::RecordBatch;
use datafusion_common::Result;
use datafusion_expr::expr::{BinaryExpr, Like};
use datafusion_expr::{
    ColumnarValue, Expr, Operator, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion_physical_expr::expressions::{binary, col, like};

/// Which operator a [`PatternOp`] evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    /// `LIKE` and its forms.
    Like {
        negated: bool,
        case_insensitive: bool,
    },
    /// `~`, `~*`, `!~`, `!~*` (and `SIMILAR TO`, which DataFusion runs as these), and `~~`,
    /// `~~*`, `!~~`, `!~~*` (`LIKE` as operators).
    Binary(Operator),
}

/// A pattern operator as a function of its two arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct PatternOp {
    op: Op,
    name: &'static str,
    signature: Signature,
}

/// The operator `e` as a [`PatternOp`] and its two arguments, when it is a pattern operator
/// whose pattern is not a constant (and has no escape character other than the backslash,
/// which DataFusion refuses anyway).
pub(super) fn as_call(e: &Expr) -> Option<(PatternOp, Vec<Expr>)> {
    let constant = |p: &Expr| matches!(p, Expr::Literal(..));
    let (op, name, left, right) = match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if !constant(right) => {
            let name = match op {
                Operator::RegexMatch => "~",
                Operator::RegexIMatch => "~*",
                Operator::RegexNotMatch => "!~",
                Operator::RegexNotIMatch => "!~*",
                Operator::LikeMatch => "~~",
                Operator::ILikeMatch => "~~*",
                Operator::NotLikeMatch => "!~~",
                Operator::NotILikeMatch => "!~~*",
                _ => return None,
            };
            (Op::Binary(*op), name, left, right)
        }
        Expr::Like(Like {
            negated,
            expr,
            pattern,
            escape_char,
            case_insensitive,
        }) if !constant(pattern) && escape_char.unwrap_or('\\') == '\\' => {
            let name = match (negated, case_insensitive) {
                (false, false) => "like",
                (false, true) => "ilike",
                (true, false) => "not like",
                (true, true) => "not ilike",
            };
            let op = Op::Like {
                negated: *negated,
                case_insensitive: *case_insensitive,
            };
            (op, name, expr, pattern)
        }
        Expr::SimilarTo(Like {
            negated,
            expr,
            pattern,
            escape_char: None,
            case_insensitive,
        }) if !constant(pattern) => {
            let (op, name) = match (negated, case_insensitive) {
                (false, false) => (Operator::RegexMatch, "similar to"),
                (false, true) => (Operator::RegexIMatch, "similar to"),
                (true, false) => (Operator::RegexNotMatch, "not similar to"),
                (true, true) => (Operator::RegexNotIMatch, "not similar to"),
            };
            (Op::Binary(op), name, expr, pattern)
        }
        _ => return None,
    };
    let call = PatternOp {
        op,
        name,
        signature: Signature::any(2, Volatility::Immutable),
    };
    Some((call, vec![left.as_ref().clone(), right.as_ref().clone()]))
}

impl ScalarUDFImpl for PatternOp {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    /// Null where either argument may be, as the operator's own result.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(self.name, DataType::Boolean, nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let a = args.args[0].to_array(rows)?;
        let b = args.args[1].to_array(rows)?;
        let schema = Schema::new(vec![
            Field::new("a", a.data_type().clone(), true),
            Field::new("b", b.data_type().clone(), true),
        ]);
        let (left, right) = (col("a", &schema)?, col("b", &schema)?);
        let expr = match self.op {
            Op::Like {
                negated,
                case_insensitive,
            } => like(negated, case_insensitive, left, right, &schema)?,
            Op::Binary(op) => binary(left, op, right, &schema)?,
        };
        let batch = RecordBatch::try_new(Arc::new(schema), vec![a, b])?;
        expr.evaluate(&batch)
    }
}

impl PatternOp {
    /// The operator matches a regular expression (its work is counted by the states its
    /// pattern compiles to), not a `LIKE` pattern (by its length: it has no repetition).
    pub(super) fn is_regex(&self) -> bool {
        matches!(
            self.op,
            Op::Binary(
                Operator::RegexMatch
                    | Operator::RegexIMatch
                    | Operator::RegexNotMatch
                    | Operator::RegexNotIMatch
            )
        )
    }

    /// The regular expression matches regardless of case (`~*`, `!~*`, and `SIMILAR TO`'s
    /// case-insensitive forms): DataFusion compiles it with the flag `i`, whose case folding
    /// can make an NFA several times larger.
    pub(super) fn folds_case(&self) -> bool {
        matches!(
            self.op,
            Op::Binary(Operator::RegexIMatch | Operator::RegexNotIMatch)
        )
    }
}

/// The most the distinct patterns of one call may compile to, in bytes of their Thompson
/// NFAs (a regular expression as DataFusion compiles it takes about 3.5 times that, with its
/// reverse NFA and its lazy DFA's caches). DataFusion compiles every distinct pattern of a
/// batch and keeps them until the batch is done: 300 patterns of `\w{120}` and a digit took
/// 2 GiB. A call past it fails, and its rows are tried in smaller groups (see `stage`): one
/// pattern within the regex crate's own limit (10 MiB) always fits.
pub const MAX_CALL_PATTERNS: u64 = 16 << 20;

/// The states each row's pattern compiles to with its flags, and the flag `i` when `fold`
/// (`None` for a null pattern; its
/// length when it does not compile: the function fails on it), each distinct pattern
/// compiled once per call; the call fails when its distinct patterns compile to more than
/// [`MAX_CALL_PATTERNS`].
pub(super) fn regex_weights(
    pattern: &ColumnarValue,
    flags: Option<&ColumnarValue>,
    fold: bool,
    rows: usize,
) -> Result<Vec<Option<u64>>> {
    use arrow::array::{Array, AsArray};
    let text = |v: &ColumnarValue| -> Result<arrow::array::ArrayRef> {
        Ok(arrow::compute::cast(&v.to_array(rows)?, &DataType::Utf8)?)
    };
    let patterns = text(pattern)?;
    let flags = flags.map(text).transpose()?;
    let (patterns, flags) = (
        patterns.as_string::<i32>(),
        flags.as_ref().map(|f| f.as_string::<i32>()),
    );
    let mut seen: std::collections::HashMap<(&str, Option<&str>), u64> = Default::default();
    let mut compiled = 0u64;
    let mut weights = Vec::with_capacity(rows);
    for i in 0..rows {
        let Some(p) = patterns.is_valid(i).then(|| patterns.value(i)) else {
            weights.push(None);
            continue;
        };
        let f = flags.and_then(|f| f.is_valid(i).then(|| f.value(i)));
        let states = match seen.get(&(p, f)) {
            Some(&states) => states,
            None => {
                // One that does not compile to an NFA may still compile for DataFusion
                // (a long list of words, as Aho-Corasick only): it takes the whole budget.
                let (states, bytes) =
                    regex_cost(p, f, fold).unwrap_or((p.len() as u64, MAX_CALL_PATTERNS));
                compiled = compiled.saturating_add(bytes);
                if compiled > MAX_CALL_PATTERNS {
                    return datafusion_common::exec_err!(
                        "the {} distinct patterns of this batch so far compile to {compiled} bytes; patterns from the data may compile to at most {MAX_CALL_PATTERNS} per batch",
                        seen.len() + 1
                    );
                }
                seen.insert((p, f), states);
                states
            }
        };
        weights.push(Some(states));
    }
    Ok(weights)
}

/// The states of `pattern` compiled (with `flags` as DataFusion adds them, `(?flags)`, less
/// `regexp_replace`'s `g`, which it takes out first), as a Thompson NFA, which the matching
/// engines' worst case walks once per byte of text; `None` when it does not compile (the
/// function then fails on it too), or passes the regex crate's own limit (10 MiB).
#[cfg(test)]
pub(super) fn regex_states(pattern: &str, flags: Option<&str>) -> Option<u64> {
    regex_cost(pattern, flags, false).map(|(states, _)| states)
}

/// [`regex_states`] (with the flag `i` too when `fold`) and the bytes the NFA takes.
fn regex_cost(pattern: &str, flags: Option<&str>, fold: bool) -> Option<(u64, u64)> {
    use regex_automata::nfa::thompson::{Config, NFA};
    let mut flags: String = flags.unwrap_or("").chars().filter(|c| *c != 'g').collect();
    if fold {
        flags.push('i');
    }
    let whole;
    let pattern = match flags.is_empty() {
        false => {
            whole = format!("(?{flags}){pattern}");
            whole.as_str()
        }
        true => pattern,
    };
    let nfa = NFA::compiler()
        .configure(Config::new().nfa_size_limit(Some(10 << 20)))
        .build(pattern)
        .ok()?;
    Some((nfa.states().len() as u64, nfa.memory_usage() as u64))
}

#[cfg(test)]
#[path = "patterns_tests.rs"]
mod tests;
