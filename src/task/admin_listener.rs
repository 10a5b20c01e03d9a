//! The admin listener of a process (metrics, status, control), started once for the repos of
//! one job file when it has `[admin]`, and outliving their tasks.

use std::sync::Arc;

use super::{repo_label, TaskError};
use crate::admin::Admin;
use crate::config::Job;

/// The admin listener of a process, shared by its repos.
pub struct AdminServer {
    pub admin: Arc<Admin>,
    pub addr: std::net::SocketAddr,
    /// Serves the listener; dropping it closes the listener.
    _runtime: tokio::runtime::Runtime,
}

/// Starts the admin listener of `jobs` (the repos of one job file) when they have `[admin]`.
pub fn start_admin(jobs: &[Job]) -> Result<Option<AdminServer>, TaskError> {
    let Some(first) = jobs.first() else {
        return Ok(None);
    };
    let Some(a) = &first.file.admin else {
        return Ok(None);
    };
    let fail = |reason: String| TaskError::Job {
        job: first.file.job.name.clone(),
        reason,
    };
    let listen: std::net::SocketAddr = a
        .listen
        .parse()
        .map_err(|e| fail(format!("admin.listen `{}`: {e}", a.listen)))?;
    let repos: Vec<(String, String)> = jobs
        .iter()
        .map(|j| (repo_label(j), j.file.job.name.clone()))
        .collect();
    let admin = Arc::new(Admin::new(a.token.clone(), &repos).with_any_host(a.insecure));
    let blocking = jobs
        .iter()
        .map(|j| match &j.file.source {
            crate::config::SourceSection::Push { max_concurrent, .. } => *max_concurrent,
            _ => 0,
        })
        .fold(0usize, usize::saturating_add);
    let (runtime, addr) = admin
        .clone()
        .start(listen, blocking)
        .map_err(|e| fail(format!("admin.listen {listen}: {e}")))?;
    tracing::info!(%addr, "admin API listening");
    if a.token.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(%addr, "the admin API is reachable from other hosts without a token (admin.token)");
    }
    Ok(Some(AdminServer {
        admin,
        addr,
        _runtime: runtime,
    }))
}
