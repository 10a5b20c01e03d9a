//! Repo schema files (`schemas/<repo>.toml`): parsing, validation, and the Arrow schema and
//! per-field parse rules the decoders use.
//!
//! The file format is documented in `docs/SCHEMA.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

/// How deep a schema's types may nest (lists, maps and structs, each a level): every step that
/// follows a type into its children (checks, Arrow types, decoders, writers) recurses, so a
/// schema file must not decide how deep. Far past what data needs (BigQuery allows 15).
pub const MAX_NESTING: usize = 32;

/// Errors from loading or validating a schema file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read schema file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("schema file {path} is not valid TOML for a repo schema: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("schema file {path}, field `{field}`: {reason}")]
    Field {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("schema file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// What to do with input fields the schema does not name: ignore, dead_letter, error.
    #[serde(default)]
    unknown_fields: Option<String>,
    #[serde(default)]
    fields: Vec<RawField>,
}

/// What happens to a JSON record with a top-level field the schema does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownFields {
    /// The field is dropped (the default).
    #[default]
    Ignore,
    /// The record becomes a dead letter.
    DeadLetter,
    /// The task stops with an error naming the record.
    Error,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default = "default_true")]
    nullable: bool,
    #[serde(default)]
    default: Option<toml::Value>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    fields: Option<Vec<RawField>>,
    /// Documentation only.
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

fn default_true() -> bool {
    true
}

/// How a timestamp value appears in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// RFC 3339 / ISO 8601 text, e.g. `2024-05-01T12:00:00.123Z`.
    Rfc3339,
    /// A chrono strftime pattern, e.g. `%d/%b/%Y:%H:%M:%S %z`.
    Pattern(String),
    /// Seconds since the Unix epoch (integer or fractional).
    EpochSeconds,
    /// Milliseconds since the Unix epoch.
    EpochMillis,
    /// Microseconds since the Unix epoch.
    EpochMicros,
}

/// How a binary value appears in text input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryEncoding {
    Base64,
    Hex,
}

/// The type of one schema field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    String,
    Int32,
    Int64,
    Float32,
    Float64,
    Bool,
    Binary(BinaryEncoding),
    Date,
    Timestamp {
        unit: TimeUnit,
        timezone: Arc<str>,
        format: TimeFormat,
    },
    Decimal {
        precision: u8,
        scale: i8,
    },
    List(Box<FieldSpec>),
    Struct(Vec<FieldSpec>),
    Map(Box<FieldSpec>),
    /// Any JSON value, kept as its JSON text.
    Json,
}

/// One validated field of a repo schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub name: String,
    /// The input key the value is read from (JSON key, CSV header); defaults to `name`.
    pub source: String,
    pub ty: FieldType,
    pub nullable: bool,
    /// Value used when the input has null or no value, as text to be parsed like input.
    pub default: Option<String>,
}

impl FieldSpec {
    /// The Arrow type this field has in output batches.
    pub fn arrow_type(&self) -> DataType {
        match &self.ty {
            FieldType::String | FieldType::Json => DataType::Utf8,
            FieldType::Int32 => DataType::Int32,
            FieldType::Int64 => DataType::Int64,
            FieldType::Float32 => DataType::Float32,
            FieldType::Float64 => DataType::Float64,
            FieldType::Bool => DataType::Boolean,
            FieldType::Binary(_) => DataType::Binary,
            FieldType::Date => DataType::Date32,
            FieldType::Timestamp { unit, timezone, .. } => {
                DataType::Timestamp(*unit, Some(timezone.clone()))
            }
            FieldType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            FieldType::List(item) => DataType::List(Arc::new(item.arrow_field())),
            FieldType::Struct(fields) => {
                DataType::Struct(fields.iter().map(|f| f.arrow_field()).collect())
            }
            FieldType::Map(value) => {
                let key = Field::new("key", DataType::Utf8, false);
                let entries = Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![key, value.arrow_field()])),
                    false,
                );
                DataType::Map(Arc::new(entries), false)
            }
        }
    }

    /// The Arrow field of this spec in output batches.
    pub fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.arrow_type(), self.nullable)
    }

    /// True when the type, or any type nested in it, is a list, struct or map.
    pub fn is_nested(&self) -> bool {
        matches!(
            self.ty,
            FieldType::List(_) | FieldType::Struct(_) | FieldType::Map(_)
        )
    }

    /// The type name as written in schema files (`list<string>`, `decimal(10,2)`, ...).
    pub fn type_name(&self) -> String {
        match &self.ty {
            FieldType::String => "string".into(),
            FieldType::Int32 => "int32".into(),
            FieldType::Int64 => "int64".into(),
            FieldType::Float32 => "float32".into(),
            FieldType::Float64 => "float64".into(),
            FieldType::Bool => "bool".into(),
            FieldType::Binary(_) => "binary".into(),
            FieldType::Date => "date".into(),
            FieldType::Timestamp { .. } => "timestamp".into(),
            FieldType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            FieldType::List(item) => format!("list<{}>", item.type_name()),
            FieldType::Struct(_) => "struct".into(),
            FieldType::Map(value) => format!("map<string,{}>", value.type_name()),
            FieldType::Json => "json".into(),
        }
    }
}

