//! `sluice schema infer`: the schema it prints from a sample validates and converts that
//! sample with no dead letters, with types widened across conflicting rows.

use std::path::Path;

use crate::helpers::*;

/// Infers, checks and converts `sample`; returns the schema text.
/// Infers `sample`'s schema, checks it and converts the sample with it; `extra` are given to
/// both commands (a CSV delimiter).
fn infer_check_convert(dir: &Path, sample: &Path, name: &str, extra: &[&str]) -> String {
    let mut infer = vec![
        "schema",
        "infer",
        "--input",
        sample.to_str().unwrap(),
        "--name",
        name,
    ];
    infer.extend_from_slice(extra);
    let toml = sluice_ok(&infer);
    let schema = dir.join(format!("{name}.toml"));
    std::fs::write(&schema, &toml).unwrap();
    let check = sluice_ok(&["schema", "check", schema.to_str().unwrap()]);
    assert!(check.contains("is valid"), "{check}\n{toml}");
    let out = dir.join(format!("out-{name}"));
    let mut convert = vec![
        "convert",
        "--schema",
        schema.to_str().unwrap(),
        "--input",
        sample.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    convert.extend_from_slice(extra);
    let summary = sluice_ok(&convert);
    assert!(summary.contains(" 0 dead letters"), "{summary}\n{toml}");
    toml
}

/// The entry of field `name`: from its `[[...]]` line up to the next entry.
fn entry<'a>(toml: &'a str, name: &str) -> &'a str {
    let at = toml
        .find(&format!("name = \"{name}\""))
        .unwrap_or_else(|| panic!("no field {name} in\n{toml}"));
    let start = toml[..at].rfind("[[").unwrap_or(0);
    let rest = &toml[at..];
    &toml[start..at + rest.find("\n[[").unwrap_or(rest.len())]
}

#[test]
fn inferred_json_schemas_widen_conflicts_and_convert_their_sample_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("mixed.jsonl");
    let mut text = String::new();
    for i in 0..500 {
        // `code` is a number, then a string; `ratio` an integer, then a fraction; `note` is
        // missing from odd rows; `user` is an object; `tags` a list; `created_at` epoch ms.
        let code = if i < 250 {
            format!("{i}")
        } else {
            format!("\"E{i}\"")
        };
        let ratio = if i % 3 == 0 {
            format!("{i}")
        } else {
            format!("{i}.5")
        };
        let note = if i % 2 == 0 {
            format!(",\"note\":\"n{i}\"")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{{\"ts\":\"2024-05-01T00:00:{:02}Z\",\"code\":{code},\"ratio\":{ratio}{note},\
             \"user\":{{\"id\":{i},\"name\":\"u{i}\"}},\"tags\":[{i},{}],\
             \"created_at\":{},\"maybe\":null}}\n",
            i % 60,
            i + 1,
            1_714_521_600_000u64 + i as u64
        ));
    }
    std::fs::write(&sample, text).unwrap();
    let toml = infer_check_convert(dir.path(), &sample, "mixed", &[]);
    assert!(
        entry(&toml, "ts").contains("type = \"timestamp\""),
        "{toml}"
    );
    assert!(
        entry(&toml, "ts").contains("format = \"rfc3339\""),
        "{toml}"
    );
    assert!(entry(&toml, "code").contains("type = \"string\""), "{toml}");
    assert!(
        entry(&toml, "ratio").contains("type = \"float64\""),
        "{toml}"
    );
    assert!(!entry(&toml, "note").contains("nullable = false"), "{toml}");
    assert!(
        entry(&toml, "note").contains("in 250 of 500 rows"),
        "{toml}"
    );
    assert!(entry(&toml, "user").contains("type = \"struct\""), "{toml}");
    assert!(toml.contains("[[fields.fields]]"), "{toml}");
    assert!(
        entry(&toml, "tags").contains("type = \"list<int64>\""),
        "{toml}"
    );
    assert!(
        entry(&toml, "created_at").contains("format = \"epoch_ms\""),
        "{toml}"
    );
    assert!(
        !entry(&toml, "maybe").contains("nullable = false"),
        "{toml}"
    );
}

/// The top-level field names of a schema, in order.
fn field_names(toml: &str) -> Vec<String> {
    let lines: Vec<&str> = toml.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[fields]]")
        .filter_map(|(i, _)| {
            lines[i + 1..]
                .iter()
                .find_map(|l| l.strip_prefix("name = \""))
                .map(|n| n.trim_end_matches('"').to_string())
        })
        .collect()
}

