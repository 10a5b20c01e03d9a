//! `sluice schema infer`: a repo schema from a sample of JSON lines (plain or gzip) or CSV with
//! a header. Types are widened across the sample (int → float, mixed → string, objects or
//! arrays mixed with anything else → `json`); a field missing from a row or null in one is
//! nullable; strings that all read as RFC 3339 (or `%Y-%m-%d %H:%M:%S`) are timestamps, those
//! that all read as `%Y-%m-%d` are dates (top-level fields; inside lists, strings), and
//! integers in a plausible range under a time-like name are epoch timestamps. Each field gets a
//! comment with an example value and how many rows had it. Nesting deeper than
//! [`MAX_DEPTH`] is `json`, so the input cannot decide how deep the work goes.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::ordered::Json;

/// Objects and arrays nested deeper than this are typed `json`.
pub const MAX_DEPTH: usize = 8;

/// Objects with more distinct keys than this are typed `json` (a map, not a record).
const MAX_KEYS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    Rfc3339,
    DateTime,
    Date,
    Plain,
}

#[derive(Debug, Clone)]
enum Kind {
    Unknown,
    Bool,
    Int { min: i64, max: i64 },
    Float,
    Str(Text),
    Object(Box<Fields>),
    Array(Box<Stat>),
    Json,
}

#[derive(Debug, Clone)]
struct Stat {
    /// Rows (or array elements) that had the key, null or not.
    present: u64,
    nulls: u64,
    kind: Kind,
    example: Option<String>,
}

impl Stat {
    fn new() -> Self {
        Stat {
            present: 0,
            nulls: 0,
            kind: Kind::Unknown,
            example: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Fields {
    order: Vec<String>,
    map: HashMap<String, Stat>,
    /// Objects seen at this place.
    seen: u64,
}

/// The running inference over a sample.
#[derive(Debug, Default)]
pub struct Inference {
    rows: u64,
    skipped: u64,
    root: Fields,
}

fn text_kind(s: &str) -> Text {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        Text::Rfc3339
    } else if chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok() {
        Text::DateTime
    } else if s.len() == 10
        && s.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .is_ok_and(|d| (1..=9999).contains(&chrono::Datelike::year(&d)))
    {
        // Years 1 to 9999, as a decoder takes dates (`0000-01-01` and `+999-01-01` parse).
        Text::Date
    } else {
        Text::Plain
    }
}

/// `a` widened to hold `b` too.
fn widen(a: Kind, b: Kind) -> Kind {
    use Kind::*;
    match (a, b) {
        (Unknown, k) | (k, Unknown) => k,
        (Json, _) | (_, Json) => Json,
        (Bool, Bool) => Bool,
        (Int { min, max }, Int { min: m2, max: x2 }) => Int {
            min: min.min(m2),
            max: max.max(x2),
        },
        (Int { .. } | Float, Int { .. } | Float) => Float,
        (Str(x), Str(y)) => Str(if x == y { x } else { Text::Plain }),
        (Object(f), Object(_)) => Object(f),
        (Array(s), Array(_)) => Array(s),
        (Object(_) | Array(_), _) | (_, Object(_) | Array(_)) => Json,
        // Numbers, bools and strings together: the column is text.
        _ => Str(Text::Plain),
    }
}

fn example_of(v: &Json) -> String {
    let mut s = serde_json::to_string(v).expect("a JSON value serializes");
    if s.len() > 40 {
        let end = crate::decode::cut(&s, 40).len();
        s.truncate(end);
        s.push('…');
    }
    s
}

/// One step from a place to a place inside it.
enum Step {
    Key(String),
    Item,
}

fn clone_step(s: &Step) -> Step {
    match s {
        Step::Key(k) => Step::Key(k.clone()),
        Step::Item => Step::Item,
    }
}

/// True when `path` still leads somewhere (a parent may have been widened to `json`).
fn leads(root: &Stat, path: &[Step]) -> bool {
    let mut stat = root;
    for step in path {
        stat = match (step, &stat.kind) {
            (Step::Key(k), Kind::Object(f)) => match f.map.get(k) {
                Some(s) => s,
                None => return false,
            },
            (Step::Item, Kind::Array(s)) => s,
            _ => return false,
        };
    }
    true
}

fn place<'a>(root: &'a mut Stat, path: &[Step]) -> &'a mut Stat {
    let mut stat = root;
    for step in path {
        stat = match (step, &mut stat.kind) {
            (Step::Key(k), Kind::Object(f)) => f.map.get_mut(k).expect("checked by leads"),
            (Step::Item, Kind::Array(s)) => s,
            _ => unreachable!("checked by leads"),
        };
    }
    stat
}

