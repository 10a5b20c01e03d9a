//! The admin listener (axum): `GET /metrics` (Prometheus/OpenMetrics text), `GET /healthz`,
//! `GET /readyz` (ready while the task runs), `GET /v1/tasks` (state, checkpoints, lag,
//! channel fill) and `POST /v1/tasks/{repo}/pause|resume|stop`. With a token, the `/v1/` routes
//! require `Authorization: Bearer <token>`. Credentials never appear in any answer. A push
//! repo also takes its data here: `POST /v1/repos/{repo}/data` (see `source::push::http`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::channel::Channel;
use crate::metrics::Metrics;
use crate::sink::control::Control;
use crate::source::push::http::PushApi;

/// What the admin routes read and act on.
pub struct AdminState {
    pub job: String,
    pub repo: String,
    pub metrics: Arc<Metrics>,
    pub control: Arc<Control>,
    pub channel: Arc<Channel>,
    pub stop: Arc<AtomicBool>,
    pub token: Option<String>,
    /// The push route of a push repo.
    pub push: Option<Arc<PushApi>>,
}

/// Binds `listen` and serves on `runtime` until the process ends. Returns the bound address
/// (the port may have been 0).
pub fn serve(
    runtime: &tokio::runtime::Runtime,
    listen: SocketAddr,
    state: Arc<AdminState>,
) -> std::io::Result<SocketAddr> {
    let listener = runtime.block_on(tokio::net::TcpListener::bind(listen))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/v1/tasks", get(tasks))
        .route("/v1/tasks/{repo}/{action}", post(act))
        .route("/v1/repos/{repo}/data", post(push))
        .with_state(state);
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the admin listener stopped");
        }
    });
    Ok(addr)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The refusal to send when the route needs the token and the request lacks it.
fn refusal(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let token = state.token.as_ref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    (given != Some(token.as_str())).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "this route needs `Authorization: Bearer <token>` (admin.token of the job)",
        )
    })
}

/// The answer for a repo this job does not run.
fn unknown_repo(state: &AdminState, repo: &str) -> Option<Response> {
    (repo != state.repo).then(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no repo `{repo}` in this job (it runs `{}`)", state.repo),
        )
    })
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    let (bytes, batches) = s.channel.usage();
    s.metrics.channel(bytes, batches);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn ready(State(s): State<Arc<AdminState>>) -> Response {
    let state = s.metrics.state();
    if state == "running" {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, format!("task is {state}"))
    }
}

async fn tasks(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let (bytes, batches) = s.channel.usage();
    let mut parts: Vec<serde_json::Value> = s
        .control
        .parts
        .lock()
        .expect("parts lock")
        .values()
        .filter(|p| p.owned)
        .map(|p| {
            json!({
                "partition": p.key,
                "checkpoint_seq": p.seq,
                "committed_offset": p.committed_offset,
                "lag": s.metrics.lag_of(&p.key),
            })
        })
        .collect();
    parts.sort_by(|a, b| a["partition"].as_str().cmp(&b["partition"].as_str()));
    Json(json!([{
        "job": s.job,
        "repo": s.repo,
        "state": s.metrics.state(),
        "paused": s.control.paused.load(Ordering::Acquire),
        "channel": { "bytes": bytes, "batches": batches, "max_bytes": s.channel.max_bytes() },
        "partitions": parts,
    }]))
    .into_response()
}

async fn act(
    State(s): State<Arc<AdminState>>,
    Path((repo, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refusal(&s, &headers).or_else(|| unknown_repo(&s, &repo)) {
        return r;
    }
    match action.as_str() {
        "pause" => s.control.paused.store(true, Ordering::Release),
        "resume" => s.control.paused.store(false, Ordering::Release),
        "stop" => s.stop.store(true, Ordering::Release),
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no action `{other}` (pause, resume or stop)"),
            )
        }
    }
    tracing::info!(repo, action, "admin request");
    Json(json!({ "repo": repo, "action": action, "state": s.metrics.state() })).into_response()
}

async fn push(
    State(s): State<Arc<AdminState>>,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = refusal(&s, &headers).or_else(|| unknown_repo(&s, &repo)) {
        return r;
    }
    let Some(api) = s.push.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            format!("repo `{repo}` does not take pushes (its source is not `push`)"),
        );
    };
    crate::source::push::http::push(api, headers, body).await
}
