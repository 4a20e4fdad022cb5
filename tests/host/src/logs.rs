//! The guest's stdout and stderr: kept in memory so tests can read them, and echoed to the real
//! stderr when `DINGTALK_HOST_ECHO=1`.

use bytes::Bytes;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes kept at most; later output is dropped (and noted) so a chatty benchmark stays bounded.
const CAPACITY: usize = 16 * 1024 * 1024;

/// Environment variable that turns on echoing guest output to the host's stderr.
pub(crate) const ECHO_ENV: &str = "DINGTALK_HOST_ECHO";

/// A shared, bounded log buffer that every store of one [`Host`](crate::Host) writes into.
#[derive(Clone)]
pub(crate) struct GuestLog {
    inner: Arc<Mutex<LogBuffer>>,
    echo: bool,
}

#[derive(Default)]
struct LogBuffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl GuestLog {
    /// A new, empty log; echoing follows `DINGTALK_HOST_ECHO`.
    pub(crate) fn new() -> Self {
        GuestLog {
            inner: Arc::default(),
            echo: std::env::var(ECHO_ENV).is_ok_and(|v| v == "1"),
        }
    }

    /// Everything logged so far, lossily decoded as UTF-8.
    pub(crate) fn contents(&self) -> String {
        let buf = self.lock();
        let mut text = String::from_utf8_lossy(&buf.bytes).into_owned();
        if buf.dropped > 0 {
            text.push_str(&format!("\n[host] {} further bytes dropped\n", buf.dropped));
        }
        text
    }

    /// Forgets everything logged so far.
    pub(crate) fn clear(&self) {
        *self.lock() = LogBuffer::default();
    }

    fn append(&self, bytes: &[u8]) {
        {
            let mut buf = self.lock();
            let room = CAPACITY.saturating_sub(buf.bytes.len());
            let kept = bytes.len().min(room);
            buf.bytes.extend_from_slice(&bytes[..kept]);
            buf.dropped += bytes.len() - kept;
        }
        if self.echo {
            // Echoing is best effort: a closed stderr must not fail the guest.
            let _ = std::io::stderr().write_all(bytes);
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogBuffer> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always writable: output beyond the capacity is dropped, never refused.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
