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
//! - A connection whose peer takes none of a response for [`WRITE_TIMEOUT`] is closed
//!   ([`WriteDeadline`]): a client that sent requests (pipelined, or one for a long answer)
//!   and stopped reading held its slot for ever, and 512 of them shut the listener.
//! - At most [`MAX_CONNECTIONS`] connections are open at once; more wait in the kernel's
//!   backlog until one closes. Past three quarters of them, a new connection serves one
//!   request and closes, so a fleet of kept-alive push clients cannot hold every slot.
//!
//! Without them, 6,000 connections that each sent 390 KB of a header and waited held 2.6 GB,
//! before any token check, counted in no memory bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// The longest a request's header may take to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a connection's peer may take none of a response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection's read buffer at most, about: the longest header it takes.
pub const MAX_BUFFER: usize = 64 * 1024;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// Serves `app` on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, app: Router) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut kept = hyper::server::conn::http1::Builder::new();
    kept.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BUFFER);
    let mut once = kept.clone();
    once.keep_alive(false);
    let (kept, once) = (Arc::new(kept), Arc::new(once));
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
        let http = if busy { once.clone() } else { kept.clone() };
        let app = app.clone();
        tokio::spawn(async move {
            let _open = permit;
            let served = http
                .serve_connection(
                    TokioIo::new(WriteDeadline::new(stream)),
                    TowerToHyperService::new(app),
                )
                .await;
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

/// A stream whose writes fail once they have waited [`WRITE_TIMEOUT`] without the peer taking
/// a byte; any progress starts the wait again.
struct WriteDeadline<S> {
    io: S,
    /// When the write waiting now gives up; `None` while writes go through.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(io: S) -> Self {
        WriteDeadline { io, stalled: None }
    }

    /// What a write that returned `result` returns: its result, or once it has waited
    /// too long, an error.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer took none of the response within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_shutdown(cx);
        self.check(cx, result)
    }
}