/// Observes one JSON value at `root`. Nesting is walked with a work list of places.
fn observe(root: &mut Stat, value: &Json) {
    // Each entry: the path of keys and array markers from `root` to the place, and the value.
    let mut work: Vec<(Vec<Step>, &Json)> = vec![(Vec::new(), value)];
    while let Some((path, v)) = work.pop() {
        if !leads(root, &path) {
            continue; // a parent was widened to json meanwhile: nothing below it to fill
        }
        let stat = place(root, &path);
        stat.present += 1;
        if stat.example.is_none() && !matches!(v, Json::Null) {
            stat.example = Some(example_of(v));
        }
        let depth = path.len();
        let kind = match v {
            Json::Null => {
                stat.nulls += 1;
                continue;
            }
            Json::Bool(_) => Kind::Bool,
            Json::Number(n) => match n.as_i64() {
                Some(i) => Kind::Int { min: i, max: i },
                None => Kind::Float,
            },
            Json::Str(s) => Kind::Str(text_kind(s)),
            Json::Array(_) if depth >= MAX_DEPTH => Kind::Json,
            Json::Object(o) if depth >= MAX_DEPTH || o.len() > MAX_KEYS => Kind::Json,
            Json::Array(_) => Kind::Array(Box::new(Stat::new())),
            Json::Object(_) => Kind::Object(Box::default()),
        };
        stat.kind = widen(std::mem::replace(&mut stat.kind, Kind::Unknown), kind);
        match (v, &mut stat.kind) {
            (Json::Object(o), Kind::Object(f)) => {
                f.seen += 1;
                if f.order.len() + o.len() > MAX_KEYS * 2 {
                    stat.kind = Kind::Json;
                    continue;
                }
                for (k, child) in o {
                    if !f.map.contains_key(k) {
                        f.order.push(k.clone());
                        f.map.insert(k.clone(), Stat::new());
                    }
                    let mut p: Vec<Step> = path.iter().map(clone_step).collect();
                    p.push(Step::Key(k.clone()));
                    work.push((p, child));
                }
            }
            (Json::Array(items), Kind::Array(_)) => {
                for child in items {
                    let mut p: Vec<Step> = path.iter().map(clone_step).collect();
                    p.push(Step::Item);
                    work.push((p, child));
                }
            }
            _ => {}
        }
    }
}

impl Inference {
    /// One JSON line (a line that is not a JSON object is counted as skipped).
    pub fn json_line(&mut self, line: &[u8]) {
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        match Json::parse(line) {
            Ok(v @ Json::Object(_)) => self.object(&v),
            _ => self.skipped += 1,
        }
    }

    /// One row, a JSON object.
    fn object(&mut self, v: &Json) {
        let mut root = Stat {
            present: 0,
            nulls: 0,
            kind: Kind::Object(Box::new(std::mem::take(&mut self.root))),
            example: None,
        };
        observe(&mut root, v);
        if let Kind::Object(f) = root.kind {
            self.root = *f;
        }
        self.rows += 1;
    }

