//! The job file's reference, generated from its types so it cannot drift: a JSON Schema
//! (`sluice config json-schema`, committed as `docs/job.schema.json` for editors) and the
//! Markdown reference `docs/CONFIG.md` (`sluice config reference`), one table per section with
//! every key's type, default and meaning (the doc comment of its field). Tests fail when a
//! committed file differs from what these print, or when a key has no meaning.

use serde_json::{Map, Value};

use super::JobFile;

/// The JSON Schema of a job file (draft 2020-12). A file is one of two shapes: one repo
/// (every required section and key), or several (`[[repos]]`): then the shared sections and
/// each entry hold parts of a job, checked key by key (`Partial*` definitions: the same keys,
/// none required), and `sluice validate` checks each merged repo in full.
pub fn json_schema() -> Value {
    let full = serde_json::to_value(schemars::schema_for!(JobFile)).expect("plain JSON");
    let Value::Object(mut root) = full else {
        unreachable!("a schema of a struct is an object")
    };
    let mut defs = match root.remove("$defs") {
        Some(Value::Object(d)) => d,
        _ => Map::new(),
    };
    let partial_defs: Vec<(String, Value)> = defs
        .iter()
        .map(|(k, v)| (format!("Partial{k}"), partial(v)))
        .collect();
    defs.extend(partial_defs);
    let one = serde_json::json!({
        "title": "one repo",
        "type": "object",
        "properties": root.remove("properties").unwrap_or_default(),
        "required": root.remove("required").unwrap_or_default(),
        "additionalProperties": false
    });
    let mut shared = partial(&one);
    shared["title"] = Value::from("several repos");
    shared["properties"]["repos"] = serde_json::json!({
        "description": REPOS,
        "type": "array",
        "minItems": 1,
        "items": entry(&shared["properties"], &defs)
    });
    shared["required"] = serde_json::json!(["repos"]);
    serde_json::json!({
        "$schema": root.remove("$schema").unwrap_or_default(),
        "title": "sluice job file",
        "description": root.remove("description").unwrap_or_default(),
        "oneOf": [one, shared],
        "$defs": defs
    })
}

const REPOS: &str = "Several repos in one job file: each entry names a repo and sets, section by \
section or as dotted keys (`source.topics = [...]`), what differs from the shared sections \
above; each repo runs as its own task, named `<job>.<repo>`. `[admin]` is shared only.";

/// A `[[repos]]` entry: a name, and parts of the sections a repo may set for itself (not
/// `[admin]`, nor the job's name, which every repo shares).
fn entry(shared: &Value, defs: &Map<String, Value>) -> Value {
    let mut props = shared.as_object().cloned().unwrap_or_default();
    props.remove("admin");
    if let Some(mut job) = defs.get("PartialJobSection").cloned() {
        if let Some(p) = job.get_mut("properties").and_then(Value::as_object_mut) {
            p.remove("name");
        }
        job["description"] = Value::from(
            "The job's local state for this repo (the job's name is shared: each repo runs as \
             `<job>.<repo>`).",
        );
        props.insert("job".into(), job);
    }
    props.insert(
        "name".into(),
        serde_json::json!({
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$",
            "description": "The repo's name: letters, digits, `-` or `_`."
        }),
    );
    serde_json::json!({
        "type": "object",
        "properties": props,
        "required": ["name"],
        "additionalProperties": false
    })
}

/// The same schema with nothing required, its references to partial definitions, and one of
/// several kinds matched by any (a part of a source may fit more than one kind).
fn partial(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "required")
                .map(|(k, v)| match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => (
                        k.clone(),
                        Value::from(r.replace("#/$defs/", "#/$defs/Partial")),
                    ),
                    ("oneOf", v) => ("anyOf".to_string(), partial(v)),
                    _ => (k.clone(), partial(v)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(partial).collect()),
        other => other.clone(),
    }
}

