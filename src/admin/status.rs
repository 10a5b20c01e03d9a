//! The status page. `GET /` serves one HTML page (`status.html`, with `status.js` and
//! `status.css` from this listener too: nothing from elsewhere, so it works offline; its
//! policy allows no other script) that reads `GET /v1/status` every 2 s and redraws in place:
//! per repo its state and last error, rates, lag per partition, channel fill, the last
//! commits and dead letters by reason, with SVG charts of the last 10 minutes. The history is
//! sampled here from the metrics every 5 s (`History`), so a page opened late still shows it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::Admin;

/// The page, its script and its styles (served from this listener: the page's policy allows
/// nothing else, no inline script included).
pub(super) const PAGE: &str = include_str!("status.html");
pub(super) const SCRIPT: &str = include_str!("status.js");
pub(super) const STYLE: &str = include_str!("status.css");

/// How often the history is sampled.
pub(super) const EVERY: Duration = Duration::from_secs(5);
/// Samples kept: 10 minutes.
const KEPT: usize = 120;

/// A repo's totals at one moment, from the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Totals {
    records_in: f64,
    rows_out: f64,
    dead_letters_found: f64,
    lag: f64,
    channel_bytes: f64,
}

/// The samples of the last 10 minutes: (ms since the epoch, totals per repo), and the
/// counters as they were last seen.
#[derive(Default)]
pub(super) struct History {
    samples: Mutex<VecDeque<(i64, BTreeMap<String, Totals>)>>,
    kept: Kept,
}

/// Counter series (`*_total`) as last seen, by series (name and labels): (the last value,
/// what it counted before it started again). A partition's series go when it is revoked,
/// and start at 0 when it comes back or its task restarts: the repo's totals keep what they
/// counted, so they never go back. A series gone from the exposition is folded into its
/// series without the partition label, so what is kept grows with the partitions held now
/// and the repos and reasons, not with every partition the process ever held.
#[derive(Default)]
struct Kept(Mutex<BTreeMap<String, (f64, f64)>>);

impl Kept {
    /// The exposition `encode` gives, with its counters as kept: every counter series seen
    /// since the process started, each with all it counted. Encoded under the lock: an older
    /// exposition folded in after a newer one would read as a restart of every counter that
    /// moved between them.
    fn update(&self, encode: impl FnOnce() -> String) -> String {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let text = encode();
        let mut out = String::with_capacity(text.len());
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            let counter = parse_line(line).filter(|(name, _, _)| name.ends_with("_total"));
            match (counter, line.rsplit_once(' ')) {
                (Some((_, _, v)), Some((series, _))) => {
                    let (last, before) = kept.entry(series.to_string()).or_insert((0.0, 0.0));
                    if v < *last {
                        *before += *last;
                    }
                    *last = v;
                    seen.insert(series);
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        let gone: Vec<String> = kept
            .keys()
            .filter(|s| !seen.contains(s.as_str()) && s.contains("partition=\""))
            .cloned()
            .collect();
        for series in gone {
            let (last, before) = kept.remove(&series).expect("listed");
            kept.entry(without_partition(&series))
                .or_insert((0.0, 0.0))
                .1 += last + before;
        }
        for (series, (last, before)) in kept.iter() {
            out.push_str(&format!("{series} {}\n", last + before));
        }
        out
    }
}

impl History {
    /// Takes a sample of `text` (the metrics exposition, counters as kept) at `at_ms`.
    fn sample(&self, at_ms: i64, text: &str) {
        let totals = totals(text);
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() == KEPT {
            s.pop_front();
        }
        s.push_back((at_ms, totals));
    }
}

/// `series` (`name{labels}`) without its `partition` label.
fn without_partition(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_string();
    };
    let labels: Vec<&str> = labels
        .trim_end_matches('}')
        .split(',')
        .filter(|kv| !kv.starts_with("partition="))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// A sample's labels: (name, value) pairs.
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// One metric sample line of an exposition: name, labels, value.
fn parse_line(line: &str) -> Option<(&str, Labels<'_>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse::<f64>().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    // Label values here are repo, partition and reason names: no commas or quotes inside.
    let labels = labels
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k, v.trim_matches('"')))
        })
        .collect();
    Some((name, labels, value))
}

