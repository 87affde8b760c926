//! The keep-alive pool: idle [`Conn`]s to one host, and opening new ones.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::http1::Conn;

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Resolve(io::Error),
    NoAddress,
    Io(SocketAddr, io::Error),
    Timeout(Duration),
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
}

impl Pool {
    pub(crate) fn new(host: String, port: u16, max_idle: usize, connect_timeout: Duration) -> Self {
        Self {
            host,
            port,
            addrs: tokio::sync::OnceCell::new(),
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
            connect_timeout,
        }
    }

    /// An idle connection that still looks open, if any (closed ones are dropped).
    pub(crate) fn checkout(&self) -> Option<Conn> {
        loop {
            let mut c = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            if c.looks_alive() {
                return Some(c);
            }
        }
    }

    /// Test hook: the most recent idle connection, without checking it.
    pub(crate) fn checkout_any(&self) -> Option<Conn> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Give back a connection whose response was read to its end (see [`Conn::reusable`]).
    pub(crate) fn checkin(&self, mut conn: Conn) {
        conn.park();
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
        Ok(Conn::new(tcp))
    }
}
