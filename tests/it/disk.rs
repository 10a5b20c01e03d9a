//! A full disk, for real: a small tmpfs holds a push job's WAL (and output). Needs to mount
//! one (root); where mounting is not allowed the test says SKIP and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::admin::http;
use crate::helpers::*;
use crate::push::http_client::Client;
use crate::push::{push_acked, push_job, start};

/// A tmpfs of `mib` MiB mounted at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| Tmpfs(dir.to_path_buf()))
            .or_else(|| {
                eprintln!(
                    "SKIP: cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                None
            })
    }

    fn resize(&self, mib: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A push job (WAL durability, `extra_source` in its source) with its state folder and output
/// at the paths given.
fn job_at(dir: &Path, extra_source: &str, state: &Path, out: &Path) -> PathBuf {
    let job = push_job(dir, "wal", extra_source, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("state_dir = \"state\"", &format!("state_dir = {state:?}"))
        .replace(
            "url = \"file://out\"",
            &format!("url = \"file://{}\"", out.display()),
        );
    std::fs::write(&job, text).unwrap();
    job
}

/// 300 events (about 100 KB) with trace ids `<tag>-<i>`, each with 250 characters that do
/// not compress (the output fills the disk too, not only the WAL).
fn body(tag: &str) -> Vec<u8> {
    let mut seed = tag.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut noise = || {
        (0..125)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                format!("{:02x}", seed as u8)
            })
            .collect::<String>()
    };
    (0..300)
        .map(|i| {
            format!(
                "{{\"ts\":\"2024-05-01T10:00:00Z\",\"host\":\"h\",\"path\":\"/{i}\",\"status\":200,\"user_agent\":\"{}\",\"trace_id\":\"{tag}-{i}\"}}\n",
                noise()
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// The WAL's disk fills up: pushes are refused (503, naming the full disk) and nothing of a
/// refused push stays; the process keeps serving; once there is room again pushes are taken,
/// and after a graceful stop every acknowledged row is in the output exactly once. Before, the
/// first ENOSPC failed the intake (500) and the task, and the process exited.
#[test]
fn a_full_disk_refuses_pushes_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("fs"), 4) else {
        return;
    };
    let out = fs.0.join("out");
    // Small segments: the WAL also rolls on the full disk.
    let job = job_at(
        dir.path(),
        "wal_segment_bytes = \"256KiB\"",
        &fs.0.join("state"),
        &out,
    );
    let (child, addr) = start(&job, &dir.path().join("run.log"));
    let mut child = child;
    let mut c = Client::new(&addr);
    let mut acked = Vec::new();
    let mut refusal = None;
    for n in 0..400 {
        let tag = format!("r{n}");
        let (code, _, b) = c
            .post("/v1/repos/nginx_access/data", "", &body(&tag))
            .unwrap();
        match code {
            200 => acked.push(tag),
            503 if b.contains("disk is full") => {
                refusal = Some(b);
                break;
            }
            _ => panic!("push {n}: {code} {b}"),
        }
    }
    let refusal = refusal.expect("4 MiB filled up within 400 pushes of 100 KB");
    assert!(acked.len() > 5, "some pushes fit: {}", acked.len());
    // Still serving, and still refusing while the disk is full.
    let (code, _) = http(&addr, "GET", "/v1/tasks", None);
    assert_eq!(code, 200, "the admin API answers: {refusal}");
    fs.resize(64);
    let mut after = 0;
    wait_until("a push to be taken once there is room", 60, || {
        let tag = format!("after{after}");
        after += 1;
        let (code, _, b) = c
            .post("/v1/repos/nginx_access/data", "", &body(&tag))
            .unwrap();
        match code {
            200 => {
                acked.push(tag);
                true
            }
            503 => false,
            _ => panic!("{code} {b}"),
        }
    });
    // A commit that met the full disk replays after a pause: wait for every acknowledged row
    // to be committed before stopping (a stop ends the replay; the WAL keeps the rest).
    let want = acked.len() * 300;
    wait_until("every acknowledged row to be committed", 120, || {
        trace_ids(&out).len() >= want
    });
    let child = child.0.take().unwrap();
    sigterm(&child);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids = trace_ids(&out);
    for tag in &acked {
        for i in 0..300 {
            let id = format!("{tag}-{i}");
            assert_eq!(ids.get(&id), Some(&1), "acknowledged row {id}");
        }
    }
    assert_eq!(ids.len(), acked.len() * 300, "no row of a refused push");
}

/// A WAL folder on a full disk whose process cannot record its run (`log-runs` needs a new
/// block for the line): the log takes no record until it can, so a copy of the folder could
/// never be credited with this process's records. A push that fits in the last page of the
/// log's segment (stored without any new block) is refused while the run is not recorded,
/// and taken once there is room; every acknowledged row lands once.
#[test]
fn a_run_that_cannot_be_recorded_takes_no_pushes_until_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("fs"), 4) else {
        return;
    };
    let state = fs.0.join("state");
    let wal = state.join("wal");
    let out = dir.path().join("out");
    let job = job_at(dir.path(), "", &state, &out);

    // A first run commits rows, leaving the segment's last page with room for one more.
    let (child, addr) = start(&job, &dir.path().join("run1.log"));
    let mut rows = 0;
    loop {
        push_acked(&addr, &format!("first{rows}"), 1);
        rows += 1;
        let seg = std::fs::read_dir(&wal)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "wal"))
            .unwrap();
        let room = 4096 - std::fs::metadata(&seg).unwrap().len() % 4096;
        if (1000..4096).contains(&room) {
            break;
        }
        assert!(rows < 40, "no room left in the page after {rows} rows");
    }
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    // `log-runs` fills its last block: the next run's line needs a new one.
    let runs = wal.join("log-runs");
    let len = std::fs::metadata(&runs).unwrap().len() as usize;
    let mut pad = std::fs::OpenOptions::new()
        .append(true)
        .open(&runs)
        .unwrap();
    let line = format!("#{}\n", "#".repeat(4096 - len % 4096 - 2));
    std::io::Write::write_all(&mut pad, line.as_bytes()).unwrap();
    drop(pad);
    // The disk filled up to its last block.
    let filler = fs.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![7u8; 1 << 16];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);

    let log = dir.path().join("run2.log");
    let (child, addr) = start(&job, &log);
    let mut child = child;
    let mut c = Client::new(&addr);
    let (code, _, b) = c
        .post(
            "/v1/repos/nginx_access/data",
            "",
            &crate::push::events("late0", 1),
        )
        .unwrap();
    assert!(
        code == 503 && b.contains("disk is full"),
        "a push taken under a run not recorded: {code} {b}"
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("no room to record the WAL's run"));
    std::fs::remove_file(&filler).unwrap();
    push_acked(&addr, "late1", 1);
    let runs = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(
        runs.lines().filter(|l| l.contains(' ')).count(),
        2,
        "{runs}"
    );
    wait_until("every acknowledged row to be committed", 60, || {
        trace_ids(&out).len() > rows
    });
    let child = child.0.take().unwrap();
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    let ids = trace_ids(&out);
    assert_eq!(ids.len(), rows + 1, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    assert!(ids.contains_key("late1-0") && !ids.contains_key("late0-0"));
}

