//! A connection's write deadline: while answers wait on the peer, it must take at least
//! [`MIN_PROGRESS`] bytes of them within each [`WRITE_TIMEOUT`], or writes fail and the
//! connection closes.
//!
//! A client that sends requests (pipelined, or one for a long answer) and reads nothing held
//! its connection's slot, and the answers queued in the kernel, for ever. A byte count and
//! not only a wait: a client that takes a little every 29 s is let write again each time the
//! kernel frees a third of its buffer, so a plain "took none for 30 s" never fires for it.
//! A window opens when a write first waits and closes once the peer has taken
//! [`MIN_PROGRESS`] bytes; one that ran out while nothing waited (answers done, connection
//! idle) is not held against the next wait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The longest a window of waiting answers may take to move [`MIN_PROGRESS`] bytes.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The bytes a peer must take of waiting answers within [`WRITE_TIMEOUT`].
pub const MIN_PROGRESS: usize = 64 * 1024;

/// A stream whose writes fail once answers have waited on the peer past its deadline.
pub struct WriteDeadline<S> {
    io: S,
    timeout: Duration,
    min_progress: usize,
    /// Fires at the end of the open window; created once, reset per window.
    sleep: Pin<Box<Sleep>>,
    window: Option<Window>,
}

/// A window of waiting answers.
struct Window {
    /// Bytes the peer took since it opened.
    taken: usize,
    /// The last write waited (it did not go through).
    waiting: bool,
}

impl<S> WriteDeadline<S> {
    /// `io` with the listener's deadline.
    pub fn new(io: S) -> Self {
        Self::with(io, WRITE_TIMEOUT, MIN_PROGRESS)
    }

    fn with(io: S, timeout: Duration, min_progress: usize) -> Self {
        WriteDeadline {
            io,
            timeout,
            min_progress,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            window: None,
        }
    }

    /// What a write that returned `result` (`n` bytes taken when it went through) returns:
    /// its result, or an error once its window has run out while it waits.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<T>>,
        taken: impl FnOnce(&T) -> usize,
    ) -> Poll<std::io::Result<T>> {
        match &result {
            Poll::Ready(Ok(v)) => {
                if let Some(w) = &mut self.window {
                    w.taken = w.taken.saturating_add(taken(v));
                    w.waiting = false;
                    if w.taken >= self.min_progress {
                        self.window = None;
                    }
                }
                return result;
            }
            Poll::Ready(Err(_)) => return result,
            Poll::Pending => {}
        }
        let ran_out_idle = self
            .window
            .as_ref()
            .is_some_and(|w| !w.waiting && self.sleep.is_elapsed());
        match &mut self.window {
            Some(w) if !ran_out_idle => w.waiting = true,
            _ => {
                self.sleep.as_mut().reset(Instant::now() + self.timeout);
                self.window = Some(Window {
                    taken: 0,
                    waiting: true,
                });
            }
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the peer took under {} bytes of waiting answers in {:?}",
                    self.min_progress, self.timeout
                ),
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
        self.check(cx, result, |n| *n)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, result, |n| *n)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, result, |_| 0)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_shutdown(cx);
        self.check(cx, result, |_| 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Duration = Duration::from_millis(300);

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Writes `total` bytes in pieces; the error, if the deadline ended it.
    async fn write(w: &mut WriteDeadline<tokio::io::DuplexStream>, total: usize) -> Option<String> {
        let piece = vec![b'x'; 1024];
        let mut sent = 0;
        while sent < total {
            if let Err(e) = w.write_all(&piece).await {
                return Some(e.to_string());
            }
            sent += piece.len();
        }
        None
    }

    /// A peer that takes nothing is cut off after the timeout.
    #[test]
    fn a_peer_that_takes_nothing_is_cut_off() {
        runtime().block_on(async {
            let (a, _b) = tokio::io::duplex(4096);
            let mut w = WriteDeadline::with(a, T, 8192);
            let e = write(&mut w, 1 << 20).await.expect("the write must fail");
            assert!(e.contains("took under 8192 bytes"), "{e}");
        });
    }

    /// A peer that takes a little at a time, less than the minimum per window, is cut off
    /// though every read lets a write go through (a plain "none for so long" never fired).
    #[test]
    fn a_peer_that_trickles_is_cut_off() {
        runtime().block_on(async {
            let (a, mut b) = tokio::io::duplex(1024);
            let mut w = WriteDeadline::with(a, T, 64 * 1024);
            let reader = tokio::spawn(async move {
                let mut buf = [0u8; 512];
                loop {
                    tokio::time::sleep(T / 3).await;
                    match b.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            });
            assert!(write(&mut w, 32 * 1024).await.is_some());
            drop(w);
            reader.await.unwrap();
        });
    }

    /// A peer that reads everything is never cut off, stalls and idle pauses longer than the
    /// timeout included (a window that ran out while nothing waited is not held against it).
    #[test]
    fn a_peer_that_keeps_up_is_never_cut_off() {
        runtime().block_on(async {
            let (a, mut b) = tokio::io::duplex(1024);
            // A window long enough that a busy machine's scheduling cannot run it out.
            let window = Duration::from_secs(1);
            let mut w = WriteDeadline::with(a, window, 8192);
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = 0;
                loop {
                    match b.read(&mut buf).await {
                        Ok(0) | Err(_) => return got,
                        Ok(n) => got += n,
                    }
                }
            });
            for _ in 0..3 {
                // A short answer that waits briefly on the peer, then an idle pause.
                assert_eq!(write(&mut w, 2048).await, None);
                tokio::time::sleep(window + T).await;
            }
            assert_eq!(write(&mut w, 256 * 1024).await, None);
            drop(w);
            assert_eq!(reader.await.unwrap(), 3 * 2048 + 256 * 1024);
        });
    }
}