    /// One CSV record under `header`: empty values are null, the rest typed by their text.
    pub fn csv_record(&mut self, header: &[String], values: &[String]) {
        let mut row = Vec::with_capacity(header.len());
        for (k, v) in header.iter().zip(values) {
            let value = if v.is_empty() {
                Json::Null
            } else if let Ok(i) = v.parse::<i64>() {
                Json::Number(i.into())
            } else if let Some(f) = v
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
            {
                Json::Number(f)
            } else if v == "true" || v == "false" {
                Json::Bool(v == "true")
            } else {
                Json::Str(v.clone())
            };
            row.push((k.clone(), value));
        }
        // Through the JSON text, so a header naming a column twice counts once, as a JSON
        // object's repeated key does.
        self.json_line(
            serde_json::to_string(&Json::Object(row))
                .expect("serializes")
                .as_bytes(),
        );
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The repo schema as TOML, with a comment per field.
    pub fn to_toml(&self, name: &str, input: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Inferred by `sluice schema infer` from {input}: {} rows{}.\n# Check the types, \
             nullability and timestamp formats before relying on it.",
            self.rows,
            if self.skipped > 0 {
                format!(
                    " ({} lines that are not JSON objects skipped)",
                    self.skipped
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(out, "name = {}", quote(name));
        write_fields(&mut out, &self.root, self.rows, "fields", true);
        out
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Whether an object has a key a field may be named by (not empty, not reserved): else it
/// is `json`, as a struct of no fields is refused.
fn writable(f: &Fields) -> bool {
    f.order
        .iter()
        .any(|k| !k.is_empty() && !super::reserved_name(k))
}

/// The schema type of a stat, and whether it needs nested `fields`.
fn type_of<'a>(
    stat: &'a Stat,
    name: &str,
    top: bool,
) -> (String, Vec<&'static str>, Option<&'a Fields>) {
    let timey = {
        let n = name.to_ascii_lowercase();
        n == "ts" || n.contains("time") || n.ends_with("_at") || n.contains("date")
    };
    match &stat.kind {
        Kind::Unknown => ("string".into(), vec![], None),
        Kind::Bool => ("bool".into(), vec![], None),
        Kind::Int { min, max } if top && timey => {
            let (lo, hi) = (*min, *max);
            let unit = if lo >= 1_000_000_000 && hi <= 4_000_000_000 {
                Some("epoch_s")
            } else if lo >= 1_000_000_000_000 && hi <= 4_000_000_000_000 {
                Some("epoch_ms")
            } else if lo >= 1_000_000_000_000_000 && hi <= 4_000_000_000_000_000 {
                Some("epoch_us")
            } else {
                None
            };
            match unit {
                Some(u) => ("timestamp".into(), vec![u], None),
                None => (int_type(lo, hi).into(), vec![], None),
            }
        }
        Kind::Int { .. } => ("int64".into(), vec![], None),
        Kind::Float => ("float64".into(), vec![], None),
        Kind::Str(Text::Rfc3339) => ("timestamp".into(), vec!["rfc3339"], None),
        Kind::Str(Text::DateTime) if top => ("timestamp".into(), vec!["%Y-%m-%d %H:%M:%S"], None),
        Kind::Str(Text::Date) if top => ("date".into(), vec![], None),
        Kind::Str(_) => ("string".into(), vec![], None),
        Kind::Json => ("json".into(), vec![], None),
        Kind::Object(f) if !writable(f) => ("json".into(), vec![], None),
        Kind::Object(f) => ("struct".into(), vec![], Some(f)),
        Kind::Array(item) => match &item.kind {
            Kind::Object(f) if writable(f) => ("list<struct>".into(), vec![], Some(f)),
            Kind::Object(_) | Kind::Array(_) | Kind::Json => ("json".into(), vec![], None),
            // Inside lists, only RFC 3339 timestamps (see docs/SCHEMA.md).
            _ => {
                let (t, fmt, _) = type_of(item, name, false);
                if t == "timestamp" && fmt != ["rfc3339"] {
                    ("list<string>".into(), vec![], None)
                } else {
                    (format!("list<{t}>"), vec![], None)
                }
            }
        },
    }
}

fn int_type(lo: i64, hi: i64) -> &'static str {
    if lo >= i32::MIN as i64 && hi <= i32::MAX as i64 {
        "int32"
    } else {
        "int64"
    }
}

/// Writes `[[<table>]]` entries for `fields`; a struct's fields follow their parent's entry
/// (TOML nests arrays of tables that way). Recursive, but at most [`MAX_DEPTH`] deep: deeper
/// values were typed `json`.
fn write_fields(out: &mut String, fields: &Fields, of: u64, table: &str, top: bool) {
    for key in &fields.order {
        let stat = &fields.map[key];
        if key.is_empty() {
            continue;
        }
        if super::reserved_name(key) {
            // A schema naming it would be refused (`schema check`): said, not written.
            let _ = writeln!(
                out,
                "\n# {} (in {} of {of} {}) is left out: names starting with `_kafka_`, and \
                 `_raw`, are reserved for metadata columns",
                quote(key),
                stat.present,
                if top { "rows" } else { "values" }
            );
            continue;
        }
        let (ty, format, nested) = type_of(stat, key, top);
        let _ = writeln!(out, "\n[[{table}]]");
        let _ = writeln!(
            out,
            "# e.g. {}; in {} of {of} {}",
            stat.example.as_deref().unwrap_or("null"),
            stat.present - stat.nulls,
            if top { "rows" } else { "values" }
        );
        let _ = writeln!(out, "name = {}", quote(key));
        let _ = writeln!(out, "type = {}", quote(&ty));
        if let Some(f) = format.first() {
            let _ = writeln!(out, "format = {}", quote(f));
            let _ = writeln!(out, "unit = \"ms\"\ntimezone = \"UTC\"");
        }
        if stat.nulls == 0 && stat.present >= of {
            let _ = writeln!(out, "nullable = false");
        }
        if let Some(f) = nested {
            write_fields(out, f, f.seen, &format!("{table}.fields"), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of reserved names (`_kafka_…`, `_raw`) at any depth are left out with a comment:
    /// written as fields, `schema check` refused the inferred schema.
    #[test]
    fn reserved_names_are_left_out_and_the_schema_parses() {
        let mut inf = Inference::default();
        inf.json_line(
            br#"{"a":1,"_kafka_offset":5,"_raw":"x","s":{"_kafka_key":"k","b":2},"e":{"_raw":1},"l":[{"":1}]}"#,
        );
        let toml = inf.to_toml("r", "test");
        assert!(
            toml.contains("# \"_kafka_offset\" (in 1 of 1 rows) is left out"),
            "{toml}"
        );
        assert!(
            toml.contains("# \"_kafka_key\" (in 1 of 1 values)"),
            "{toml}"
        );
        let s = crate::schema::RepoSchema::parse(&toml, std::path::Path::new("r.toml")).unwrap();
        let names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "s", "e", "l"]);
        // Objects left with no field a schema may name are `json`.
        assert!(s.fields[2..]
            .iter()
            .all(|f| f.ty == crate::schema::FieldType::Json));
    }

    #[test]
    fn nesting_past_the_cap_is_json_and_costs_no_stack() {
        let mut inf = Inference::default();
        let depth = 100;
        let line = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        inf.json_line(line.as_bytes());
        let toml = inf.to_toml("deep", "test");
        assert!(toml.contains("type = \"json\""), "{toml}");
        assert!(
            toml.matches("type = \"struct\"").count() <= MAX_DEPTH,
            "{toml}"
        );
        assert_eq!(inf.rows(), 1);
    }

    #[test]
    fn kinds_widen_as_documented() {
        let mut inf = Inference::default();
        for line in [
            r#"{"n":1,"m":1,"o":{"x":1},"s":"2024-05-01T00:00:00Z"}"#,
            r#"{"n":1.5,"m":"one","o":[1],"s":"yesterday"}"#,
            "not json",
        ] {
            inf.json_line(line.as_bytes());
        }
        let toml = inf.to_toml("w", "test");
        let ty = |name: &str| {
            let at = toml.find(&format!("name = \"{name}\"")).unwrap();
            toml[at..].lines().nth(1).unwrap().to_string()
        };
        assert_eq!(ty("n"), "type = \"float64\"");
        assert_eq!(ty("m"), "type = \"string\"");
        assert_eq!(ty("o"), "type = \"json\"");
        assert_eq!(ty("s"), "type = \"string\"");
        assert_eq!((inf.rows(), inf.skipped()), (2, 1));
    }

    /// Strings that all read as `YYYY-MM-DD` are dates (they were strings); one that does not
    /// makes the field a string; inside lists they stay strings.
    #[test]
    fn plain_dates_are_dates() {
        let mut inf = Inference::default();
        for line in [
            r#"{"day":"2024-05-01","mixed":"2024-05-01","days":["2024-05-01"]}"#,
            r#"{"day":"1999-12-31","mixed":"2024-05-01T00:00:00Z","days":[],"zero":"0000-01-01"}"#,
        ] {
            inf.json_line(line.as_bytes());
        }
        let toml = inf.to_toml("d", "test");
        let ty = |name: &str| {
            let at = toml.find(&format!("name = \"{name}\"")).unwrap();
            toml[at..].lines().nth(1).unwrap().to_string()
        };
        assert_eq!(ty("day"), "type = \"date\"");
        assert_eq!(ty("mixed"), "type = \"string\"");
        assert_eq!(ty("days"), "type = \"list<string>\"");
        assert_eq!(
            ty("zero"),
            "type = \"string\"",
            "year 0 is no date a decoder takes"
        );
        crate::schema::RepoSchema::parse(&toml, std::path::Path::new("d.toml")).unwrap();
    }
}
