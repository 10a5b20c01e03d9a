//! Push load generator for `benches/push.sh`: `clients` keep-alive connections POST requests
//! of `rows` JSON lines each, taken in turn from FILE, as fast as the answers come. A 503 is
//! retried after 5 ms (counted). With RATE (rows per second, all clients together) each
//! client sends on a fixed schedule instead (an offered load, for latency). Prints acknowledged
//! rows per second and the latency percentiles of acknowledged requests (from each request's
//! scheduled start, so a late answer also delays what follows it).
//!
//! usage: push_load ADDR REPO FILE [CLIENTS] [ROWS] [RATE]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[path = "../benches/common/http_client.rs"]
mod http_client;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: push_load ADDR REPO FILE [CLIENTS] [ROWS] [RATE]");
        std::process::exit(2);
    }
    let (addr, repo, file) = (&args[1], &args[2], &args[3]);
    let clients: usize = args.get(4).map_or(16, |s| s.parse().expect("CLIENTS"));
    let rows: usize = args.get(5).map_or(1000, |s| s.parse().expect("ROWS"));
    let rate: Option<f64> = args.get(6).map(|s| s.parse().expect("RATE"));
    // Each client's time between requests at the offered load.
    let every = rate.map(|r| Duration::from_secs_f64(clients as f64 * rows as f64 / r));
    let text = std::fs::read(file).expect("read FILE");
    let lines: Vec<&[u8]> = text
        .split_inclusive(|b| *b == b'\n')
        .filter(|l| l.len() > 1)
        .collect();
    let bodies: Vec<Vec<u8>> = lines.chunks(rows).map(|c| c.concat()).collect();
    let path = format!("/v1/repos/{repo}/data");
    let next = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let accepted = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(bodies.len()));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let mut client = http_client::Client::new(addr);
                let mut mine = Vec::new();
                let mut due = Instant::now();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let t = match every {
                        Some(every) => {
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            let t = due;
                            due += every;
                            t
                        }
                        None => Instant::now(),
                    };
                    loop {
                        match client.post(&path, "", body) {
                            Ok((200, _, answer)) => {
                                mine.push(t.elapsed());
                                let n: usize = answer
                                    .split("\"accepted\":")
                                    .nth(1)
                                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                                    .and_then(|n| n.parse().ok())
                                    .expect("an accepted count");
                                accepted.fetch_add(n, Ordering::Relaxed);
                                break;
                            }
                            Ok((503, _, _)) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Ok((code, _, answer)) => panic!("answer {code}: {answer}"),
                            Err(e) => panic!("request failed: {e}"),
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let mut l = latencies.into_inner().unwrap();
    l.sort();
    let pct = |p: f64| l[((l.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    let rows = accepted.load(Ordering::Relaxed);
    println!(
        "requests={} rows={rows} seconds={secs:.2} rows_per_s={:.0} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} refused_503={}",
        l.len(),
        rows as f64 / secs,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        refused.load(Ordering::Relaxed)
    );
}
