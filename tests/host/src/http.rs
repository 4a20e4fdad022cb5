//! The `wasi:http/incoming-handler` export: a loopback server ([`Host::serve`]) and an
//! in-process call ([`Host::handle_http`]), both with a fresh instance per request.

use crate::host::{Host, Shared};
use anyhow::{anyhow, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime::error::Context as _;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView as _;

/// A response as [`Host::handle_http`] returns it: `(status, headers, body)`, headers in the
/// order the component set them, names in lower case.
pub type HttpReply = (u16, Vec<(String, String)>, Vec<u8>);

/// A multi-threaded tokio runtime for serving requests; guests run on its blocking pool.
pub(crate) fn new_runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .context("starting a tokio runtime")?)
}

/// A running loopback HTTP server in front of the component; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url()` followed by `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url())
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Drops the listener and every connection; running guests finish on their own
            // (within the deadline). Safe to call from async code too.
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Host {
    /// Serves the component's `wasi:http/incoming-handler` on `127.0.0.1:0` until the returned
    /// [`Server`] is dropped. See [`serve_on`](Self::serve_on).
    pub fn serve(&self) -> Result<Server> {
        self.serve_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves the component's `wasi:http/incoming-handler` on `addr` (port 0 picks a free
    /// port) until the returned [`Server`] is dropped.
    ///
    /// The socket is listening when this returns. Requests are served concurrently, each by a
    /// fresh instance; a request the component fails to answer (trap, deadline, no response)
    /// gets a bare 500 and is recorded in [`http_errors`](Host::http_errors). Like Spin, the
    /// guest sees an absolute URL `http://<Host header><path>` and the headers `spin-full-url`,
    /// `spin-path-info` and `spin-client-addr`.
    pub fn serve_on(&self, addr: SocketAddr) -> Result<Server> {
        let listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let runtime = new_runtime("dingtalk-host-server")?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).context("registering the listener")?
        };
        runtime.spawn(accept_loop(listener, addr, self.shared.clone()));
        Ok(Server {
            addr,
            runtime: Some(runtime),
        })
    }

    /// Sends one request to the component's `wasi:http/incoming-handler` in-process (no socket)
    /// and returns `(status, headers, body)`.
    ///
    /// `path_and_query` starts with `/`; the URL's authority is the `host` header when given,
    /// else `localhost`. Blocks the calling thread: call it from synchronous code, not from
    /// inside a tokio runtime. A trap, deadline or missing response is an `Err`.
    pub fn handle_http(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<HttpReply> {
        let authority = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map_or("localhost", |(_, value)| value.as_str());
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{authority}{path_and_query}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .context("building the request")?;

        let runtime = self.runtime.get()?;
        let shared = self.shared.clone();
        runtime.block_on(async move {
            let response = dispatch(shared, request).await?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .context("reading the component's response body")?
                .to_bytes();
            let headers = parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect();
            Ok((parts.status.as_u16(), headers, body.to_vec()))
        })
    }
}

/// Accepts connections until the runtime shuts down; one task per connection.
async fn accept_loop(listener: tokio::net::TcpListener, local: SocketAddr, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("[dingtalk-host] accept failed: {e}");
                continue;
            }
        };
        // Small responses go out at once (no Nagle delay against the client's delayed ACK).
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(serve_one(shared, local, peer, request).await) }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("[dingtalk-host] connection from {peer} failed: {e}");
            }
        });
    }
}

/// Answers one request from the loopback server, turning a failure into a bare 500.
async fn serve_one(
    shared: Arc<Shared>,
    local: SocketAddr,
    peer: SocketAddr,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<HyperOutgoingBody> {
    let request = match spin_like(request, local, peer) {
        Ok(request) => request,
        Err(e) => return plain_response(400, format!("bad request: {e}")),
    };
    match dispatch(shared.clone(), request).await {
        Ok(response) => response,
        Err(e) => {
            shared.record_http_error(&e);
            plain_response(500, "the component failed to answer this request\n".into())
        }
    }
}

/// The request as Spin hands it over: absolute URL, plus Spin's informational headers.
fn spin_like<B>(
    request: hyper::Request<B>,
    local: SocketAddr,
    peer: SocketAddr,
) -> Result<hyper::Request<B>> {
    let (mut parts, body) = request.into_parts();
    let authority = match parts.headers.get(hyper::header::HOST) {
        Some(host) => host.to_str().context("non-ASCII host header")?.to_owned(),
        None => local.to_string(),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let full_url = format!("http://{authority}{path_and_query}");
    parts.uri = full_url
        .parse::<http::Uri>()
        .context("rebuilding the request URL")?;
    let path_info = parts.uri.path().to_owned();
    for (name, value) in [
        ("spin-full-url", full_url),
        ("spin-path-info", path_info),
        ("spin-client-addr", peer.to_string()),
    ] {
        parts.headers.insert(
            name,
            value
                .parse::<http::HeaderValue>()
                .context("building a spin-* header")?,
        );
    }
    Ok(hyper::Request::from_parts(parts, body))
}

fn plain_response(status: u16, text: String) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("valid"),
    );
    response
}

/// Runs one request through a fresh instance of the component.
///
/// The guest runs on the blocking pool while this awaits its `response-outparam::set`; the
/// response body then streams from the guest as it writes, so a large body cannot deadlock.
async fn dispatch<B>(
    shared: Arc<Shared>,
    request: hyper::Request<B>,
) -> Result<hyper::Response<HyperOutgoingBody>>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let mut store = shared.new_store();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let request = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .context("creating the incoming-request resource")?;
    let outparam = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .context("creating the response-outparam resource")?;
    let pre = shared.linked.proxy.clone();
    let guest = tokio::task::spawn_blocking(move || -> Result<()> {
        let proxy = pre
            .instantiate(&mut store)
            .context("instantiating the component")?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, outparam)
            .context("calling wasi:http/incoming-handler.handle")?;
        Ok(())
    });

    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Err(anyhow!("the component answered with error code {code:?}")),
        // The store, and with it the sender, is gone: the guest returned or trapped first.
        Err(_) => match guest.await {
            Ok(Ok(())) => Err(anyhow!(
                "the component returned without calling response-outparam.set"
            )),
            Ok(Err(e)) => Err(e),
            Err(join) => Err(anyhow!(join).context("the guest task panicked")),
        },
    }
}
