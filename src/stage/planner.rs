//! What a stage's SQL is planned against: one table, `input` (the previous stage's schema), and
//! DataFusion's scalar functions (string, regex, unicode, date/time, math, encoding, crypto and
//! the core ones such as `coalesce`, `get_field` or `arrow_cast`).
//!
//! The SQL is parsed and planned with `datafusion-sql` and lowered to physical expressions with
//! `datafusion-physical-expr` directly, without DataFusion's query engine (sessions, catalogs,
//! physical plans, data sources): a stage only ever evaluates expressions on one batch, and the
//! engine was most of the time a cold build of sluice took. Aggregate and window functions are
//! not registered (a stage never aggregates); calling one is refused by name. Array functions
//! are not registered either: several build values whose size the data decides
//! (`array_repeat`, `range`, `array_resize`) and are not size-guarded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{plan_err, DFSchema, DataFusionError, Result, TableReference};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::simplify::SimplifyContext;
use datafusion_expr::{
    AggregateUDF, Expr, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF,
};
use datafusion_optimizer::simplify_expressions::ExprSimplifier;
use datafusion_physical_expr::PhysicalExpr;
use datafusion_sql::parser::DFParserBuilder;
use datafusion_sql::planner::{ParserOptions, SqlToRel};
use datafusion_sql::sqlparser::dialect::GenericDialect;

/// Plans stage SQL over a table `input`.
pub struct Planner {
    options: Arc<ConfigOptions>,
    functions: HashMap<String, Arc<ScalarUDF>>,
    expr_planners: Vec<Arc<dyn ExprPlanner>>,
    /// When the stages were planned: what `now()` and friends evaluate to.
    started: chrono::DateTime<chrono::Utc>,
}

impl Planner {
    pub fn new() -> Planner {
        let mut options = ConfigOptions::new();
        // VARCHAR is Utf8, as in the rest of sluice (not DataFusion's Utf8View).
        options.sql_parser.map_string_types_to_utf8view = false;
        let functions = datafusion_functions::all_default_functions()
            .into_iter()
            .flat_map(|f| {
                let names: Vec<String> = std::iter::once(f.name().to_string())
                    .chain(f.aliases().iter().cloned())
                    .collect();
                names.into_iter().map(move |n| (n, f.clone()))
            })
            .collect();
        let expr_planners: Vec<Arc<dyn ExprPlanner>> = vec![
            Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
            Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
            Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
        ];
        Planner {
            options: Arc::new(options),
            functions,
            expr_planners,
            started: chrono::Utc::now(),
        }
    }

    /// The logical plan of one SQL statement over `input` with the given schema.
    pub fn plan(&self, sql: &str, input: SchemaRef) -> Result<LogicalPlan> {
        let dialect = GenericDialect {};
        let mut statements = DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .with_recursion_limit(self.options.sql_parser.recursion_limit.get())
            .build()?
            .parse_statements()?;
        let statement = match (statements.pop_front(), statements.is_empty()) {
            (Some(s), true) => s,
            (None, _) => return plan_err!("the stage holds no SQL statement"),
            (Some(_), false) => return plan_err!("a stage is one SQL statement"),
        };
        let context = Context {
            planner: self,
            input: Arc::new(LogicalTableSource::new(input)),
            refused: Mutex::new(None),
        };
        let parser = ParserOptions::from(&self.options.sql_parser);
        let planned = SqlToRel::new_with_options(&context, parser).statement_to_plan(statement);
        match (planned, context.refused.into_inner().ok().flatten()) {
            (Err(_), Some(name)) => plan_err!(
                "`{name}` is an aggregate or window function, which is not allowed in a stage (a stage transforms each row of one batch)"
            ),
            (planned, _) => planned,
        }
    }

    /// A logical expression as a physical one: types coerced and the expression simplified, as
    /// the optimizer would (some functions, e.g. `coalesce`, only exist in simplified form).
    /// `rewrite` runs between coercion and simplification (what it plants is folded with the
    /// rest), `check` on the simplified expression.
    pub fn physical(
        &self,
        expr: Expr,
        schema: &Arc<DFSchema>,
        rewrite: impl FnOnce(Expr) -> Result<Expr>,
        check: impl FnOnce(&Expr) -> Result<()>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let context = SimplifyContext::builder()
            .with_schema(schema.clone())
            .with_config_options(self.options.clone())
            .with_query_execution_start_time(Some(self.started))
            .build();
        let simplifier = ExprSimplifier::new(context);
        let expr = simplifier.coerce(expr, schema)?;
        let expr = rewrite(expr)?;
        let expr = simplifier.simplify(expr)?;
        check(&expr)?;
        let mut props = ExecutionProps::new();
        props.query_execution_start_time = Some(self.started);
        props.config_options = Some(self.options.clone());
        datafusion_physical_expr::create_physical_expr(
            &expr,
            schema,
            &props,
            &PhysicalPlanningContext::default(),
        )
    }
}

