//! The template syntax: splitting a template into segments of literals and placeholders, and
//! compiling each placeholder against the schema (field lookup, type checks, strftime patterns).

use super::*;

/// A token of one template segment.
pub(super) enum Token<'t> {
    Literal(&'t str),
    Placeholder {
        name: &'t str,
        format: Option<&'t str>,
        text: &'t str,
    },
}

pub(super) fn push_literal(parts: &mut Vec<Part>, text: &str) {
    if let Some(Part::Literal(prev)) = parts.last_mut() {
        prev.push_str(text);
    } else {
        parts.push(Part::Literal(text.to_string()));
    }
}

/// Splits a template into segments of tokens. Errors are reasons without the template.
pub(super) fn tokenize(template: &str) -> Result<Vec<Vec<Token<'_>>>, String> {
    let mut segments = vec![Vec::new()];
    let mut rest = template;
    let mut offset = 0;
    while !rest.is_empty() {
        let Some(at) = rest.find(['{', '}', '/']) else {
            segments
                .last_mut()
                .expect("a segment")
                .push(Token::Literal(rest));
            break;
        };
        if at > 0 {
            segments
                .last_mut()
                .expect("a segment")
                .push(Token::Literal(&rest[..at]));
        }
        match rest.as_bytes()[at] {
            b'/' => {
                segments.push(Vec::new());
                rest = &rest[at + 1..];
                offset += at + 1;
            }
            b'}' => {
                return Err(format!(
                    "unbalanced braces: `}}` at byte {} has no matching `{{`",
                    offset + at
                ))
            }
            _ => {
                let inner_start = at + 1;
                let close = rest[inner_start..].find(['{', '}']);
                let close = match close {
                    Some(c) if rest.as_bytes()[inner_start + c] == b'}' => inner_start + c,
                    _ => {
                        return Err(format!(
                            "unbalanced braces: `{{` at byte {} is not closed",
                            offset + at
                        ))
                    }
                };
                let inner = &rest[inner_start..close];
                let text = &rest[at..=close];
                let (name, format) = match inner.split_once(':') {
                    Some((n, f)) => (n, Some(f)),
                    None => (inner, None),
                };
                if name.trim().is_empty() {
                    return Err(format!("empty field name in `{text}`"));
                }
                if format == Some("") {
                    return Err(format!("empty format after `:` in `{text}`"));
                }
                segments
                    .last_mut()
                    .expect("a segment")
                    .push(Token::Placeholder { name, format, text });
                rest = &rest[close + 1..];
                offset += close + 1;
            }
        }
    }
    Ok(segments)
}

/// Resolves one placeholder. `{repo}` resolves to a literal. Errors are reasons.
pub(super) fn placeholder(
    name: &str,
    format: Option<&str>,
    text: &str,
    schema: &SchemaRef,
    repo: &str,
    seg_start: bool,
) -> Result<Part, String> {
    if name == "repo" {
        if format.is_some() {
            return Err(format!("`{text}`: `{{repo}}` takes no format"));
        }
        if repo.is_empty() {
            return Err("`{repo}` is used but the repo name is empty".into());
        }
        let mut rendered = String::new();
        push_sanitized(&mut rendered, repo, seg_start);
        return Ok(Part::Literal(rendered));
    }
    if name == "_ingest" {
        let Some(format) = format else {
            return Err("`{_ingest}` needs a format, e.g. `{_ingest:%Y-%m-%d}`".into());
        };
        return Ok(Part::Ingest(time_pattern(format, text, seg_start)?));
    }
    let index = schema
        .index_of(name)
        .map_err(|_| format!("unknown field `{name}`"))?;
    let field = schema.field(index);
    let data_type = field.data_type().clone();
    if data_type.is_nested() {
        return Err(format!(
            "field `{name}` is nested ({data_type}); only top-level fields of a primitive type \
             can be used in paths"
        ));
    }
    let tz = match &data_type {
        DataType::Timestamp(_, Some(zone)) => Some(
            zone.parse::<Tz>()
                .map_err(|_| format!("field `{name}` has an unknown time zone `{zone}`"))?,
        ),
        DataType::Timestamp(_, None) => Some(utc()),
        _ => None,
    };
    let col = Column {
        index,
        name: name.to_string(),
        data_type,
        tz,
    };
    match format {
        Some(format) => {
            if !matches!(
                col.data_type,
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
            ) {
                return Err(format!(
                    "`{text}`: a format needs a timestamp or date field, but `{name}` has type {}",
                    col.data_type
                ));
            }
            let pattern = time_pattern(format, text, seg_start)?;
            Ok(Part::Time { col, pattern })
        }
        None => {
            let supported = matches!(
                col.data_type,
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Boolean
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Float16
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Timestamp(..)
                    | DataType::Decimal32(..)
                    | DataType::Decimal64(..)
                    | DataType::Decimal128(..)
                    | DataType::Decimal256(..)
            );
            if !supported {
                return Err(format!(
                    "field `{name}` has type {}, which cannot be rendered in a path (use a \
                     string, integer, float, bool, date, timestamp or decimal field)",
                    col.data_type
                ));
            }
            Ok(Part::Value { col, seg_start })
        }
    }
}

fn time_pattern(format: &str, text: &str, seg_start: bool) -> Result<TimePattern, String> {
    if format.contains('/') {
        return Err(format!(
            "`{text}`: a format cannot contain `/`; use one placeholder per path segment"
        ));
    }
    let items: Vec<Item<'static>> = StrftimeItems::new(format).map(|i| i.to_owned()).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{text}`: invalid strftime format `{format}`"));
    }
    let subsecond = items.iter().any(|i| {
        matches!(
            i,
            Item::Numeric(Numeric::Nanosecond, _)
                | Item::Fixed(
                    Fixed::Nanosecond
                        | Fixed::Nanosecond3
                        | Fixed::Nanosecond6
                        | Fixed::Nanosecond9
                        | Fixed::RFC3339
                        | Fixed::Internal(_)
                )
        )
    });
    Ok(TimePattern {
        items: items.into(),
        subsecond,
        seg_start,
    })
}