/// Fields follow the sample's order (its first row's keys, as a reader of the files expects
/// their columns), not the alphabetical order of a JSON map.
#[test]
fn inferred_fields_keep_the_samples_order() {
    let dir = tempfile::tempdir().unwrap();
    let sample = fixture("nginx_access.jsonl");
    let first = std::fs::read_to_string(&sample).unwrap();
    let first = first.lines().next().unwrap();
    // The fixture is flat: each key is a string followed by a colon.
    let pieces: Vec<&str> = first.split("\":").collect();
    let keys: Vec<String> = pieces[..pieces.len() - 1]
        .iter()
        .filter_map(|before| before.rsplit_once('"').map(|(_, k)| k.to_string()))
        .collect();
    assert!(keys.len() > 5 && keys[0] == "ts", "{keys:?}");
    let toml = infer_check_convert(dir.path(), &sample, "ordered", &[]);
    assert_eq!(field_names(&toml), keys, "{toml}");
}

#[test]
fn inferred_csv_schemas_type_text_columns() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("people.csv");
    let mut text = String::from("id,name,score,active,seen\n");
    for i in 0..300 {
        let score = if i % 10 == 0 {
            String::new()
        } else {
            format!("{i}.25")
        };
        text.push_str(&format!(
            "{i},\"Name, {i}\",{score},{},2024-05-01 10:00:{:02}\n",
            i % 2 == 0,
            i % 60
        ));
    }
    std::fs::write(&sample, &text).unwrap();
    // The same, `;`-separated (as many European locales write CSV), with its delimiter.
    let semi = dir.path().join("semi.csv");
    std::fs::write(&semi, text.replace(',', ";")).unwrap();
    let toml = infer_check_convert(dir.path(), &semi, "people", &["--delimiter", ";"]);
    assert_eq!(
        field_names(&toml),
        ["id", "name", "score", "active", "seen"]
    );
    let toml = infer_check_convert(dir.path(), &sample, "people", &[]);
    assert_eq!(
        field_names(&toml),
        ["id", "name", "score", "active", "seen"]
    );
    assert!(entry(&toml, "id").contains("type = \"int64\""), "{toml}");
    assert!(entry(&toml, "name").contains("type = \"string\""), "{toml}");
    assert!(
        entry(&toml, "score").contains("type = \"float64\""),
        "{toml}"
    );
    assert!(
        !entry(&toml, "score").contains("nullable = false"),
        "{toml}"
    );
    assert!(entry(&toml, "active").contains("type = \"bool\""), "{toml}");
    assert!(
        entry(&toml, "seen").contains("format = \"%Y-%m-%d %H:%M:%S\""),
        "{toml}"
    );
}

#[test]
fn a_schema_inferred_from_a_topic_reads_every_partition_to_its_end() {
    let c = crate::kafka::cluster("sample");
    let bootstrap = c.bootstrap_servers();
    crate::kafka::produce_events(&bootstrap, "sample", 0, 400, 4, None);
    let toml = sluice_ok(&[
        "schema", "infer", "--kafka", &bootstrap, "--topic", "sample",
    ]);
    assert!(toml.contains(": 400 rows"), "{toml}");
    assert!(toml.contains("name = \"sample\""), "{toml}");
    assert!(
        entry(&toml, "ts").contains("type = \"timestamp\""),
        "{toml}"
    );
    assert!(
        entry(&toml, "status").contains("type = \"int64\""),
        "{toml}"
    );
    assert!(
        entry(&toml, "trace_id").contains("in 400 of 400 rows"),
        "{toml}"
    );
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("sample.toml");
    std::fs::write(&schema, &toml).unwrap();
    sluice_ok(&["schema", "check", schema.to_str().unwrap()]);
    // A topic that does not exist is a clear error.
    let o = sluice(&["schema", "infer", "--kafka", &bootstrap, "--topic", "nope"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A record past the 64 MiB record limit is no sample: a JSON one is passed over (the
/// records after it are the sample), and a CSV header that long is refused by name. The
/// header used to be taken from the line after it.
#[test]
fn a_record_past_the_record_limit_is_no_sample() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(65 << 20);
    let json = dir.path().join("long.jsonl");
    std::fs::write(&json, format!("{{\"s\":\"{long}\"}}\n{{\"n\":1}}\n")).unwrap();
    let toml = sluice_ok(&["schema", "infer", "--input", json.to_str().unwrap()]);
    assert_eq!(field_names(&toml), ["n"], "{toml}");
    let csv = dir.path().join("long.csv");
    std::fs::write(&csv, format!("{long}\na\n1\n")).unwrap();
    let out = sluice(&["schema", "infer", "--input", csv.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("header is longer than the 64 MiB record limit"),
        "{err}"
    );
}