/// A validated repo schema.
#[derive(Debug, Clone)]
pub struct RepoSchema {
    pub name: String,
    pub description: Option<String>,
    pub unknown_fields: UnknownFields,
    pub fields: Vec<FieldSpec>,
    /// The file it was loaded from (for error messages).
    pub path: PathBuf,
    arrow: SchemaRef,
}

impl RepoSchema {
    /// Load and validate a schema file.
    pub fn load(path: &Path) -> Result<Self, SchemaError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate schema text; `path` is used in error messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SchemaError> {
        let raw: RawSchema = toml::from_str(text).map_err(|e| SchemaError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |reason: String| SchemaError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if !is_identifier(&raw.name) {
            return Err(invalid(format!(
                "repo name `{}` must be letters, digits, `_` or `-`, starting with a letter",
                raw.name
            )));
        }
        if raw.fields.is_empty() {
            return Err(invalid("a schema needs at least one field".into()));
        }
        let unknown_fields = match raw.unknown_fields.as_deref() {
            None | Some("ignore") => UnknownFields::Ignore,
            Some("dead_letter") => UnknownFields::DeadLetter,
            Some("error") => UnknownFields::Error,
            Some(other) => {
                return Err(invalid(format!(
                    "unknown_fields = `{other}` (expected ignore, dead_letter or error)"
                )))
            }
        };
        let fields = convert_fields(&raw.fields, path, "", 0)?;
        let arrow = Arc::new(Schema::new(
            fields.iter().map(|f| f.arrow_field()).collect::<Vec<_>>(),
        ));
        Ok(RepoSchema {
            name: raw.name,
            description: raw.description,
            unknown_fields,
            fields,
            path: path.to_path_buf(),
            arrow,
        })
    }

    /// The Arrow schema of decoded batches.
    pub fn arrow_schema(&self) -> SchemaRef {
        self.arrow.clone()
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn convert_fields(
    raw: &[RawField],
    path: &Path,
    prefix: &str,
    depth: usize,
) -> Result<Vec<FieldSpec>, SchemaError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for f in raw {
        let full = format!("{prefix}{}", f.name);
        if f.name.is_empty() {
            return Err(SchemaError::Invalid {
                path: path.to_path_buf(),
                reason: format!("a field under `{prefix}` has an empty name"),
            });
        }
        if !seen.insert(f.name.clone()) {
            return Err(field_err(path, &full, "the name is used twice"));
        }
        out.push(convert_field(f, path, &full, depth)?);
    }
    Ok(out)
}

fn field_err(path: &Path, field: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Field {
        path: path.to_path_buf(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Whether a field may not have this name: `_kafka_…` and `_raw` name metadata columns.
pub fn reserved_name(name: &str) -> bool {
    name.starts_with("_kafka_") || name == "_raw"
}

fn convert_field(
    f: &RawField,
    path: &Path,
    full: &str,
    depth: usize,
) -> Result<FieldSpec, SchemaError> {
    let err = |reason: String| field_err(path, full, reason);
    if depth > MAX_NESTING {
        return Err(err(format!(
            "types are nested more than {MAX_NESTING} levels deep (lists, maps and structs)"
        )));
    }
    let top_level = depth == 0;
    if reserved_name(&f.name) {
        return Err(err(format!(
            "the name `{}` is reserved for metadata columns",
            f.name
        )));
    }
    let ty = parse_type(f.ty.trim(), f, path, full, depth)?;
    let is_ts = matches!(ty, FieldType::Timestamp { .. });
    let is_bin = matches!(ty, FieldType::Binary(_));
    if !is_ts && (f.unit.is_some() || f.timezone.is_some() || f.format.is_some()) {
        return Err(err(
            "`unit`, `timezone` and `format` apply only to timestamp fields".into(),
        ));
    }
    if !is_bin && f.encoding.is_some() {
        return Err(err("`encoding` applies only to binary fields".into()));
    }
    let struct_like = matches!(ty, FieldType::Struct(_))
        || matches!(&ty, FieldType::List(i) if matches!(i.ty, FieldType::Struct(_)))
        || matches!(&ty, FieldType::Map(v) if matches!(v.ty, FieldType::Struct(_)));
    if f.fields.is_some() && !struct_like {
        return Err(err(
            "`fields` applies only to struct, list<struct> and map<string,struct>".into(),
        ));
    }
    if !top_level {
        if f.source.is_some() {
            return Err(err("`source` is supported on top-level fields only".into()));
        }
        if f.default.is_some() {
            return Err(err("`default` is supported on top-level fields only".into()));
        }
        if needs_text_conversion(&ty) {
            return Err(err(format!(
                "type `{}` with this input format is supported on top-level fields only \
                 (nested timestamps must be RFC 3339, nested binary must be hex)",
                f.ty
            )));
        }
    }
    let default = match &f.default {
        None => None,
        Some(v) => Some(default_text(v, &ty).map_err(err)?),
    };
    if let Some(source) = &f.source {
        if source.is_empty() {
            return Err(err("`source` must not be empty".into()));
        }
    }
    Ok(FieldSpec {
        name: f.name.clone(),
        source: f.source.clone().unwrap_or_else(|| f.name.clone()),
        ty,
        nullable: f.nullable,
        default,
    })
}

/// True when JSON values of this type cannot be decoded by arrow-json directly and are read
/// as text (or numbers) first, then converted.
pub fn needs_text_conversion(ty: &FieldType) -> bool {
    match ty {
        FieldType::Timestamp { format, .. } => *format != TimeFormat::Rfc3339,
        FieldType::Binary(enc) => *enc == BinaryEncoding::Base64,
        FieldType::Json => true,
        _ => false,
    }
}

fn default_text(v: &toml::Value, ty: &FieldType) -> Result<String, String> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => {
            return Err(format!(
                "`default` must be a string, number or bool, not {}",
                other.type_str()
            ))
        }
    };
    match ty {
        FieldType::List(_) | FieldType::Struct(_) | FieldType::Map(_) => {
            Err("`default` is not supported on list, struct or map fields".into())
        }
        _ => Ok(text),
    }
}

fn parse_type(
    s: &str,
    f: &RawField,
    path: &Path,
    full: &str,
    depth: usize,
) -> Result<FieldType, SchemaError> {
    let err = |reason: String| field_err(path, full, reason);
    let lower = s.to_ascii_lowercase();
    let ty = match lower.as_str() {
        "string" | "utf8" | "text" => FieldType::String,
        "int32" | "int" => FieldType::Int32,
        "int64" | "long" | "bigint" => FieldType::Int64,
        "float32" | "float" => FieldType::Float32,
        "float64" | "double" => FieldType::Float64,
        "bool" | "boolean" => FieldType::Bool,
        "date" => FieldType::Date,
        "json" => FieldType::Json,
        "binary" => FieldType::Binary(match f.encoding.as_deref() {
            None | Some("base64") => BinaryEncoding::Base64,
            Some("hex") => BinaryEncoding::Hex,
            Some(other) => {
                return Err(err(format!(
                    "unknown binary encoding `{other}` (expected base64 or hex)"
                )))
            }
        }),
        "timestamp" => parse_timestamp(f).map_err(err)?,
        "struct" => {
            let Some(children) = &f.fields else {
                return Err(err("a struct needs `fields`".into()));
            };
            if children.is_empty() {
                return Err(err("a struct needs at least one field".into()));
            }
            FieldType::Struct(convert_fields(
                children,
                path,
                &format!("{full}."),
                depth + 1,
            )?)
        }
        _ => {
            if let Some(inner) = strip_wrapped(&lower, "decimal(", ")") {
                let (p, sc) = inner
                    .split_once(',')
                    .ok_or_else(|| err(format!("`{s}`: expected decimal(precision,scale)")))?;
                let precision: u8 = p
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("`{s}`: precision must be a number")))?;
                let scale: i8 = sc
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("`{s}`: scale must be a number")))?;
                if precision == 0 || precision > 38 {
                    return Err(err(format!("`{s}`: precision must be 1 to 38")));
                }
                if scale < 0 || scale as u8 > precision {
                    return Err(err(format!("`{s}`: scale must be 0 to the precision")));
                }
                FieldType::Decimal { precision, scale }
            } else if let Some(inner) = strip_wrapped(s, "list<", ">") {
                let item = element_spec("item", inner, f, path, &format!("{full}[]"), depth + 1)?;
                FieldType::List(Box::new(item))
            } else if let Some(inner) = strip_wrapped(s, "map<", ">") {
                let (k, v) = inner
                    .split_once(',')
                    .ok_or_else(|| err(format!("`{s}`: expected map<string,T>")))?;
                if !k.trim().eq_ignore_ascii_case("string") {
                    return Err(err(format!("`{s}`: map keys must be string")));
                }
                let value = element_spec(
                    "value",
                    v.trim(),
                    f,
                    path,
                    &format!("{full}{{}}"),
                    depth + 1,
                )?;
                FieldType::Map(Box::new(value))
            } else {
                return Err(err(format!(
                    "unknown type `{s}` (expected string, int32, int64, float32, float64, bool, \
                     binary, date, timestamp, decimal(p,s), list<T>, struct, map<string,T> or json)"
                )));
            }
        }
    };
    Ok(ty)
}