/// A WAL fsync that fails refuses the requests it was to make durable (500), and takes their
/// records back out of the log: the next start does not replay them, so the pusher that sends
/// them again finds each record once. Before, the refused records stayed in the log (the
/// kernel still held them) and the next start exported them, then the retry a second time.
#[test]
fn records_of_a_push_refused_by_a_failed_wal_sync_are_not_exported_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let job = push_job(dir.path(), "wal", "", "");
    let (mut first, addr) = crate::push::start_with(
        &job,
        &dir.path().join("run1.log"),
        &[("SLUICE_FAULT", "fail_wal_sync:2")],
    );
    push_acked(&addr, "a", 100);
    let answer = Client::new(&addr).post(
        "/v1/repos/nginx_access/data",
        "",
        &crate::push::events("b", 100),
    );
    let Ok((500, _, body)) = &answer else {
        panic!("the push whose sync failed was not refused: {answer:?}")
    };
    assert!(body.contains("the log was cut back"), "{body}");
    // No orderly stop: what the log holds is what the next start finds.
    first.kill().unwrap();
    first.wait().unwrap();

    let log = dir.path().join("run2.log");
    let (second, addr) = start(&job, &log);
    push_acked(&addr, "b", 100);
    let out = dir.path().join("out");
    crate::kafka::wait_for(&out, 200, 60);
    sigterm(&second);
    assert!(second.wait_with_output().unwrap().status.success());
    let seen = trace_ids(&out);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(3).collect();
    assert!(twice.is_empty(), "exported twice: {twice:?}");
    assert_eq!(
        seen.len(),
        200,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}
