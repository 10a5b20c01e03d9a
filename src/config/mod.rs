//! Job files (`sluice.toml`) → typed, validated configuration.
//!
//! Unknown keys are errors (serde `deny_unknown_fields`); values are checked after parsing and
//! every problem is reported with its key path (`sink.rotation.max_rows: must be positive`).

use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod reference;
mod sections;
mod spans;
pub use sections::{
    AdminSection, ChannelSection, DeadLetterSection, JobFile, JobSection, PartitionSection,
    RepoSection, RotationSection, SinkSection, MAX_OPEN_FILES,
};
pub mod repos;
mod values;
pub use values::{parse_bytes, parse_duration, PassThrough, MAX_BYTES, MAX_DURATION};
mod source;

pub use source::{consumer_only, max_in_flight, Durability, SourceSection};

use crate::decode::InputKind;
use crate::format::{Codec, Dictionary, FormatKind, FormatOptions, ParquetEncodings};

/// Errors from loading a job file. `Invalid` lists every problem found, one per line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read job file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("job file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("job file {path} has {} error(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// The longest job name, repo name or backfill name (`--name`), in bytes: a repo's job is
/// named `<job>.<repo>`, and its backfill `<job>.<repo>-backfill`, a folder name in the
/// destination (`_sluice/<name>/`), which a file system holds up to 255 bytes.
pub const MAX_NAME_BYTES: usize = 100;

/// A loaded, validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub file: JobFile,
    /// The job file's folder: relative paths in the file are resolved against it.
    pub base: PathBuf,
    pub path: PathBuf,
    pub input: InputKind,
    pub format: FormatOptions,
    /// The table the files make up (`[sink] table`).
    pub table: crate::table::TableKind,
    pub channel_bytes: usize,
    pub max_file_bytes: u64,
    pub max_buffered_bytes: u64,
    pub max_span: Option<Duration>,
    pub idle: Duration,
    pub max_age: Duration,
    pub stop_deadline: Duration,
    /// The longest wait for the dead-letter topic's brokers.
    pub dead_letter_timeout: Duration,
    /// The repo's name in a job file with several repos (`[[repos]]`); `None` for a job
    /// file with one `[repo]`, whose repo is named by its schema.
    pub repo: Option<String>,
    /// A bounded run (backfill) over this range of every partition; `None`: a live run.
    pub range: Option<crate::source::kafka::Range>,
    /// `run --move-wal-damage`: a WAL damaged before its end is opened after moving the
    /// damaged part aside (into `damaged/` in the WAL folder) instead of refused.
    pub move_wal_damage: bool,
    /// The repo schema this job runs with, read once when the job is taken up for a run
    /// ([`Job::pin_schema`]): a task restarted after a failure runs with it too, so an edit of
    /// the schema file takes effect only through a reload, which checks it first. `None`
    /// until then (each run reads the file, and reports why it cannot).
    pub schema: Option<std::sync::Arc<crate::schema::RepoSchema>>,
}

/// The WAL folder of a push job: `source.wal_dir`, else `<state_dir>/wal`.
pub fn wal_folder(job: &Job, wal_dir: Option<&Path>) -> PathBuf {
    match wal_dir {
        Some(d) => job.resolve(d),
        None => job.resolve(&job.file.job.state_dir).join("wal"),
    }
}

impl Job {
    /// The job file at `path`, which must hold one repo (see [`Job::load_repo`]).
    pub fn load(path: &Path) -> Result<Job, ConfigError> {
        Self::load_repo(path, None)
    }

