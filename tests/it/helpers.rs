//! Shared helpers: running the binary, fixture paths, the Python interop environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

pub fn schema(name: &str) -> PathBuf {
    root().join("schemas").join(format!("{name}.toml"))
}

/// Runs `sluice` with `args`; returns its output.
pub fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice")
}

/// Runs `sluice` and asserts it succeeded; returns stdout.
pub fn sluice_ok(args: &[&str]) -> String {
    let out = sluice(args);
    assert!(
        out.status.success(),
        "sluice {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `sluice` and asserts it failed; returns stderr.
pub fn sluice_refused(args: &[&str]) -> String {
    let out = sluice(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "sluice {args:?} ran:\n{err}");
    err
}

/// The Python interpreter with pyarrow and duckdb. `.ci/run` sets `SLUICE_TEST_PYTHON`; under
/// CI a missing interpreter fails the test instead of skipping it.
pub fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but SLUICE_TEST_PYTHON is not: interop tests need the venv");
    }
    eprintln!("SKIP: interop test needs SLUICE_TEST_PYTHON (a python with pyarrow and duckdb)");
    None
}

/// Runs the independent checker on output files.
pub fn check_outputs(python: &Path, kind: &str, input: &Path, files: &[PathBuf]) {
    let script = root().join("tests/interop/check_outputs.py");
    let out = Command::new(python)
        .arg(script)
        .arg(kind)
        .arg(input)
        .args(files)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "interop check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Counts the rows of a Parquet file with the parquet crate.
pub fn parquet_rows(path: &Path) -> i64 {
    let f = std::fs::File::open(path).expect("open parquet");
    let r = parquet::file::reader::SerializedFileReader::new(f).expect("parquet footer");
    parquet::file::reader::FileReader::metadata(&r)
        .file_metadata()
        .num_rows()
}

/// Adds the `trace_id` values of every row of a Parquet file to `counts`.
pub fn count_trace_ids<R: parquet::file::reader::ChunkReader + 'static>(
    file: R,
    counts: &mut std::collections::HashMap<String, usize>,
) {
    use arrow::array::{Array, AsArray};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet footer")
        .build()
        .expect("parquet reader");
    for b in reader {
        let b = b.expect("parquet batch");
        let col = b
            .column(b.schema().index_of("trace_id").expect("trace_id column"))
            .clone();
        let ids = col.as_string::<i32>();
        for i in 0..ids.len() {
            *counts.entry(ids.value(i).to_string()).or_insert(0) += 1;
        }
    }
}

/// The files under `dir` (a missing folder has none). Names starting with `.` are skipped,
/// and with `visible`, names starting with `_` too, as query engines do.
pub fn files_under(dir: &Path, visible: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.expect("dir entry").path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') || (visible && name.starts_with('_')) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

/// Every trace id in every visible Parquet file under `out`, with how often it appears.
pub fn trace_ids(out: &Path) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for p in files_under(out, true) {
        if p.extension().is_some_and(|e| e == "parquet") {
            count_trace_ids(std::fs::File::open(&p).expect("open parquet"), &mut counts);
        }
    }
    counts
}

/// Asks a child process to stop gracefully.
pub fn sigterm(child: &std::process::Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill")
        .success());
}

/// Runs `sql` in DuckDB (the interop venv's python) and returns each row as a JSON line; `None`
/// (with a skip line) when no interop python is set up.
pub fn duckdb_rows(sql: &str) -> Option<String> {
    let py = python()?;
    let script = format!(
        "import duckdb, json\nfor r in duckdb.sql({sql:?}).fetchall(): print(json.dumps(r))"
    );
    let out = Command::new(py)
        .args(["-c", &script])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "duckdb failed on {sql}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("JSON lines"))
}

/// The address in the last line of `log` that says `what` and carries `addr=...`.
pub fn logged_addr(log: &Path, what: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rfind(|l| l.contains(what))?;
    Some(
        line.split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .to_string(),
    )
}

/// The data files the given checkpoint records name, sorted.
pub fn files_named_by(records: impl Iterator<Item = Vec<u8>>) -> Vec<String> {
    let mut named = Vec::new();
    for r in records {
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        if let Some(files) = v.get("files").and_then(|f| f.as_array()) {
            named.extend(
                files
                    .iter()
                    .map(|f| f["path"].as_str().unwrap().to_string()),
            );
        }
    }
    named.sort();
    named
}