/// What the SQL planner may look up while planning one statement.
struct Context<'a> {
    planner: &'a Planner,
    input: Arc<dyn TableSource>,
    /// The first aggregate or window function the statement asked for.
    refused: Mutex<Option<String>>,
}

impl Context<'_> {
    fn refuse(&self, name: &str) {
        if let Ok(mut r) = self.refused.lock() {
            r.get_or_insert_with(|| name.to_string());
        }
    }
}

/// Window functions SQL users know: asked for by name, they are refused with a reason instead
/// of "unknown function" (aggregates are looked up in `datafusion-functions-aggregate`).
const WINDOW_FUNCTIONS: &[&str] = &[
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
];

/// True when `name` is one of DataFusion's aggregate functions (or an alias of one).
fn is_aggregate(name: &str) -> bool {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| {
            datafusion_functions_aggregate::all_default_aggregate_functions()
                .iter()
                .flat_map(|f| std::iter::once(f.name().to_string()).chain(f.aliases().to_vec()))
                .collect()
        })
        .iter()
        .any(|n| n == name)
}

impl ContextProvider for Context<'_> {
    fn get_table_source(&self, name: TableReference) -> Result<Arc<dyn TableSource>> {
        // `input`, as DataFusion's default catalog and schema would resolve it.
        let input = match &name {
            TableReference::Bare { table } => table.as_ref() == "input",
            TableReference::Partial { schema, table } => {
                schema.as_ref() == "public" && table.as_ref() == "input"
            }
            TableReference::Full {
                catalog,
                schema,
                table,
            } => {
                catalog.as_ref() == "datafusion"
                    && schema.as_ref() == "public"
                    && table.as_ref() == "input"
            }
        };
        match input {
            true => Ok(self.input.clone()),
            false => plan_err!("table `{name}`: a stage reads only `input` (the batch)"),
        }
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.planner.expr_planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.planner.functions.get(name).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        if is_aggregate(name) || WINDOW_FUNCTIONS.contains(&name) {
            self.refuse(name);
        }
        None
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        if is_aggregate(name) || WINDOW_FUNCTIONS.contains(&name) {
            self.refuse(name);
        }
        None
    }

    fn get_variable_type(&self, _names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.planner.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.planner.functions.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// DataFusion's error text, trimmed, without its advice to change a setting of its own,
/// which a stage cannot reach.
pub fn clean(e: DataFusionError) -> String {
    plain(&e.to_string())
}

/// DataFusion's planning message in the stage's words: the table name it qualifies columns
/// with (`input.status`) and its error kinds' wrappers (`Schema error: `, `SQL error:
/// ParserError("…")`) taken out; a hint where a name with capitals was read in lower case.
fn plain(message: &str) -> String {
    message
        .lines()
        .map(|l| {
            let l = match l.find("Column names are case sensitive.") {
                Some(at) => format!(
                    "{}Stage SQL reads a name in lower case unless it is double-quoted: quote a name with capitals (\"UserId\").",
                    &l[..at]
                ),
                None => l.to_string(),
            };
            let l = match l
                .strip_prefix("SQL error: ParserError(\"")
                .and_then(|r| r.strip_suffix("\")"))
            {
                Some(inner) => format!("the SQL does not parse: {inner}"),
                None => l,
            };
            let l = l.strip_prefix("Schema error: ").map_or(l.clone(), str::to_string);
            l.replace("'input.", "'")
                .replace(" input.", " ")
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    /// DataFusion's wrappers and its table's qualifier are not the user's words.
    #[test]
    fn planning_messages_are_said_in_the_stages_words() {
        assert_eq!(
            super::plain("Schema error: No field named statuz. Did you mean 'input.status'?\nValid fields are input.ts, input.status."),
            "No field named statuz. Did you mean 'status'?\nValid fields are ts, status."
        );
        assert_eq!(
            super::plain("SQL error: ParserError(\"Expected: an expression, found: EOF\")"),
            "the SQL does not parse: Expected: an expression, found: EOF"
        );
    }
}
