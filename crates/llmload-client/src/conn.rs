//! Connections: a TCP stream that stamps its own reads and writes, and a keep-alive pool.
//!
//! The stamps are what make the timestamps exact: `t_dispatch` is taken by the write call that
//! puts the request's first bytes on the socket, and every response event is stamped with the
//! arrival of the read that carried its bytes, not with the (later) moment a task got around
//! to parsing it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::body::RequestBody;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Nanoseconds are counted from this process-wide origin (so they fit an atomic).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

const UNSET: u64 = u64::MAX;

fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// Convert a probe stamp to an `Instant`.
pub(crate) fn ns_to_instant(ns: u64) -> Instant {
    origin() + Duration::from_nanos(ns)
}

/// What the socket saw during the current request.
#[derive(Debug)]
pub(crate) struct Probe {
    written: AtomicU64,
    read: AtomicU64,
    first_write_ns: AtomicU64,
    last_read_ns: AtomicU64,
    write_failed: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeSnapshot {
    pub written: u64,
    pub read: u64,
    pub first_write: Option<Instant>,
    pub last_read: Option<Instant>,
    pub write_failed: bool,
}

impl Probe {
    fn new() -> Self {
        // Make sure the origin predates every stamp.
        let _ = origin();
        Self {
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
            first_write_ns: AtomicU64::new(UNSET),
            last_read_ns: AtomicU64::new(UNSET),
            write_failed: AtomicBool::new(false),
        }
    }

    /// Start of a request on this connection.
    pub(crate) fn reset(&self) {
        self.written.store(0, Ordering::Relaxed);
        self.read.store(0, Ordering::Relaxed);
        self.first_write_ns.store(UNSET, Ordering::Relaxed);
        self.last_read_ns.store(UNSET, Ordering::Relaxed);
        self.write_failed.store(false, Ordering::Relaxed);
    }

    /// Arrival of the latest read (data or end of stream).
    pub(crate) fn last_read(&self) -> Option<Instant> {
        match self.last_read_ns.load(Ordering::Acquire) {
            UNSET => None,
            ns => Some(ns_to_instant(ns)),
        }
    }

    pub(crate) fn snapshot(&self) -> ProbeSnapshot {
        let fw = self.first_write_ns.load(Ordering::Acquire);
        ProbeSnapshot {
            written: self.written.load(Ordering::Acquire),
            read: self.read.load(Ordering::Acquire),
            first_write: (fw != UNSET).then(|| ns_to_instant(fw)),
            last_read: self.last_read(),
            write_failed: self.write_failed.load(Ordering::Acquire),
        }
    }

    fn on_write(&self, before_ns: u64, res: &Poll<io::Result<usize>>) {
        match res {
            Poll::Ready(Ok(n)) if *n > 0 => {
                if self.first_write_ns.load(Ordering::Relaxed) == UNSET {
                    self.first_write_ns.store(before_ns, Ordering::Release);
                }
                self.written.fetch_add(*n as u64, Ordering::Release);
            }
            Poll::Ready(Err(_)) => self.write_failed.store(true, Ordering::Release),
            _ => {}
        }
    }
}

/// A TCP stream that reports to its [`Probe`].
pub(crate) struct ProbedStream {
    inner: TcpStream,
    probe: Arc<Probe>,
}

impl AsyncRead for ProbedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let n = buf.filled().len() - before;
            self.probe.read.fetch_add(n as u64, Ordering::Release);
            self.probe.last_read_ns.store(now_ns(), Ordering::Release);
        }
        res
    }
}

impl AsyncWrite for ProbedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let t = now_ns();
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.probe.on_write(t, &res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let t = now_ns();
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.probe.on_write(t, &res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub(crate) type Sender = http1::SendRequest<RequestBody>;

/// One HTTP/1.1 connection.
pub(crate) struct Conn {
    pub sender: Sender,
    pub probe: Arc<Probe>,
    /// Requests sent on it before the current one.
    pub uses: u32,
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Resolve(io::Error),
    NoAddress,
    Io(SocketAddr, io::Error),
    Timeout(Duration),
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Resolve(e) => write!(f, "cannot resolve the host name: {e}"),
            ConnectError::NoAddress => write!(f, "the host name resolves to no address"),
            ConnectError::Io(a, e) => write!(f, "connecting to {a}: {e}"),
            ConnectError::Timeout(d) => {
                write!(
                    f,
                    "no connection within {:.1} s (--connect-timeout)",
                    d.as_secs_f64()
                )
            }
            ConnectError::Handshake(e) => write!(f, "HTTP handshake failed: {e}"),
        }
    }
}

