//! Accept loops: connection limit, HTTP/1.1 with a header-read timeout and a head size cap,
//! graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::proxy::{GwBody, Shared};

pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    shared: Arc<Shared>,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Arc<Shared>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<GwBody>, std::convert::Infallible>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(shared.cfg.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.cfg.header_read_timeout)
        .max_buf_size(shared.cfg.max_header_bytes)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                eprintln!("llmload gateway: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared2 = shared.clone();
        let h = handler.clone();
        let svc = service_fn(move |req| h(shared2.clone(), req));
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    // Let in-flight requests finish, within reason.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}
