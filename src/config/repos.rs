//! Several repos in one job file. Each `[[repos]]` entry names a repo and holds the sections
//! (or single keys) it sets for itself; they are merged key by key over the file's shared
//! sections, and the result is checked like a one-repo job file. Each repo becomes its own job:
//! named `<job>.<repo>` (its checkpoints, schema record and default consumer group follow), with
//! its state under `<job.state_dir>/<repo>/`.
//!
//! ```toml
//! [job]
//! name = "edge"
//! [source]
//! kind = "kafka"
//! brokers = "127.0.0.1:9092"
//! [sink]
//! url = "s3://lake/edge/"
//!
//! [[repos]]
//! name = "nginx"
//! source.topics = ["nginx_access"]
//! repo.schema = "schemas/nginx_access.toml"
//!
//! [[repos]]
//! name = "app"
//! source.topics = ["app_logs"]
//! repo.schema = "schemas/app_logs.toml"
//! sink.format = "orc"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{ConfigError, Job, JobFile, SourceSection};

/// Sections every repo shares, which an entry may not set for itself.
const SHARED_ONLY: [&str; 2] = ["admin", "repos"];

pub(super) fn parse_all(text: &str, path: &Path) -> Result<Vec<Job>, ConfigError> {
    let parse_error = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let mut shared: Table = toml::from_str(text)
        .map_err(|e: toml::de::Error| parse_error(e.to_string().trim_end().to_string()))?;
    let Some(entries) = shared.remove("repos") else {
        return Ok(vec![Job::parse(text, path)?]);
    };
    let Value::Array(entries) = entries else {
        return Err(parse_error(
            "`repos` must be an array of tables (`[[repos]]`)".into(),
        ));
    };
    let mut problems = Vec::new();
    if entries.is_empty() {
        problems.push("repos: at least one `[[repos]]` entry is needed".into());
    }
    let mut jobs = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let Value::Table(mut entry) = entry else {
            problems.push(format!("repos[{i}]: must be a table (`[[repos]]`)"));
            continue;
        };
        let name = match entry.remove("name") {
            Some(Value::String(n)) if reserved(&n) => {
                problems.push(format!(
                    "repos[{i}].name: `{n}` names a file or folder a job keeps in its state folder (a repo's state is `<state_dir>/<name>`): another job of one repo sharing the state folder would remove or lock it; choose another name"
                ));
                continue;
            }
            Some(Value::String(n)) if valid_name(&n) => n,
            Some(Value::String(n)) => {
                problems.push(format!(
                    "repos[{i}].name: `{n}` must be letters, digits, `-` or `_`, starting with a letter or digit, at most {} bytes", super::MAX_NAME_BYTES
                ));
                continue;
            }
            _ => {
                problems.push(format!(
                    "repos[{i}].name: required (a string naming the repo)"
                ));
                continue;
            }
        };
        if let Some(first) = seen.insert(name.clone(), i) {
            problems.push(format!(
                "repos[{i}].name: `{name}` is also the name of repos[{first}]"
            ));
            continue;
        }
        let key = |k: &str| format!("repos.{name}.{k}");
        for k in SHARED_ONLY {
            if entry.contains_key(k) {
                problems.push(format!(
                    "{}: shared by every repo of the job; set it at the top level",
                    key(k)
                ));
            }
        }
        if entry
            .get("job")
            .and_then(Value::as_table)
            .is_some_and(|j| j.contains_key("name"))
        {
            problems.push(format!(
                "{}: the job's name is shared; each repo's own is `<job>.{name}`",
                key("job.name")
            ));
        }
        let mut merged = shared.clone();
        merge_entry(&mut merged, entry);
        let file: JobFile = match merged.try_into() {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!(
                    "repos.{name}: {}",
                    e.to_string().trim_end().replace('\n', " ")
                ));
                continue;
            }
        };
        match Job::from_file(file, path) {
            Ok(mut job) => {
                job.file.job.name = format!("{}.{name}", job.file.job.name);
                job.file.job.state_dir = job.file.job.state_dir.join(&name);
                job.repo = Some(name);
                jobs.push(job);
            }
            Err(ps) => problems.extend(ps.into_iter().map(|p| format!("repos.{name}: {p}"))),
        }
    }
    problems.extend(clashes(&jobs));
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        });
    }
    Ok(jobs)
}

