//! Prometheus for real: a Prometheus server scrapes a running Kafka job's admin listener and
//! its query API returns the job's rows and lag; `promtool check metrics` accepts what
//! `/metrics` serves; the shipped alert rules (`deploy/prometheus/alerts.yml`) check and pass
//! their unit tests. `scripts/test.sh` installs the Debian package `prometheus`; without it
//! the test prints a skip line (under CI it fails instead).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::admin::http;
use crate::helpers::*;

fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but {name} is not installed (scripts/test.sh installs prometheus)");
        }
        eprintln!("SKIP: the Prometheus test needs {name} (Debian package prometheus)");
    }
    found
}

/// The value of a one-sample instant query, or None while it has no sample.
fn query(prom: &str, q: &str) -> Option<f64> {
    let encoded: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    // Not listening yet: no sample yet.
    std::net::TcpStream::connect(prom).ok()?;
    let (code, body) = http(prom, "GET", &format!("/api/v1/query?query={encoded}"), None);
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    result.first()?["value"][1].as_str()?.parse().ok()
}

fn promtool(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn prometheus_scrapes_a_kafka_job_and_the_alert_rules_hold() {
    let (Some(prometheus), Some(_)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };
    // The shipped rules: valid, and each alert fires where its unit test says.
    for args in [
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["test", "rules", "deploy/prometheus/alerts_test.yml"],
    ] {
        let o = promtool(&args, None);
        assert!(
            o.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    let n = 2000;
    let job = crate::admin::observed("scraped", n);
    let (dir, addr) = (job.dir.path(), &job.addr);

    // What /metrics serves passes promtool's checks (format and naming lints).
    let (code, metrics) = http(addr, "GET", "/metrics", None);
    assert_eq!(code, 200);
    let o = promtool(&["check", "metrics"], Some(&metrics));
    assert!(
        o.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // A real server scrapes the job every second.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {:?}\n\
             scrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: [\"{addr}\"]\n",
            root().join("deploy/prometheus/alerts.yml")
        ),
    )
    .unwrap();
    let prom_addr = format!("127.0.0.1:{port}");
    let prom_log = dir.join("prometheus.log");
    let _prom = KillOnDrop::new(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&prom_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let rows = "sum(sluice_rows_out_total{job=\"sluice\"})";
    wait_until(
        &format!(
            "Prometheus to hold {rows} = {n} (its log: {})",
            prom_log.display()
        ),
        90,
        || query(&prom_addr, rows) == Some(n as f64),
    );
    // One lag series per partition, all caught up; the rules loaded, with nothing firing.
    let lag = "count(sluice_consumer_lag{job=\"sluice\"})";
    wait_until("a lag series for each of the 4 partitions", 60, || {
        query(&prom_addr, lag) == Some(4.0)
    });
    wait_until("lag 0 in Prometheus", 60, || {
        query(&prom_addr, "sum(sluice_consumer_lag{job=\"sluice\"})") == Some(0.0)
    });
    // Each partition's position is past its last message (good or not): from offset 0,
    // they sum to the messages produced.
    let position = "sum(sluice_consumer_position{job=\"sluice\"})";
    let produced = n + job.bad;
    wait_until(
        &format!("{position} = {produced} in Prometheus"),
        60,
        || query(&prom_addr, position) == Some(produced as f64),
    );
    let (code, rules) = http(&prom_addr, "GET", "/api/v1/rules", None);
    assert_eq!(code, 200);
    assert!(rules.contains("SluiceNoCommit"), "{rules}");
    assert!(rules.contains("SluicePartitionStalled"), "{rules}");
    assert_eq!(
        query(&prom_addr, "count(ALERTS{alertstate=\"firing\"})"),
        None,
        "no alert fires on a healthy job"
    );
    assert!(job.run.stop("the job to stop", 60).success());
}