/// Every visible data file under `out` is named by exactly one commit of job `job`, and every
/// file a commit names is there.
pub fn assert_files_match_checkpoints(out: &Path, job: &str) {
    let named = files_named_by(
        files_under(&out.join("_sluice").join(job).join("checkpoints"), false)
            .iter()
            .map(|p| std::fs::read(p).unwrap()),
    );
    let mut visible: Vec<String> = files_under(out, true)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| p.strip_prefix(out).unwrap().to_string_lossy().into_owned())
        .collect();
    visible.sort();
    assert_eq!(
        visible, named,
        "visible files and the files checkpoints name differ"
    );
}

/// Polls `f` until it holds; past `secs`, fails naming what it waited for.
pub fn wait_until(what: &str, secs: u64, f: impl FnMut() -> bool) {
    wait_until_showing(what, secs, f, String::new);
}

/// [`wait_until`], failing with what `shown` gives then too (how far it got, a run's log).
pub fn wait_until_showing(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> bool,
    shown: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}{}",
            shown()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits for `child` to exit by itself within `secs`; past that, kills it and fails naming
/// what it waited for.
pub fn wait_exit(
    child: &mut std::process::Child,
    what: &str,
    secs: u64,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A child process that is killed and reaped when dropped, unless taken first: a failing test
/// leaves no process behind.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl KillOnDrop {
    pub fn new(child: std::process::Child) -> Self {
        KillOnDrop(Some(child))
    }

    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("not taken")
    }

    /// SIGTERM, then its exit within `secs` (killed and failed past it).
    pub fn stop(mut self, what: &str, secs: u64) -> std::process::ExitStatus {
        sigterm(self.child());
        wait_exit(self.child(), what, secs)
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("not taken")
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.child()
    }
}

impl KillOnDrop {
    /// The child's exit and output, as `Child::wait_with_output` (no longer killed on drop).
    pub fn wait_with_output(mut self) -> std::io::Result<std::process::Output> {
        self.0.take().expect("not taken").wait_with_output()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `sluice ARGS` run to its end within `secs` (killed and failed past it): its status and
/// standard error.
pub fn sluice_within(args: &[&str], secs: u64) -> (std::process::ExitStatus, String) {
    let err = tempfile::NamedTempFile::new().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop::new(child);
    let status = wait_exit(child.child(), &format!("sluice {args:?} to end"), secs);
    (status, std::fs::read_to_string(err.path()).unwrap())
}

/// Serves every connection `listener` accepts on a thread of its own with `handle`, until the
/// test process ends (the test proxies in front of real servers).
pub fn serve_each(
    listener: std::net::TcpListener,
    handle: impl Fn(std::net::TcpStream) + Send + Sync + 'static,
) {
    let handle = std::sync::Arc::new(handle);
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let h = handle.clone();
            std::thread::spawn(move || h(client));
        }
    });
}

/// A process's peak resident memory so far (`VmHWM`), in KiB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `sluice run JOB` held at fault point `point` (`hold_worker`, `hold_before_claims`, ...)
/// while the file `hold` exists (created here), its standard error in `log`; killed when
/// dropped.
pub fn run_held(job: &Path, log: &Path, hold: &Path, point: &str) -> KillOnDrop {
    std::fs::write(hold, b"").unwrap();
    let fault = format!("{point}:@{}", hold.display());
    KillOnDrop::new(crate::kafka::spawn_with(
        "run",
        job,
        log,
        &[("SLUICE_FAULT", &fault)],
    ))
}

/// The text of `log` once it says `what` (within 60 s; failing with the log otherwise).
pub fn said(log: &Path, what: &str) -> String {
    let text = crate::kafka::wait_log(log, what, 1, 60);
    assert!(text.contains(what), "waited 60 s for {what:?}:\n{text}");
    text
}

/// `sluice run JOB` to its end within 60 s, which must succeed: its standard error.
pub fn run_ok(job: &Path) -> String {
    let (status, log) = sluice_within(&["run", job.to_str().unwrap()], 60);
    assert!(
        status.success(),
        "sluice run {} failed:\n{log}",
        job.display()
    );
    log
}
