//! The generated JSON Schema of a job file (`docs/job.schema.json`, `sluice config
//! json-schema`) checked by an independent validator (Python `jsonschema`, draft 2020-12):
//! every shipped job file passes, and a misspelled key or a wrong type fails, as `sluice
//! validate` says.

use std::process::Command;

use crate::helpers::*;

const CHECK: &str = r#"
import json, sys, tomllib
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema)
for path in sys.argv[2:]:
    errors = sorted(e.message for e in v.iter_errors(tomllib.load(open(path, "rb"))))
    print(path, "OK" if not errors else "INVALID: " + "; ".join(errors))
"#;

#[test]
fn shipped_job_files_pass_the_json_schema_and_mistakes_fail_it() {
    let Some(py) = python() else { return };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = root.join("docs/job.schema.json");
    // What `sluice config json-schema` prints is what is committed.
    let printed = sluice_ok(&["config", "json-schema"]);
    assert_eq!(
        printed,
        std::fs::read_to_string(&schema).unwrap(),
        "docs/job.schema.json is out of date: cargo run -- config json-schema > docs/job.schema.json"
    );
    let mut files: Vec<_> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(root.join("examples/file_job.toml")).unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, good.replace("[sink]\n", "[sink]\nworkerz = 2\n")).unwrap();
    let wrong_type = dir.path().join("wrong_type.toml");
    std::fs::write(
        &wrong_type,
        good.replace("[sink]\n", "[sink]\nmax_open_files = \"many\"\n"),
    )
    .unwrap();
    assert!(good.contains("[sink]\n"));
    let multi = std::fs::read_to_string(root.join("examples/multi_job.toml")).unwrap();
    let entry_typo = dir.path().join("entry_typo.toml");
    assert!(multi.contains("sink.format = \"json\""));
    std::fs::write(
        &entry_typo,
        multi.replace("sink.format = \"json\"", "sink.formatt = \"json\""),
    )
    .unwrap();
    // The job's name is shared by every repo: an entry may not set it.
    let entry_name = dir.path().join("entry_name.toml");
    assert!(multi.contains("name = \"orders\"\n"));
    std::fs::write(
        &entry_name,
        multi.replace(
            "name = \"orders\"\n",
            "name = \"orders\"\njob.name = \"other\"\n",
        ),
    )
    .unwrap();
    let out = Command::new(&py)
        .args(["-c", CHECK])
        .arg(&schema)
        .args(&files)
        .args([&typo, &wrong_type, &entry_typo, &entry_name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in &files {
        assert!(
            text.contains(&format!("{} OK", f.display())),
            "{}: {text}",
            f.display()
        );
    }
    assert!(
        text.contains("typo.toml INVALID") && text.contains("workerz"),
        "{text}"
    );
    assert!(text.contains("wrong_type.toml INVALID"), "{text}");
    assert!(text.contains("entry_typo.toml INVALID"), "{text}");
    assert!(text.contains("entry_name.toml INVALID"), "{text}");
    // sluice itself refuses them, too.
    for f in [&typo, &wrong_type, &entry_typo, &entry_name] {
        let o = sluice(&["validate", f.to_str().unwrap()]);
        assert!(!o.status.success(), "{}", f.display());
    }
}
