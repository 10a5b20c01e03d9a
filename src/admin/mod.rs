//! The admin listener (axum), one per process, shared by the job's repos: `GET /metrics`
//! (Prometheus/OpenMetrics text, every repo's series), `GET /healthz`, `GET /readyz` (ready
//! while every repo's task runs, or was stopped on purpose), `GET /readyz/{repo}` (one repo's),
//! `GET /v1/tasks` (per repo: state, last error, checkpoints,
//! lag, channel fill), `POST /v1/tasks/{repo}/pause|resume|stop`, and the status page (`GET /`,
//! its data at `GET /v1/status`; see `status`). With a token, the `/v1/`
//! routes require `Authorization: Bearer <token>` (compared in constant time). Without a token
//! (a loopback listener: the config refuses another address without one), the `/v1/` routes
//! refuse what a browser sends for another site: a foreign `Origin`, a cross-site
//! `Sec-Fetch-Site`, or a `Host` that is not an address or `localhost` (DNS rebinding).
//! Credentials never appear in any answer; errors are shown with URL queries (signatures)
//! removed. A push repo also takes its data here: `POST /v1/repos/{repo}/data` (see
//! `source::push::http`).
//!
//! The listener outlives the tasks: a repo's task attaches what the routes act on while it
//! runs ([`RepoSlot::attach`]), so a SIGHUP reload or a restart after a failure keeps the
//! address and the counters.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::{MetricSet, Metrics};

mod deadline;
mod exposition;
mod serve;
mod shown;
mod slot;
mod status;

pub use slot::{Live, RepoSlot};

/// The routes' state: every repo of the job.
pub struct Admin {
    token: Option<String>,
    /// `admin.insecure`: requests for any host name are answered (clients reach a listener
    /// on another address by name).
    any_host: bool,
    metrics: Arc<MetricSet>,
    repos: BTreeMap<String, Arc<RepoSlot>>,
    /// The status page's charts.
    history: status::History,
    /// The last exposition of `metrics`.
    recent: exposition::Recent,
}

impl Admin {
    /// The admin state of repos named `repos` (repo name, its task's job name).
    pub fn new(token: Option<String>, repos: &[(String, String)]) -> Admin {
        let metrics = Arc::new(MetricSet::default());
        let repos = repos
            .iter()
            .map(|(repo, job)| {
                let slot = RepoSlot::new(
                    job.clone(),
                    Arc::new(Metrics::in_set(metrics.clone(), repo)),
                );
                (repo.clone(), Arc::new(slot))
            })
            .collect();
        Admin {
            token,
            any_host: false,
            metrics,
            repos,
            history: status::History::default(),
            recent: exposition::Recent::default(),
        }
    }

    /// Answers requests for any host name, not only addresses and `localhost` (for a listener
    /// reached by name, `admin.insecure`).
    pub fn with_any_host(mut self, any: bool) -> Admin {
        self.any_host = any;
        self
    }

    pub fn slot(&self, repo: &str) -> Option<Arc<RepoSlot>> {
        self.repos.get(repo).cloned()
    }

    /// The metrics exposition, encoded again only when the last one is stale (see
    /// `exposition`), with the channel gauges brought up to date first.
    fn exposition(&self) -> Arc<exposition::Encoded> {
        self.recent.get(|| {
            self.refresh_channels();
            self.metrics.encode()
        })
    }

    /// Brings the channel gauges up to date (they are read, not pushed).
    fn refresh_channels(&self) {
        for slot in self.repos.values() {
            slot.with_live(|l| {
                let (bytes, batches) = l.channel.usage();
                slot.metrics.channel(bytes, batches);
            });
        }
    }

    /// Binds `listen` and serves on a runtime of its own, returned with the bound address (the
    /// port may have been 0); the listener runs as long as the runtime. `blocking`: the push
    /// requests the repos decode at once, at most (their `max_concurrent`, summed): each
    /// takes a blocking thread, and one repo whose WAL disk hangs must not hold every thread
    /// the others' requests need.
    pub fn start(
        self: Arc<Self>,
        listen: SocketAddr,
        blocking: usize,
    ) -> std::io::Result<(tokio::runtime::Runtime, SocketAddr)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(blocking.saturating_add(64).max(512))
            .thread_name("admin")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(listen))?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/", get(|| page(status::PAGE, "text/html; charset=utf-8")))
            .route(
                "/status.js",
                get(|| page(status::SCRIPT, "text/javascript; charset=utf-8")),
            )
            .route(
                "/status.css",
                get(|| page(status::STYLE, "text/css; charset=utf-8")),
            )
            .route("/v1/status", get(status_route))
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .route("/readyz/{repo}", get(ready_repo))
            .route("/v1/tasks", get(tasks))
            .route("/v1/tasks/{repo}/{action}", post(act))
            .route("/v1/repos/{repo}/data", post(push))
            .with_state(self.clone());
        runtime.spawn(async move {
            let mut every = tokio::time::interval(status::EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                // A panic here (a poisoned lock) would stop the charts for good: logged, and
                // the next tick tries again.
                let sampled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    status::sample(&self)
                }));
                if sampled.is_err() {
                    tracing::warn!("sampling the status page's history failed");
                }
            }
        });
        runtime.spawn(serve::serve(listener, app));
        Ok((runtime, addr))
    }

    /// The refusal to send when the route needs the token and the request lacks it, or, with
    /// no token, when the request comes from a browser on behalf of another site.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let Some(token) = self.token.as_ref() else {
            return cross_site(headers, self.any_host).map(|why| error(StatusCode::FORBIDDEN, why));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme's name is case-insensitive (RFC 9110).
            .and_then(|v| {
                v.get(..7)
                    .filter(|s| s.eq_ignore_ascii_case("bearer "))
                    .map(|_| &v[7..])
            })
            .unwrap_or("");
        (!same_secret(given.as_bytes(), token.as_bytes())).then(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "this route needs `Authorization: Bearer <token>` (admin.token of the job)",
            )
        })
    }

    /// The answer for a repo this job does not run.
    fn unknown(&self, repo: &str) -> Response {
        let names: Vec<String> = self.repos.keys().map(|n| format!("`{n}`")).collect();
        error(
            StatusCode::NOT_FOUND,
            format!(
                "no repo `{repo}` in this job (it runs {})",
                names.join(", ")
            ),
        )
    }
}