    /// A job file with one repo; for a file with `[[repos]]`, see [`Job::parse_all`].
    pub fn parse(text: &str, path: &Path) -> Result<Job, ConfigError> {
        let file: JobFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: spans::shown(text, &e),
        })?;
        Self::from_file(file, path).map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// Every repo of a job file: one for a file with `[repo]`, one per entry for `[[repos]]`.
    pub fn parse_all(text: &str, path: &Path) -> Result<Vec<Job>, ConfigError> {
        repos::parse_all(text, path)
    }

    /// Every repo of the job file at `path`.
    pub fn load_all(path: &Path) -> Result<Vec<Job>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_all(&text, path)
    }

    /// The repo named `repo` of the job file at `path`, or its only repo when `None`.
    pub fn load_repo(path: &Path, repo: Option<&str>) -> Result<Job, ConfigError> {
        repos::pick(Self::load_all(path)?, repo, path)
    }

    /// Checks a parsed job file; the problems, each with its key path, when it is not valid.
    fn from_file(file: JobFile, path: &Path) -> Result<Job, Vec<String>> {
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut problems = Vec::new();
        let mut check = |key: &str, r: Result<(), String>| {
            if let Err(e) = r {
                problems.push(format!("{key}: {e}"));
            }
        };
        check("job.name", {
            let n = &file.job.name;
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                Err(format!("`{n}` must be letters, digits, `-` or `_`"))
            } else if n.len() > MAX_NAME_BYTES {
                Err(format!(
                    "is {} bytes; at most {MAX_NAME_BYTES} (it names the job's folders, with a repo's name and `-backfill` added)",
                    n.len()
                ))
            } else {
                Ok(())
            }
        });
        let stop_deadline = parse_duration(&file.job.stop_deadline);
        check(
            "job.stop_deadline",
            stop_deadline.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        if let (Ok(deadline), SourceSection::Kafka { options, .. }) = (&stop_deadline, &file.source)
        {
            // A revocation waits up to the stop deadline inside the consumer's poll: past
            // `max.poll.interval.ms` the member would leave the group in the middle of it.
            let poll_ms = options
                .get("max.poll.interval.ms")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(300_000);
            check(
                "job.stop_deadline",
                if (deadline.as_millis() as u64) < poll_ms {
                    Ok(())
                } else {
                    Err(format!(
                        "{} must be shorter than the consumer's max.poll.interval.ms ({poll_ms} \
                         ms): a revocation may take this long inside the poll",
                        file.job.stop_deadline
                    ))
                },
            );
        }
        let input = file.source.validate(file.admin.is_some(), &mut check);
        if let Some(a) = &file.admin {
            check(
                "admin.listen",
                match a.listen.parse::<std::net::SocketAddr>() {
                    Err(e) => Err(format!("`{}`: {e} (expected ip:port)", a.listen)),
                    Ok(addr) if !addr.ip().is_loopback() && a.token.is_none() && !a.insecure => {
                        Err(format!(
                            "`{}` is reachable from other hosts and no `admin.token` is set: \
                             anyone who reaches it could stop the job or push data. Set a \
                             token, listen on 127.0.0.1, or set `admin.insecure = true`",
                            a.listen
                        ))
                    }
                    Ok(_) => Ok(()),
                },
            );
            if a.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
                check("admin.token", Err("must not be empty".into()));
            } else if a.token.as_deref().is_some_and(|t| {
                t.trim() != t || !t.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            }) {
                // A header value loses its ends' spaces and holds no other bytes: such a
                // token could never be given.
                check(
                    "admin.token",
                    Err("must be printable ASCII, without spaces at its ends (no request could send it)".into()),
                );
            }
        }
        check(
            "repo.on_error",
            crate::stage::OnError::parse(&file.repo.on_error).map(|_| ()),
        );
        let dead = &file.dead_letters;
        // librdkafka takes timeouts as 32-bit milliseconds.
        let dead_letter_timeout = parse_duration(&dead.timeout).and_then(|d| {
            if d > Duration::from_secs(86400) {
                Err(format!("`{}` is longer than a day", dead.timeout))
            } else {
                Ok(d)
            }
        });
        check(
            "dead_letters.timeout",
            dead_letter_timeout
                .as_ref()
                .map(|_| ())
                .map_err(Clone::clone),
        );
        check("dead_letters", {
            let kafka = matches!(file.source, SourceSection::Kafka { .. });
            match &dead.topic {
                Some(_) if dead.url.is_some() => {
                    Err("`url` (files) and `topic` (Kafka) are two places; set one".into())
                }
                Some(t) if t.is_empty() => Err("topic: must not be empty".into()),
                Some(_) if dead.brokers.is_none() && !kafka => {
                    Err("brokers: needed for the topic when the source is not Kafka".into())
                }
                None if dead.brokers.is_some() || !dead.options.is_empty() => Err(
                    "`brokers` and `options` are for a dead-letter `topic`, which is not set"
                        .into(),
                ),
                Some(_) => weaker_acks(&dead.options),
                _ => Ok(()),
            }
        });
        if let Some(u) = &dead.url {
            check("dead_letters.url", scheme_without_slashes(u));
        }
        let channel_bytes = parse_bytes(&file.channel.max_bytes);
        check(
            "channel.max_bytes",
            channel_bytes.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        check(
            "channel.max_batches",
            positive(file.channel.max_batches as u64),
        );
        check(
            "channel.batch_rows",
            positive(file.channel.batch_rows as u64),
        );
        check("sink.workers", positive(file.sink.workers as u64));
        // Read by the store's builder at each start; a misspelled key is the file's error.
        check(
            "sink.storage",
            <crate::store::remote::StoreOptions as serde::Deserialize>::deserialize(
                toml::Value::Table(file.sink.storage.clone()),
            )
            .map(|_| ())
            .map_err(|e| e.to_string()),
        );
        check(
            "sink.max_open_files",
            positive(file.sink.max_open_files as u64).and_then(|()| {
                if file.sink.max_open_files > MAX_OPEN_FILES {
                    Err(format!(
                        "at most {}: a commit names every file open, and its records must \
                         stay within what is read back",
                        MAX_OPEN_FILES
                    ))
                } else {
                    Ok(())
                }
            }),
        );
        check(
            "sink.rotation.max_rows",
            positive(file.sink.rotation.max_rows),
        );
        let max_file_bytes = parse_bytes(&file.sink.rotation.max_bytes);
        check(
            "sink.rotation.max_bytes",
            max_file_bytes.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let max_buffered = parse_bytes(&file.sink.max_buffered_bytes);
        check(
            "sink.max_buffered_bytes",
            max_buffered.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let max_span = file.sink.rotation.max_span.as_deref().map(parse_duration);
        if let Some(Err(e)) = &max_span {
            check("sink.rotation.max_span", Err(e.clone()));
        }
        let idle = parse_duration(&file.sink.rotation.idle);
        check(
            "sink.rotation.idle",
            idle.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let max_age = parse_duration(&file.sink.rotation.max_age);
        check(
            "sink.rotation.max_age",
            max_age.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let format = sink_format(&file.sink);
        check("sink", format.as_ref().map(|_| ()).map_err(Clone::clone));
        let table = match file.sink.table.as_str() {
            "none" => Ok(crate::table::TableKind::None),
            "delta" if file.sink.format != "parquet" => Err(format!(
                "`delta` tables hold Parquet files; `format` is `{}`",
                file.sink.format
            )),
            "delta" => match file.sink.delta.checkpoint_every {
                0 => Err("delta.checkpoint_every must be positive".to_string()),
                n => Ok(crate::table::TableKind::Delta {
                    checkpoint_every: n,
                }),
            },
            other => Err(format!("`{other}` (expected none or delta)")),
        };
        check(
            "sink.table",
            table.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        check("sink.url", {
            let u = &file.sink.url;
            if u.is_empty() {
                Err("must not be empty".into())
            } else {
                scheme_without_slashes(u)
            }
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Job {
            repo: None,
            base,
            path: path.to_path_buf(),
            input,
            format: format.expect("checked"),
            table: table.expect("checked"),
            channel_bytes: channel_bytes.expect("checked") as usize,
            max_file_bytes: max_file_bytes.expect("checked"),
            max_buffered_bytes: max_buffered.expect("checked"),
            max_span: max_span.map(|r| r.expect("checked")),
            idle: idle.expect("checked"),
            max_age: max_age.expect("checked"),
            stop_deadline: stop_deadline.expect("checked"),
            dead_letter_timeout: dead_letter_timeout.expect("checked"),
            range: None,
            move_wal_damage: false,
            schema: None,
            file,
        })
    }

    /// Reads the repo schema once, if not yet ([`Job::schema`]); one that cannot be read or
    /// is not valid stays unread, for the run to report.
    pub fn pin_schema(&mut self) {
        if self.schema.is_none() {
            let path = self.resolve(&self.file.repo.schema);
            self.schema = crate::schema::RepoSchema::load(&path)
                .ok()
                .map(std::sync::Arc::new);
        }
    }

    /// Resolves a path from the job file against the job file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The destination URL with relative local paths resolved against the job file's folder.
    pub fn resolve_url(&self, url: &str) -> String {
        resolve_url_against(&self.base, url)
    }

    /// A Kafka job's consumer group: `source.group`, else `sluice-<job name>` (a repo's job
    /// name holds its repo); `None` for other sources.
    pub fn kafka_group(&self) -> Option<String> {
        match &self.file.source {
            SourceSection::Kafka { group, .. } => Some(
                group
                    .clone()
                    .unwrap_or_else(|| format!("sluice-{}", self.file.job.name)),
            ),
            _ => None,
        }
    }
}

/// A dead-letter producer's `acks` weaker than `all`: a dead letter the broker acknowledged
/// could be lost after the commit that counts it (the commit waits for that answer).
fn weaker_acks(options: &PassThrough) -> Result<(), String> {
    for key in ["acks", "request.required.acks"] {
        if let Some(v) = options
            .get(key)
            .filter(|v| !matches!(v.as_str(), "all" | "-1"))
        {
            return Err(format!(
                "options.{key} = \"{v}\": a dead letter acknowledged by the leader alone (or not at all) can be lost after the commit that counts it; dead letters are sent with acks = all"
            ));
        }
    }
    Ok(())
}

/// `url` with a relative local path (plain, or after `file://`) resolved against `base`;
/// absolute paths and other schemes as they are.
pub fn resolve_url_against(base: &Path, url: &str) -> String {
    let local = match file_url_path(url) {
        Some(rest) => rest,
        None if url.contains("://") => return url.to_string(),
        None => url,
    };
    if Path::new(local).is_absolute() {
        url.to_string()
    } else {
        base.join(local).display().to_string()
    }
}

/// A URL of a scheme sluice writes to, written without `//` (`file:out/`, `s3:bucket/x`), or
/// of a scheme it does not know followed by `/` (`htp:/x`, a typing slip): as a path each
/// would name a local folder called so. `file://` names no folder. A plain folder name with
/// a colon (`out:2024/`) is one.
fn scheme_without_slashes(url: &str) -> Result<(), String> {
    const SCHEMES: [&str; 9] = [
        "file", "s3", "s3a", "gs", "az", "abfs", "abfss", "hdfs", "memory",
    ];
    if file_url_path(url).is_some_and(|p| p.trim_end_matches('/').is_empty() && !p.starts_with('/'))
    {
        return Err(format!("`{url}` names no folder: `file://./out/` for `out/` here, `file:///data/out/` for an absolute path"));
    }
    let scheme_like = |s: &str| {
        s.len() > 1
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    };
    match url.split_once(':') {
        Some((s, rest))
            if SCHEMES.contains(&s.to_ascii_lowercase().as_str()) && !rest.starts_with("//") =>
        {
            Err(format!(
                "`{url}` is read as a local folder of that name: write `{s}://…` (`file://./out/` or a plain path for a folder here)"
            ))
        }
        Some((s, rest)) if scheme_like(s) && rest.starts_with('/') && !rest.starts_with("//") => {
            Err(format!(
                "`{url}` looks like a URL of scheme `{s}:`, which sluice does not write to (file://, s3://, gs://, az://, abfss://, hdfs://); a local folder of that name is `./{url}`"
            ))
        }
        _ => Ok(()),
    }
}

/// The path of a `file://` URL: `file:///data/out/` and `file://localhost/data/out/` (RFC
/// 8089) name `/data/out/`; `file://out/` and `file://./out/` are taken as the relative path
/// `out/`. None for other URLs.
pub fn file_url_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("file://")?;
    // Host names are case-insensitive.
    Some(match rest.get(..9) {
        Some(host) if host.eq_ignore_ascii_case("localhost") && rest[9..].starts_with('/') => {
            &rest[9..]
        }
        _ => rest,
    })
}

/// The most `source.chunk_bytes` may be: a chunk's decoded batches must make one batch (a
/// string column of at most 2 GiB), and each reader and decoder thread holds one.
pub const MAX_CHUNK_BYTES: u64 = 1 << 30;

/// A `source.chunk_bytes`: positive, at most [`MAX_CHUNK_BYTES`].
pub(crate) fn chunk_bytes(text: &str) -> Result<(), String> {
    let n = parse_bytes(text)?;
    positive(n)?;
    if n > MAX_CHUNK_BYTES {
        return Err(format!(
            "`{text}` is more than a chunk may be, 1GiB (each reader and decoder thread holds one)"
        ));
    }
    Ok(())
}

pub(crate) fn positive(v: u64) -> Result<(), String> {
    if v == 0 {
        Err("must be positive".into())
    } else {
        Ok(())
    }
}

fn sink_format(s: &SinkSection) -> Result<FormatOptions, String> {
    let kind: FormatKind = s.format.parse().map_err(|e| format!("format: {e}"))?;
    let mut o = FormatOptions {
        kind,
        // A Delta table declares every timestamp in microseconds.
        micros: s.table == "delta",
        ..Default::default()
    };
    if let Some(c) = &s.compression {
        o.codec = Some(Codec::parse(c).map_err(|e| format!("compression: {e}"))?);
    }
    if let Some(r) = s.row_group_rows {
        o.row_group_rows = r;
    }
    if let Some(d) = &s.dictionary {
        o.dictionary = match d.as_str() {
            "auto" => Dictionary::Auto,
            "on" => Dictionary::On,
            "off" => Dictionary::Off,
            other => return Err(format!("dictionary: `{other}` (expected auto, on or off)")),
        };
    }
    if let Some(e) = &s.parquet_encodings {
        o.parquet_encodings = match e.as_str() {
            "delta" => ParquetEncodings::Delta,
            "plain" => ParquetEncodings::Plain,
            other => {
                return Err(format!(
                    "parquet_encodings: `{other}` (expected delta or plain)"
                ))
            }
        };
    }
    if let Some(st) = s.statistics {
        o.statistics = st;
    }
    if let Some(b) = &s.stripe_bytes {
        o.stripe_bytes = parse_bytes(b).map_err(|e| format!("stripe_bytes: {e}"))? as usize;
    }
    if let Some(h) = s.header {
        o.header = h;
    }
    if kind == FormatKind::Text {
        return Err("format: `text` (raw lines) is available in `sluice convert` only".into());
    }
    Ok(o)
}

#[cfg(test)]
mod tests;