/// The job named `repo` among `jobs`, or the only one when `repo` is `None`.
pub(super) fn pick(jobs: Vec<Job>, repo: Option<&str>, path: &Path) -> Result<Job, ConfigError> {
    let names = || {
        jobs.iter()
            .filter_map(|j| j.repo.as_deref())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let problem = match repo {
        None if jobs.len() == 1 => return Ok(jobs.into_iter().next().expect("one job")),
        None => format!(
            "the job file has several repos ({}); name one with --repo",
            names()
        ),
        Some(r) => match jobs.iter().position(|j| j.repo.as_deref() == Some(r)) {
            Some(i) => return Ok(jobs.into_iter().nth(i).expect("found")),
            None if jobs.len() == 1 && jobs[0].repo.is_none() => format!(
                "--repo {r}: the job file has one `[repo]`, not `[[repos]]`; leave --repo out"
            ),
            None => format!("--repo {r}: no such repo (the job file has {})", names()),
        },
    };
    Err(ConfigError::Invalid {
        path: path.to_path_buf(),
        problems: vec![problem],
    })
}

/// What a job of one repo keeps directly in its state folder (its spill, its WAL, its lock,
/// a backfill's id): no repo, whose state is `<state_dir>/<name>`, may be named so (a job
/// sharing the folder removed `spill/` at its graceful stop, a repo's WAL with it).
fn reserved(n: &str) -> bool {
    ["spill", "wal", "lock", "backfill-id"]
        .iter()
        .any(|r| n.eq_ignore_ascii_case(r))
}

/// Letters, digits, `-` and `_`, starting with a letter or digit (a repo's name starts its
/// files' names, and readers skip files starting with `_`).
pub fn valid_name(n: &str) -> bool {
    n.len() <= super::MAX_NAME_BYTES
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Merges an entry over the shared sections. A `[source]` of another kind replaces the
/// shared one whole (its keys would not fit), and a dead-letter `topic` or `url` replaces the
/// other.
fn merge_entry(base: &mut Table, mut over: Table) {
    let kind = |t: &Table| {
        t.get("source")
            .and_then(Value::as_table)
            .and_then(|s| s.get("kind"))
            .cloned()
    };
    if kind(&over).is_some() && kind(&over) != kind(base) {
        if let Some(source) = over.remove("source") {
            base.insert("source".into(), source);
        }
    }
    if let (Some(Value::Table(shared)), Some(Value::Table(own))) =
        (base.get_mut("dead_letters"), over.get("dead_letters"))
    {
        for (this, other) in [("topic", "url"), ("url", "topic")] {
            if own.contains_key(this) {
                shared.remove(other);
            }
        }
        if own.contains_key("url") {
            shared.remove("brokers");
            shared.remove("options");
        }
    }
    merge(base, over);
}

/// Merges `over` into `base`: tables key by key, anything else replaced.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// What several repos may not share: a consumer group (their rebalances would stall each
/// other), or a WAL folder.
fn clashes(jobs: &[Job]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut groups: BTreeMap<String, &str> = BTreeMap::new();
    let mut wals: BTreeMap<PathBuf, &str> = BTreeMap::new();
    for job in jobs {
        let name = job.repo.as_deref().unwrap_or_default();
        match &job.file.source {
            SourceSection::Kafka { .. } => {
                let g = job.kafka_group().expect("a Kafka job has a group");
                if let Some(other) = groups.insert(g.clone(), name) {
                    problems.push(format!(
                        "repos.{name}.source.group: `{g}` is also repo {other}'s; each repo needs its own consumer group (leave it out for `sluice-<job>.<repo>`)"
                    ));
                }
            }
            // Explicit or not: one set to another repo's default folder is a clash too.
            SourceSection::Push { wal_dir, .. } => {
                let folder = super::wal_folder(job, wal_dir.as_deref());
                if let Some(other) = wals.insert(normal(&folder), name) {
                    problems.push(format!(
                        "repos.{name}.source.wal_dir: `{}` is also repo {other}'s WAL folder; each repo needs its own (leave it out for `<state_dir>/<repo>/wal`)",
                        folder.display()
                    ));
                }
            }
            _ => {}
        }
    }
    problems
}

/// `path` without `.` segments and with `..` applied, for comparing paths as written.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[job]
name = "edge"
[source]
kind = "kafka"
brokers = "127.0.0.1:9092"
topics = ["unused"]
[repo]
on_error = "drop"
[sink]
url = "out/"
format = "parquet"
[sink.rotation]
max_rows = 100
[admin]
listen = "127.0.0.1:0"

[[repos]]
name = "nginx"
source.topics = ["nginx_access"]
repo.schema = "schemas/nginx_access.toml"

[[repos]]
name = "app"
source = { topics = ["app"], group = "g-app" }
repo = { schema = "schemas/app.toml", on_error = "fail" }
sink = { url = "s3://lake/app/", format = "orc", rotation = { idle = "5s" } }
"#;

    /// A repo named after what a job of one repo keeps in its state folder is refused: a job
    /// sharing the folder removed `spill/` (the repo's WAL and spill with it) at its stop.
    #[test]
    fn a_repo_named_after_a_state_file_is_refused() {
        for name in ["spill", "WAL", "lock", "backfill-id"] {
            let text = TWO.replace("name = \"app\"", &format!("name = \"{name}\""));
            let e = match Job::parse_all(&text, Path::new("/etc/sluice/edge.toml")) {
                Ok(_) => panic!("{name}: accepted"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains("state folder"), "{name}: {e}");
        }
    }

    #[test]
    fn entries_merge_over_the_shared_sections() {
        let jobs = Job::parse_all(TWO, Path::new("/etc/sluice/edge.toml")).unwrap();
        assert_eq!(jobs.len(), 2);
        let (n, a) = (&jobs[0], &jobs[1]);
        assert_eq!(n.repo.as_deref(), Some("nginx"));
        assert_eq!(n.file.job.name, "edge.nginx");
        assert_eq!(
            n.file.job.state_dir,
            Path::new("./sluice-state").join("nginx")
        );
        assert_eq!(n.file.repo.on_error, "drop");
        assert_eq!(n.file.sink.url, "out/");
        assert_eq!(a.file.job.name, "edge.app");
        assert_eq!(a.file.repo.on_error, "fail");
        assert_eq!(a.file.sink.url, "s3://lake/app/");
        assert_eq!(a.format.kind.name(), "orc");
        // Nested tables merge key by key: the shared max_rows stays, idle is the entry's.
        assert_eq!(a.file.sink.rotation.max_rows, 100);
        assert_eq!(a.idle, std::time::Duration::from_secs(5));
        let SourceSection::Kafka { topics, group, .. } = &a.file.source else {
            panic!("kafka")
        };
        assert_eq!(topics, &["app"]);
        assert_eq!(group.as_deref(), Some("g-app"));
        assert!(n.file.admin.is_some());
    }

    #[test]
    fn picking_one_repo() {
        let path = Path::new("edge.toml");
        let jobs = || Job::parse_all(TWO, path).unwrap();
        assert_eq!(
            pick(jobs(), Some("app"), path).unwrap().file.job.name,
            "edge.app"
        );
        let e = pick(jobs(), None, path).unwrap_err().to_string();
        assert!(
            e.contains("several repos (nginx, app); name one with --repo"),
            "{e}"
        );
        let e = pick(jobs(), Some("web"), path).unwrap_err().to_string();
        assert!(
            e.contains("--repo web: no such repo (the job file has nginx, app)"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_names_its_repo() {
        let bad = TWO
            .replace("name = \"app\"", "name = \"nginx\"")
            .replace(
                "repo.schema = \"schemas/nginx_access.toml\"",
                "repo.schema = \"s.toml\"\nsink.workers = 0\nadmin = { listen = \"x\" }\njob.name = \"x\"",
            );
        let e = Job::parse_all(&bad, Path::new("j.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("repos.nginx: sink.workers: must be positive"),
            "{e}"
        );
        assert!(
            e.contains("repos[1].name: `nginx` is also the name of repos[0]"),
            "{e}"
        );
        assert!(e.contains("repos.nginx.admin: shared by every repo"), "{e}");
        assert!(
            e.contains("repos.nginx.job.name: the job's name is shared"),
            "{e}"
        );

        let typo = TWO.replace(
            "source.topics = [\"nginx_access\"]",
            "source.topicz = [\"x\"]",
        );
        let e = Job::parse_all(&typo, Path::new("j.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("repos.nginx:") && e.contains("topicz"), "{e}");

        let shared_group = TWO.replace("[source]\n", "[source]\ngroup = \"g-app\"\n");
        let e = Job::parse_all(&shared_group, Path::new("j.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("each repo needs its own consumer group"), "{e}");

        let e = Job::parse_all(
            "repos = []\n[job]\nname = \"x\"\n[source]\nkind = \"file\"\npaths = []\n[sink]\nurl = \"o\"\n",
            Path::new("j.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("at least one `[[repos]]` entry"), "{e}");
    }

    #[test]
    fn merge_edge_cases() {
        let path = Path::new("/etc/sluice/j.toml");
        // Another source kind replaces the shared source whole.
        let push = TWO.replace(
            "source = { topics = [\"app\"], group = \"g-app\" }",
            "source = { kind = \"push\", wal_dir = \"wal\" }",
        );
        let jobs = Job::parse_all(&push, path).unwrap();
        assert!(matches!(jobs[1].file.source, SourceSection::Push { .. }));
        // A WAL folder written two ways is still one folder.
        let two_wals = push.replace(
            "source.topics = [\"nginx_access\"]",
            "source = { kind = \"push\", wal_dir = \"./x/../wal\" }",
        );
        let e = Job::parse_all(&two_wals, path).unwrap_err().to_string();
        assert!(e.contains("repos.app.source.wal_dir"), "{e}");
        // One repo's WAL folder set to where another's is by default.
        let on_default = push
            .replace(
                "source.topics = [\"nginx_access\"]",
                "source = { kind = \"push\" }",
            )
            .replace("wal_dir = \"wal\"", "wal_dir = \"sluice-state/nginx/wal\"");
        let e = Job::parse_all(&on_default, path).unwrap_err().to_string();
        assert!(
            e.contains("repos.app.source.wal_dir") && e.contains("also repo nginx's WAL folder"),
            "{e}"
        );
        // A dead-letter topic of a repo replaces the shared files url.
        let dlq = TWO
            .replace(
                "[repo]\non_error",
                "[dead_letters]\nurl = \"dl/\"\n[repo]\non_error",
            )
            .replace(
                "repo.schema = \"schemas/nginx_access.toml\"",
                "repo.schema = \"schemas/nginx_access.toml\"\ndead_letters.topic = \"dlq\"",
            );
        let jobs = Job::parse_all(&dlq, path).unwrap();
        assert_eq!(jobs[0].file.dead_letters.topic.as_deref(), Some("dlq"));
        assert_eq!(jobs[0].file.dead_letters.url, None);
        assert_eq!(jobs[1].file.dead_letters.url.as_deref(), Some("dl/"));
        // An explicit group that is another repo's default one.
        let taken = TWO.replace("group = \"g-app\"", "group = \"sluice-edge.nginx\"");
        let e = Job::parse_all(&taken, path).unwrap_err().to_string();
        assert!(
            e.contains("`sluice-edge.nginx` is also repo nginx's"),
            "{e}"
        );
        let hidden = TWO.replace("name = \"app\"", "name = \"_app\"");
        let e = Job::parse_all(&hidden, path).unwrap_err().to_string();
        assert!(e.contains("starting with a letter or digit"), "{e}");
    }

    #[test]
    fn a_one_repo_file_is_one_job_without_a_repo_name() {
        let text = TWO.split("[[repos]]").next().unwrap().replace(
            "on_error = \"drop\"",
            "on_error = \"drop\"\nschema = \"s.toml\"",
        );
        let jobs = Job::parse_all(&text, Path::new("j.toml")).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].repo, None);
        assert_eq!(jobs[0].file.job.name, "edge");
    }
}
