//! The admin listener's accept loop: HTTP/1 connections served by hyper, with the bounds that
//! `axum::serve` leaves unset.
//!
//! - A request's header must arrive within [`HEADER_TIMEOUT`] (hyper's header-read timeout
//!   needs a timer, which `axum::serve` does not give it, so a connection that sent part of a
//!   header and stopped stayed open for ever); the same applies to a kept-alive connection
//!   waiting for its next request.
//! - A connection reads a header into a buffer of about [`MAX_BUFFER`] (hyper's default is
//!   about 400 KB): a longer header is answered 431 once the buffer is full (a read may take
//!   in more at once, so the cap is not exact; 512 connections that each sent 63 KiB of a
//!   header held 40 MB in all).
//! - While answers wait on a client, it must take 64 KiB of them in each 30 s or its
//!   connection closes ([`WriteDeadline`]): a client that sent requests (pipelined, or one for
//!   a long answer) and read nothing held its slot, and the answers queued for it, for ever.
//! - At most [`MAX_CONNECTIONS`] connections are open at once; more wait in the kernel's
//!   backlog until one closes. Past three quarters of them, a new connection serves one
//!   request and closes, and every kept-alive connection is told to close once its request
//!   in progress is answered (an idle one closes at once), so neither a fleet of kept-alive
//!   push clients nor a client that keeps three quarters of the slots alive with a request
//!   every few seconds holds them while others wait.
//!
//! Without them, 6,000 connections that each sent 390 KB of a header and waited held 2.6 GB,
//! before any token check, counted in no memory bound.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::deadline::WriteDeadline;

/// The longest a request's header may take to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's read buffer at most, about: the longest header it takes.
pub const MAX_BUFFER: usize = 64 * 1024;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// Serves `app` on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, app: Router) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut kept = hyper::server::conn::http1::Builder::new();
    // A client that shuts its side after sending the request still reads the answer (`nc
    // -N`): by default its end of input aborted the request, whose records were then taken
    // with no answer to tell it (and its retry took them again).
    kept.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BUFFER)
        .half_close(true);
    let mut once = kept.clone();
    once.keep_alive(false);
    let (kept, once) = (Arc::new(kept), Arc::new(once));
    // Sent when the listener gets busy: kept-alive connections close after their request.
    let (busy_now, _) = tokio::sync::watch::channel(());
    loop {
        let permit = open
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // A connection reset before it was taken: the next one.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors: wait a little rather than spin.
                tracing::warn!(error = %e, "the admin listener could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let busy = open.available_permits() < MAX_CONNECTIONS / 4;
        if busy {
            busy_now.send_replace(());
        }
        let http = if busy { once.clone() } else { kept.clone() };
        let mut told = busy_now.subscribe();
        let app = app.clone();
        tokio::spawn(async move {
            let _open = permit;
            let conn = http.serve_connection(
                TokioIo::new(WriteDeadline::new(stream)),
                TowerToHyperService::new(app),
            );
            tokio::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                Ok(()) = told.changed(), if !busy => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "an admin connection ended with an error");
            }
        });
    }
}

/// An accept error that concerns one connection only.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