/// Opens connections to one host and keeps idle ones for reuse (most recently used first:
/// the freshest connection is the least likely to have been closed by the server).
pub(crate) struct Pool {
    host: String,
    port: u16,
    addrs: tokio::sync::OnceCell<Vec<SocketAddr>>,
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
    connect_timeout: Duration,
    builder: http1::Builder,
}

impl Pool {
    pub(crate) fn new(host: String, port: u16, max_idle: usize, connect_timeout: Duration) -> Self {
        let mut builder = http1::Builder::new();
        // Small fixed read buffer: SSE events are small, and 10,000 streams must stay cheap.
        builder.read_buf_exact_size(Some(4096));
        builder.max_buf_size(1 << 20);
        Self {
            host,
            port,
            addrs: tokio::sync::OnceCell::new(),
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
            connect_timeout,
            builder,
        }
    }

    /// An idle connection that still looks open, if any.
    pub(crate) fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.sender.is_closed() {
                return Some(c);
            }
        }
        None
    }

    /// Test hook: the most recent idle connection, even one that looks closed.
    pub(crate) fn checkout_any(&self) -> Option<Conn> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Give a connection whose response was read to its end back for reuse.
    pub(crate) fn checkin(&self, mut conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        conn.uses += 1;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// Idle connections held now.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn resolve(&self) -> Result<&Vec<SocketAddr>, ConnectError> {
        self.addrs
            .get_or_try_init(|| async {
                let host = self.host.trim_start_matches('[').trim_end_matches(']');
                if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                    return Ok(vec![SocketAddr::new(ip, self.port)]);
                }
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, self.port))
                    .await
                    .map_err(ConnectError::Resolve)?
                    .collect();
                if addrs.is_empty() {
                    Err(ConnectError::NoAddress)
                } else {
                    Ok(addrs)
                }
            })
            .await
    }

    /// Open a fresh connection (not from the pool).
    pub(crate) async fn connect(&self) -> Result<Conn, ConnectError> {
        let fut = async {
            let addrs = self.resolve().await?;
            let mut last = ConnectError::NoAddress;
            for &a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Err(e) => last = ConnectError::Io(a, e),
                }
            }
            Err(last)
        };
        let tcp = tokio::time::timeout(self.connect_timeout, fut)
            .await
            .map_err(|_| ConnectError::Timeout(self.connect_timeout))??;
        let probe = Arc::new(Probe::new());
        let io = TokioIo::new(ProbedStream {
            inner: tcp,
            probe: probe.clone(),
        });
        let (sender, conn) = self
            .builder
            .handshake(io)
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            // The connection's errors reach the request that is using it.
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            probe,
            uses: 0,
        })
    }
}

/// Whether a failed attempt may be sent again on a fresh connection: only on a reused
/// connection, and only when the server provably cannot have processed it (hyper handed the
/// request back unsent, or writing it failed before a single response byte arrived).
pub(crate) fn may_retry(reused: bool, returned_unsent: bool, snap: &ProbeSnapshot) -> bool {
    reused && (returned_unsent || (snap.write_failed && snap.read == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(read: u64, write_failed: bool) -> ProbeSnapshot {
        ProbeSnapshot {
            written: 10,
            read,
            first_write: None,
            last_read: None,
            write_failed,
        }
    }

    #[test]
    fn retry_only_when_provably_unseen() {
        assert!(may_retry(true, true, &snap(0, false)));
        assert!(may_retry(true, false, &snap(0, true)));
        // Fully written, then closed: the server may have processed it.
        assert!(!may_retry(true, false, &snap(0, false)));
        // The server answered something.
        assert!(!may_retry(true, false, &snap(5, true)));
        // A fresh connection is never retried.
        assert!(!may_retry(false, true, &snap(0, true)));
    }
}