/// `docs/CONFIG.md`: one table per section. Errors name the keys that have no meaning (a
/// field without a doc comment).
pub fn markdown() -> Result<String, String> {
    let schema = json_schema();
    let one = &schema["oneOf"][0];
    let mut out = String::from(
        "# Job file reference\n\n\
         Generated from the job file's types by `sluice config reference`; a test fails when \
         this file\ndiffers from what it prints. Editors can check job files against \
         [`job.schema.json`](job.schema.json)\n(`sluice config json-schema`; with Taplo or \
         Even Better TOML, put `#:schema ./job.schema.json`\nat the top of a job file).\n\n\
         Sizes are written like `512KiB`, `64MiB`, `4GiB`; durations like `500ms`, `30s`, \
         `15m`, `7d`.\nUnknown keys are errors. `sluice validate JOB` checks a job file: a \
         TOML syntax error or a value of the\nwrong type comes first, alone, with its line; \
         then every other problem, each with its key path.\n",
    );
    let mut missing = Vec::new();
    let defs = schema["$defs"].clone();
    let mut sections: Vec<(String, String, Value)> = Vec::new();
    // The sections in the order a job file usually has them.
    let order = [
        "job",
        "source",
        "repo",
        "channel",
        "sink",
        "dead_letters",
        "admin",
    ];
    let mut top = props(one);
    top.retain(|(k, _)| k != "repos");
    top.sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(order.len()));
    for (key, prop) in top {
        collect(&defs, &format!("[{key}]"), &key, &prop, &mut sections);
    }
    for (title, path, node) in sections {
        write_section(&defs, &title, &path, &node, &mut out, &mut missing);
    }
    out.push_str(&format!("\n## [[repos]]\n\n{REPOS}\n\n"));
    out.push_str(
        "```toml\n[[repos]]\nname = \"nginx\"\nsource.topics = [\"nginx_access\"]\n\
         repo.schema = \"schemas/nginx_access.toml\"\n```\n",
    );
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "keys without a meaning (a doc comment on their field): {}",
            missing.join(", ")
        ))
    }
}

