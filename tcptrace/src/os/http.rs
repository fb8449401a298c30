//! The exporter's HTTP edge: a small HTTP/1.1 server (hyper) on a thread and runtime of its
//! own, so that encoding a scrape never takes a turn of the event loop's. Every request is
//! bounded: the time to send the headers, their size, how long a connection lives, and how
//! many connections are open at once (past that, a connection gets a 503 and is closed).
//! With `--web-config`, connections are TLS (rustls, client certificates verified in the
//! handshake when configured) and every request needs a configured user's credentials (401
//! otherwise); a TLS handshake is bounded like the headers.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, header, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::Semaphore,
};
use tokio_rustls::TlsAcceptor;

use super::web_config::WebSetup;
use crate::core::web_config::BasicAuth;

/// What bounds the server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time a client has to send a request's headers (each request of a kept-alive connection
    /// too); a slow client is cut off after it.
    pub header_timeout: Duration,
    /// Largest request head read, in bytes (at least 8 KiB); larger: 431.
    pub max_header_bytes: usize,
    /// Longest a connection stays open, whatever it does (a client that never reads).
    pub connection_lifetime: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            connection_lifetime: Duration::from_secs(120),
            max_connections: 1024,
        }
    }
}

/// A request, as much of it as the exporter looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub accept: Option<String>,
    /// `X-Prometheus-Scrape-Timeout-Seconds`: how long the scraper waits, when it says.
    pub scrape_timeout: Option<Duration>,
}

/// A response with its whole body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

pub type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
pub type Handler = Arc<dyn Fn(Request) -> ResponseFuture + Send + Sync>;

/// Counts the server keeps.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections turned away because `max_connections` were open.
    pub refused: AtomicU64,
}

/// Binds the listening socket now, so that a bad address or a port in use fails before
/// anything else starts.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `handler` on `listener` from a thread of its own, until the process ends; that
/// thread runs `setup` first (giving up capabilities, say: the threads of its blocking pool
/// inherit its own).
pub fn spawn(
    listener: std::net::TcpListener,
    limits: Limits,
    handler: Handler,
    stats: Arc<ServerStats>,
    web: WebSetup,
    setup: impl FnOnce() + Send + 'static,
) -> io::Result<thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    thread::Builder::new()
        .name("tcptrace-http".into())
        .spawn(move || {
            setup();
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, limits, handler, stats, web).await,
                    Err(err) => log::error!("the HTTP server cannot start: {err}"),
                }
            })
        })
}

const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// bcrypt verifications run at once: each takes tens of milliseconds of CPU by design, and a
/// client sending wrong passwords must not take more than that.
const VERIFICATIONS: usize = 2;

async fn serve(
    listener: tokio::net::TcpListener,
    limits: Limits,
    handler: Handler,
    stats: Arc<ServerStats>,
    web: WebSetup,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let verifications = Arc::new(Semaphore::new(VERIFICATIONS));
    let tls = web.tls.map(TlsAcceptor::from);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors, most likely: wait for some to be freed.
                log::warn!("HTTP: accepting a connection failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            // One non-blocking write: a client that does not read gets nothing, and costs
            // nothing. (Plain text, even on a TLS port: it is closed either way.)
            let _ = stream.try_write(BUSY);
            continue;
        };
        let handler = handler.clone();
        let tls = tls.clone();
        let guard = Guard {
            auth: web.auth.clone(),
            verifications: verifications.clone(),
        };
        tokio::spawn(async move {
            let _slot = slot;
            let connection = async move {
                match tls {
                    None => connection(stream, limits, handler, guard).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(stream)) => connection(stream, limits, handler, guard).await,
                            // A failed or too slow handshake: nothing to answer.
                            Ok(Err(err)) => log::debug!("HTTP: TLS handshake failed: {err}"),
                            Err(_) => log::debug!("HTTP: TLS handshake timed out"),
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(limits.connection_lifetime, connection).await;
        });
    }
}

/// The basic-auth check of a connection's requests, if configured.
#[derive(Clone)]
struct Guard {
    auth: Option<Arc<BasicAuth>>,
    verifications: Arc<Semaphore>,
}

impl Guard {
    /// True when the request may go on.
    async fn admits(&self, authorization: Option<String>) -> bool {
        let Some(auth) = self.auth.clone() else {
            return true;
        };
        let Ok(_permit) = self.verifications.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || auth.check(authorization.as_deref()))
            .await
            .unwrap_or(false)
    }
}

fn unauthorized() -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(
        b"401 Unauthorized: this exporter needs a user and password (basic auth)\n",
    )));
    *response.status_mut() = hyper::StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"tcptrace\""),
    );
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves the requests of one connection, plain or TLS.
async fn connection<S>(stream: S, limits: Limits, handler: Handler, guard: Guard)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let handler = handler.clone();
        let guard = guard.clone();
        async move {
            let authorization = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if !guard.admits(authorization).await {
                return Ok::<_, Infallible>(unauthorized());
            }
            let request = Request {
                method: request.method().as_str().to_owned(),
                path: request.uri().path().to_owned(),
                accept: request
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                scrape_timeout: request
                    .headers()
                    .get("x-prometheus-scrape-timeout-seconds")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|secs| secs.is_finite() && *secs > 0.0 && *secs < 86_400.0)
                    .map(Duration::from_secs_f64),
            };
            let response = handler(request).await;
            let mut built = hyper::Response::new(Full::new(response.body));
            *built.status_mut() = hyper::StatusCode::from_u16(response.status)
                .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
            built.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(response.content_type),
            );
            Ok::<_, Infallible>(built)
        }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