/// Compares two secrets in time that depends on their lengths only, not on where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let n = given.len().max(expected.len());
    let mut diff = given.len() ^ expected.len();
    for i in 0..n {
        let a = given.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box((a ^ b) as usize);
    }
    diff == 0
}

/// Why a request without a token must be refused as coming from a browser on behalf of
/// another site; `None` for tools (curl, Prometheus) and same-origin pages.
fn cross_site(headers: &HeaderMap, any_host: bool) -> Option<String> {
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("?"));
    let host = get("host").unwrap_or("");
    if let Some(site) = get("sec-fetch-site") {
        if site == "cross-site" || site == "same-site" {
            return Some(format!(
                "cross-site request refused (Sec-Fetch-Site: {site})"
            ));
        }
    }
    if let Some(origin) = get("origin") {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        if !authority.eq_ignore_ascii_case(host) {
            return Some(format!(
                "cross-site request refused (Origin {origin} is not this listener, {host}); \
                 set admin.token to call the API from another site"
            ));
        }
    }
    if any_host {
        return None;
    }
    // A name other than localhost may be an attacker's, rebound to this address.
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let literal = name.parse::<std::net::IpAddr>().is_ok();
    if !host.is_empty() && !literal && !name.eq_ignore_ascii_case("localhost") {
        return Some(format!(
            "request for host `{name}` refused: without admin.token the API answers requests \
             for an IP address or localhost only"
        ));
    }
    None
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// OpenMetrics for a client that asks for it (Prometheus does), else the classic text format.
async fn metrics(State(s): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let text = s.exposition();
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text.open().to_string(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text.classic().to_string(),
        )
            .into_response()
    }
}

/// 200 while every repo runs. With several repos, one stopped on purpose (through the API,
/// or a file repo that read its files to the end) does not count: it would keep the others'
/// listener out of a load balancer for good.
async fn ready(State(s): State<Arc<Admin>>) -> Response {
    let several = s.repos.len() > 1;
    let waiting: Vec<String> = s
        .repos
        .iter()
        .map(|(repo, slot)| (repo, slot.metrics.state()))
        .filter(|(_, state)| state != "running" && !(several && state == "stopped"))
        .map(|(repo, state)| format!("{repo} is {state}"))
        .collect();
    // Every repo stopped (the process is ending) is not ready, whatever stopped them.
    let running = s
        .repos
        .values()
        .any(|slot| slot.metrics.state() == "running");
    if waiting.is_empty() && running {
        (StatusCode::OK, "ready\n").into_response()
    } else if waiting.is_empty() {
        error(StatusCode::SERVICE_UNAVAILABLE, "no repo runs".to_string())
    } else if s.repos.len() == 1 {
        let state = s.repos.values().next().expect("one").metrics.state();
        error(StatusCode::SERVICE_UNAVAILABLE, format!("task is {state}"))
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, waiting.join("; "))
    }
}

/// 200 while this repo runs (a load balancer in front of one push repo).
async fn ready_repo(State(s): State<Arc<Admin>>, Path(repo): Path<String>) -> Response {
    let Some(slot) = s.repos.get(&repo) else {
        return s.unknown(&repo);
    };
    match slot.metrics.state().as_str() {
        "running" => (StatusCode::OK, "ready\n").into_response(),
        state => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{repo} is {state}"),
        ),
    }
}

async fn tasks(State(s): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Some(r) = s.refusal(&headers) {
        return r;
    }
    let list: Vec<serde_json::Value> = s
        .repos
        .iter()
        .map(|(repo, slot)| task(repo, slot))
        .collect();
    Json(list).into_response()
}