fn label<'a>(labels: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Totals per repo in an exposition.
fn totals(text: &str) -> BTreeMap<String, Totals> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for (name, labels, value) in text.lines().filter_map(parse_line) {
        let Some(repo) = label(&labels, "repo") else {
            continue;
        };
        let t = out.entry(repo.to_string()).or_default();
        match name {
            "sluice_records_in_total" => t.records_in += value,
            "sluice_rows_out_total" => t.rows_out += value,
            "sluice_dead_letters_found_total" => t.dead_letters_found += value,
            "sluice_consumer_lag" => t.lag += value,
            "sluice_channel_bytes" => t.channel_bytes += value,
            _ => {}
        }
    }
    out
}

/// Committed dead letters by reason class, per repo.
fn dead_letters_by_reason(text: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (name, labels, value) in text.lines().filter_map(parse_line) {
        if name != "sluice_dead_letters_total" {
            continue;
        }
        if let (Some(repo), Some(reason)) = (label(&labels, "repo"), label(&labels, "reason")) {
            *out.entry(repo.to_string())
                .or_default()
                .entry(reason.to_string())
                .or_default() += value;
        }
    }
    out
}

/// Samples the metrics into the history (the admin runtime calls it every `EVERY`).
pub(super) fn sample(admin: &Admin) {
    let text = admin
        .history
        .kept
        .update(|| admin.exposition().open().to_string());
    admin.history.sample(crate::commit::now_ms(), &text);
}

/// What the page shows: per repo, what `/v1/tasks` says, and totals, rates over the last
/// minutes, the last commits and dead letters by reason.
pub(super) fn status(admin: &Admin) -> Value {
    let text = admin
        .history
        .kept
        .update(|| admin.exposition().open().to_string());
    let now = totals(&text);
    let reasons = dead_letters_by_reason(&text);
    let samples = admin
        .history
        .samples
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let repos: Vec<Value> = admin
        .repos
        .iter()
        .map(|(repo, slot)| {
            let mut task = super::task(repo, slot);
            let t = now.get(repo).copied().unwrap_or_default();
            // A task that is not running reports no lag (its gauges are gone): not 0.
            let running = task.get("partitions").is_some();
            task["totals"] = json!({
                "records_in": t.records_in,
                "rows_out": t.rows_out,
                "dead_letters_found": t.dead_letters_found,
                "lag": running.then_some(t.lag),
            });
            task["recent_commits"] = json!(slot.metrics.recent_commits());
            task["dead_letters_by_reason"] = json!(reasons.get(repo).cloned().unwrap_or_default());
            task["series"] = series(&samples, repo);
            task
        })
        .collect();
    json!({
        "now_ms": crate::commit::now_ms(),
        "every_s": EVERY.as_secs(),
        "repos": repos,
    })
}