/// The element of a list or the value of a map: always nullable, carries the parent's
/// timestamp options and nested `fields`.
fn element_spec(
    name: &str,
    ty: &str,
    parent: &RawField,
    path: &Path,
    full: &str,
    depth: usize,
) -> Result<FieldSpec, SchemaError> {
    let raw = RawField {
        name: name.to_string(),
        ty: ty.to_string(),
        nullable: true,
        default: None,
        source: None,
        unit: parent.unit.clone(),
        timezone: parent.timezone.clone(),
        format: parent.format.clone(),
        encoding: parent.encoding.clone(),
        fields: parent.fields.clone(),
        description: None,
    };
    let spec = convert_field(&raw, path, full, depth)?;
    if matches!(spec.ty, FieldType::Json) {
        return Err(field_err(
            path,
            full,
            "json is supported on top-level fields only",
        ));
    }
    Ok(spec)
}

fn strip_wrapped<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    // `get`: a name of other characters than ASCII may not split after `open.len()` bytes.
    if s.get(..open.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(open))
        && s.len() >= open.len() + close.len()
        && s.ends_with(close)
    {
        Some(s[open.len()..s.len() - close.len()].trim())
    } else {
        None
    }
}

fn parse_timestamp(f: &RawField) -> Result<FieldType, String> {
    let unit = match f.unit.as_deref().unwrap_or("ms") {
        "ms" => TimeUnit::Millisecond,
        "us" => TimeUnit::Microsecond,
        other => {
            return Err(format!(
                "unknown timestamp unit `{other}` (expected ms or us; nanoseconds are not \
                 offered because Spark, Athena and older readers cannot read them)"
            ))
        }
    };
    let tz = zone::canonical(f.timezone.as_deref().unwrap_or("UTC"))?;
    let format = match f.format.as_deref().unwrap_or("rfc3339") {
        "rfc3339" | "iso8601" => TimeFormat::Rfc3339,
        "epoch_s" => TimeFormat::EpochSeconds,
        "epoch_ms" => TimeFormat::EpochMillis,
        "epoch_us" => TimeFormat::EpochMicros,
        pattern if pattern.contains('%') => {
            pattern::validate(pattern)?;
            TimeFormat::Pattern(pattern.to_string())
        }
        other => {
            return Err(format!(
                "unknown timestamp format `{other}` (expected rfc3339, epoch_s, epoch_ms, \
                 epoch_us, or a strftime pattern containing `%`)"
            ))
        }
    };
    Ok(FieldType::Timestamp {
        unit,
        timezone: Arc::from(tz.as_str()),
        format,
    })
}

pub mod infer;
mod ordered;
pub mod pattern;
pub mod zone;

#[cfg(test)]
mod tests;