/// One repo's task as `/v1/tasks` (and the status page) shows it.
fn task(repo: &str, slot: &RepoSlot) -> serde_json::Value {
    let mut task = json!({
        "job": slot.job,
        "repo": repo,
        "state": slot.metrics.state(),
    });
    if let Some(e) = slot::lock(&slot.error).clone() {
        task["error"] = json!(e);
    }
    slot.with_live(|l| {
        let (bytes, batches) = l.channel.usage();
        task["paused"] = json!(l.control.paused.load(Ordering::Acquire));
        task["channel"] = json!({
            "bytes": bytes, "batches": batches, "max_bytes": l.channel.max_bytes()
        });
        task["partitions"] = json!(partitions(l, &slot.metrics));
        task["not_read"] = json!(not_read(l));
    });
    task
}

/// A static part of the status page (its data comes from `/v1/status`, behind the token when
/// set). The policy lets the page load only this listener's script and styles and talk only
/// to this listener; no inline script runs, so an injected value cannot either.
async fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn status_route(State(s): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Some(r) = s.refusal(&headers) {
        return r;
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(status::status(&s)),
    )
        .into_response()
}

fn partitions(l: &Live, metrics: &Metrics) -> Vec<serde_json::Value> {
    let mut parts: Vec<serde_json::Value> = l
        .control
        .partitions
        .all_owned()
        .into_iter()
        .map(|p| {
            json!({
                "partition": p.key,
                "checkpoint_seq": p.seq,
                "committed_offset": p.committed_offset,
                "lag": metrics.lag_of(&p.key),
                // Writes or commits failing since (retried): none landed since the first.
                "failing": p.failing.as_ref().map(|f| json!({
                    "since_ms": f.since_ms,
                    "attempts": f.attempts,
                    "error": shown::scrub_urls(&f.error),
                })),
            })
        })
        .collect();
    parts.sort_by(|a, b| a["partition"].as_str().cmp(&b["partition"].as_str()));
    parts
}

/// Partitions handed to the task's source that it does not read now (refused, or waiting
/// for a leader), with why and since when.
fn not_read(l: &Live) -> Vec<serde_json::Value> {
    let mut held = l
        .control
        .not_read
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    held.sort_by(|a, b| a.partition.cmp(&b.partition));
    held.into_iter()
        .map(|mut n| {
            n.error = shown::error(&n.error);
            json!(n)
        })
        .collect()
}

async fn act(
    State(s): State<Arc<Admin>>,
    Path((repo, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = s.refusal(&headers) {
        return r;
    }
    let Some(slot) = s.repos.get(&repo) else {
        return s.unknown(&repo);
    };
    if !["pause", "resume", "stop"].contains(&action.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no action `{action}` (pause, resume or stop)"),
        );
    }
    slot.act(&action);
    // Nor is an exposition encoded before it served after this answer.
    s.recent.invalidate();
    let state = slot.metrics.state();
    tracing::info!(repo, action, "admin request");
    Json(json!({ "repo": repo, "action": action, "state": state })).into_response()
}

async fn push(
    State(s): State<Arc<Admin>>,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = s.refusal(&headers) {
        return r;
    }
    let Some(slot) = s.repos.get(&repo) else {
        return s.unknown(&repo);
    };
    let api = match slot.with_live(|l| l.push.clone()) {
        Some(Some(api)) => api,
        Some(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("repo `{repo}` does not take pushes (its source is not `push`)"),
            )
        }
        None => {
            slot.metrics.pushed(503, 0);
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "repo `{repo}` is {}: it takes pushes while its task runs",
                    slot.metrics.state()
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return r;
        }
    };
    crate::source::push::http::push(api, headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3cret\0", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
        assert!(!same_secret(b"S3cret", b"s3cret"));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn cross_site_of(h: &HeaderMap) -> Option<String> {
        cross_site(h, false)
    }

    #[test]
    fn browsers_acting_for_other_sites_are_told_apart() {
        assert_eq!(cross_site_of(&headers(&[("host", "127.0.0.1:9464")])), None);
        assert_eq!(cross_site_of(&headers(&[("host", "localhost:9464")])), None);
        assert_eq!(cross_site_of(&headers(&[("host", "[::1]:9464")])), None);
        let same = headers(&[
            ("host", "127.0.0.1:9464"),
            ("origin", "http://127.0.0.1:9464"),
        ]);
        assert_eq!(cross_site_of(&same), None);
        let foreign = headers(&[
            ("host", "127.0.0.1:9464"),
            ("origin", "https://evil.example"),
        ]);
        assert!(cross_site_of(&foreign).unwrap().contains("Origin"));
        let null = headers(&[("host", "127.0.0.1:9464"), ("origin", "null")]);
        assert!(cross_site_of(&null).is_some());
        let fetch = headers(&[("host", "127.0.0.1:9464"), ("sec-fetch-site", "cross-site")]);
        assert!(cross_site_of(&fetch).is_some());
        let rebound = headers(&[
            ("host", "evil.example:9464"),
            ("origin", "http://evil.example:9464"),
        ]);
        assert!(cross_site_of(&rebound).unwrap().contains("evil.example"));
        let named = headers(&[("host", "sluice.internal:9464")]);
        assert_eq!(
            cross_site(&named, true),
            None,
            "admin.insecure: any host name"
        );
    }
}