/// A repo's charts: per sample, records read and rows written per second since the sample
/// before, total lag and channel bytes.
fn series(samples: &VecDeque<(i64, BTreeMap<String, Totals>)>, repo: &str) -> Value {
    let mut t = Vec::new();
    let (mut read, mut written, mut lag, mut channel) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut before: Option<(i64, Totals)> = None;
    for (at, per_repo) in samples {
        let now = per_repo.get(repo).copied().unwrap_or_default();
        if let Some((at0, then)) = before {
            // Samples closer than a second (a stalled runtime catching up, the clock set
            // back) give no rate worth drawing.
            let secs = (at - at0) as f64 / 1000.0;
            if secs < 0.0 {
                // The clock was set back: rates start again from this sample (else every
                // later one would be measured against the sample before the step).
                before = Some((*at, now));
                continue;
            }
            if secs < 1.0 {
                continue;
            }
            t.push(*at);
            read.push(((now.records_in - then.records_in) / secs).max(0.0));
            written.push(((now.rows_out - then.rows_out) / secs).max(0.0));
            lag.push(now.lag);
            channel.push(now.channel_bytes);
        }
        before = Some((*at, now));
    }
    json!({
        "t": t,
        "read_per_s": read,
        "written_per_s": written,
        "lag": lag,
        "channel_bytes": channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP sluice_rows_out_total Rows\n\
        sluice_rows_out_total{repo=\"web\",partition=\"t-0\"} 10\n\
        sluice_rows_out_total{repo=\"web\",partition=\"t-1\"} 5\n\
        sluice_records_in_total{repo=\"web\",partition=\"t-0\"} 17\n\
        sluice_consumer_lag{repo=\"web\",partition=\"t-0\"} 3\n\
        sluice_dead_letters_total{repo=\"web\",partition=\"t-0\",reason=\"malformed\"} 2\n\
        sluice_dead_letters_total{repo=\"web\",partition=\"t-1\",reason=\"malformed\"} 1\n\
        sluice_channel_bytes{repo=\"orders\"} 4096\n\
        # EOF\n";

    #[test]
    fn the_page_has_no_inline_script_or_style_for_its_policy_to_block() {
        assert!(PAGE.contains("<script src=\"/status.js\"></script>"));
        assert!(!PAGE.contains("<script>") && !PAGE.contains("<style") && !PAGE.contains("style="));
        assert!(
            !SCRIPT.contains("style=\""),
            "inline style attributes in markup"
        );
    }

    #[test]
    fn totals_and_reasons_are_summed_per_repo() {
        let t = totals(TEXT);
        assert_eq!(t["web"].rows_out, 15.0);
        assert_eq!(t["web"].records_in, 17.0);
        assert_eq!(t["web"].lag, 3.0);
        assert_eq!(t["orders"].channel_bytes, 4096.0);
        assert_eq!(dead_letters_by_reason(TEXT)["web"]["malformed"], 3.0);
    }

    /// A partition revoked (its series gone) and given back (its counter from 0 again): the
    /// repo's totals keep what it counted. Before, they went back at each rebalance.
    #[test]
    fn totals_keep_what_revoked_and_restarted_series_counted() {
        let kept = Kept::default();
        let t = |text: &str| totals(&kept.update(|| text.to_string()))["web"];
        assert_eq!(t(TEXT).rows_out, 15.0);
        // t-1 revoked.
        let only_t0 = "sluice_rows_out_total{repo=\"web\",partition=\"t-0\"} 12\n\
            sluice_consumer_lag{repo=\"web\",partition=\"t-0\"} 1\n";
        assert_eq!(t(only_t0).rows_out, 17.0);
        assert_eq!(t(only_t0).lag, 1.0, "gauges are as they are now");
        // t-1 back from 0.
        let back = format!("{only_t0}sluice_rows_out_total{{repo=\"web\",partition=\"t-1\"}} 2\n");
        assert_eq!(t(&back).rows_out, 19.0);
        let reasons = dead_letters_by_reason(&kept.update(|| only_t0.to_string()));
        assert_eq!(reasons["web"]["malformed"], 3.0);
        // Partitions held once and gone are kept as one series per repo (and reason), not
        // one each: what is kept does not grow with every partition ever held.
        let held = kept.0.lock().unwrap().len();
        for p in 2..50 {
            let one =
                format!("{only_t0}sluice_rows_out_total{{repo=\"web\",partition=\"t-{p}\"}} 1\n");
            kept.update(|| one);
        }
        assert_eq!(t(only_t0).rows_out, 17.0 + 2.0 + 48.0);
        assert!(
            kept.0.lock().unwrap().len() <= held + 1,
            "{:?}",
            kept.0.lock().unwrap()
        );
    }

    #[test]
    fn rates_come_from_consecutive_samples_and_the_history_is_bounded() {
        let h = History::default();
        h.sample(0, "sluice_rows_out_total{repo=\"web\",partition=\"p\"} 0\n");
        h.sample(
            5000,
            "sluice_rows_out_total{repo=\"web\",partition=\"p\"} 500\n",
        );
        // Right after: no rate (a catch-up tick would divide by nothing).
        h.sample(
            5002,
            "sluice_rows_out_total{repo=\"web\",partition=\"p\"} 900\n",
        );
        let s = series(&h.samples.lock().unwrap(), "web");
        assert_eq!(s["written_per_s"], json!([100.0]));
        assert_eq!(s["t"], json!([5000]));
        for i in 0..200 {
            h.sample(i, "");
        }
        assert_eq!(h.samples.lock().unwrap().len(), KEPT);
    }
}