/// The object properties of a schema node: required keys first, then by name.
fn props(node: &Value) -> Vec<(String, Value)> {
    let required = required(node);
    let mut v: Vec<(String, Value)> = node["properties"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    v.sort_by_key(|(k, _)| (!required.contains(&k.as_str()), k.clone()));
    v
}

/// The keys a schema node requires.
fn required(node: &Value) -> Vec<&str> {
    node["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The definition a node refers to (through `$ref`, or the first non-null `anyOf` branch).
fn resolve<'a>(defs: &'a Value, node: &'a Value) -> &'a Value {
    let mut n = node;
    if let Some(any) = n["anyOf"].as_array() {
        if let Some(first) = any.iter().find(|b| b["type"] != "null") {
            n = first;
        }
    }
    match n["$ref"].as_str() {
        Some(r) => &defs[r.trim_start_matches("#/$defs/")],
        None => n,
    }
}

/// Whether a node is a section of named keys (rather than a value or a free map).
fn is_section(node: &Value) -> bool {
    node["properties"].is_object() || node["oneOf"].is_array()
}

/// Sections in reading order: a section, then the sections nested in it.
fn collect(
    defs: &Value,
    title: &str,
    path: &str,
    node: &Value,
    out: &mut Vec<(String, String, Value)>,
) {
    let target = resolve(defs, node);
    let items = resolve(defs, &target["items"]);
    if target["type"] == "array" && is_section(items) {
        let mut n = items.clone();
        n["description"] = node["description"].clone();
        out.push((format!("[[{path}]]"), path.to_string(), n));
        return;
    }
    if !is_section(target) {
        return;
    }
    let mut n = target.clone();
    if node["description"].is_string() {
        n["description"] = node["description"].clone();
    }
    out.push((title.to_string(), path.to_string(), n.clone()));
    for (key, prop) in props(&n) {
        let sub = format!("{path}.{key}");
        collect(defs, &format!("[{sub}]"), &sub, &prop, out);
    }
}

fn write_section(
    defs: &Value,
    title: &str,
    path: &str,
    node: &Value,
    out: &mut String,
    missing: &mut Vec<String>,
) {
    out.push_str(&format!("\n## {title}\n\n"));
    if let Some(d) = node["description"].as_str() {
        out.push_str(&format!("{}\n", paragraph(d)));
    }
    if let Some(kinds) = node["oneOf"].as_array() {
        for kind in kinds {
            let name = kind["properties"]["kind"]["const"]
                .as_str()
                .unwrap_or("?")
                .to_string();
            out.push_str(&format!("\n### `kind = \"{name}\"`\n\n"));
            if let Some(d) = kind["description"].as_str() {
                out.push_str(&format!("{}\n\n", paragraph(d)));
            }
            table(defs, path, kind, out, missing);
        }
        return;
    }
    out.push('\n');
    table(defs, path, node, out, missing);
}

fn table(defs: &Value, path: &str, node: &Value, out: &mut String, missing: &mut Vec<String>) {
    let required = required(node);
    out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
    for (key, prop) in props(node) {
        if key == "kind" {
            continue;
        }
        let target = resolve(defs, &prop);
        let (kind, nested) = type_of(defs, target);
        let meaning = prop["description"]
            .as_str()
            .or(target["description"].as_str())
            .map(paragraph);
        let Some(meaning) = meaning else {
            missing.push(format!("{path}.{key}"));
            continue;
        };
        let default = if required.contains(&key.as_str()) {
            "required".to_string()
        } else if nested {
            "see below".to_string()
        } else {
            match prop.get("default") {
                None if kind.starts_with("table of") => "empty".to_string(),
                None | Some(Value::Null) => "none".to_string(),
                Some(Value::Object(m)) if m.is_empty() => "empty".to_string(),
                Some(v) => format!("`{}`", toml_value(v)),
            }
        };
        out.push_str(&format!(
            "| `{key}` | {kind} | {default} | {} |\n",
            meaning.replace('|', "\\|")
        ));
    }
}

/// A value's type as a reader says it, and whether it is a section of its own.
fn type_of(defs: &Value, node: &Value) -> (String, bool) {
    if is_section(node) {
        return ("table".into(), true);
    }
    let types: Vec<&str> = match &node["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let t = types.iter().find(|t| **t != "null").copied().unwrap_or("");
    match t {
        "array" => {
            let items = resolve(defs, &node["items"]);
            if is_section(items) {
                return ("array of tables".into(), true);
            }
            (format!("array of {}s", type_of(defs, items).0), false)
        }
        "object" => {
            let values = &node["additionalProperties"];
            let of = if values["type"] == "string" {
                "strings"
            } else {
                "values"
            };
            (format!("table of {of}"), false)
        }
        "" => ("value".into(), false),
        t => (t.to_string(), false),
    }
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => toml_table(m),
        other => other.to_string(),
    }
}

fn toml_table(m: &Map<String, Value>) -> String {
    let inner: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k} = {}", toml_value(v)))
        .collect();
    format!("{{ {} }}", inner.join(", "))
}

/// A doc comment as one paragraph (its line breaks were only wrapping).
fn paragraph(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOW: &str = "regenerate with `cargo run -- config reference > docs/CONFIG.md` and \
                       `cargo run -- config json-schema > docs/job.schema.json`";

    #[test]
    fn the_committed_reference_is_what_the_types_say() {
        let md = markdown().unwrap_or_else(|e| panic!("{e}"));
        let committed = include_str!("../../docs/CONFIG.md");
        assert!(md == committed, "docs/CONFIG.md is out of date: {HOW}");
        let schema = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        let committed = include_str!("../../docs/job.schema.json");
        assert!(
            schema == committed,
            "docs/job.schema.json is out of date: {HOW}"
        );
    }

    #[test]
    fn every_key_of_every_section_is_in_the_reference() {
        let md = markdown().unwrap();
        for key in [
            "| `name` |",
            "## [sink.rotation]",
            "| `max_age` |",
            "### `kind = \"kafka\"`",
            "| `on_gap` |",
            "## [[repo.stages]]",
            "| `max_in_flight` |",
            "## [[repos]]",
            "| `stop_deadline` | string | `\"30s\"` |",
        ] {
            assert!(md.contains(key), "{key} missing:\n{md}");
        }
    }
}
