//! The floor of the proxy's HTTP stack: hyper's HTTP/1.1 server, the proxy's upstream client and pool and
//! nothing else — no routing, no plugins, no forwarding headers, no error pages. Every request
//! goes as it came to one upstream and its response comes back as it is.
//!
//! `bench/README.md` measures it beside nginx and the real proxy to show how much of the gap to
//! nginx belongs to the stack rather than to Gatehouse's own work per request:
//!
//! ```sh
//! cargo run --release -p gatehouse-proxy --example bare_proxy -- 127.0.0.1:18090 127.0.0.1:18080
//! ```
#![allow(clippy::expect_used)]

use gatehouse_proxy::ProxyBody;
use gatehouse_proxy::h1;
use gatehouse_proxy::upstream::{HostPool, RequestBody, UpstreamPools, UpstreamRequest};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Forwards a request without a body (the benchmark's GETs; bodies are not sent).
async fn forward(pool: Arc<HostPool>, req: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, _) = req.into_parts();
    let mut head = Vec::with_capacity(512);
    h1::write_request_line(
        &mut head,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
    );
    h1::write_headers(&mut head, &parts.headers);
    head.extend_from_slice(b"\r\n");
    let request = UpstreamRequest {
        head: &head,
        body: RequestBody::Empty,
        method: &parts.method,
        read_timeout: Duration::from_secs(60),
        deadline: tokio::time::Instant::now() + Duration::from_secs(60),
    };
    match pool
        .send(request)
        .await
        .map(|r| (r.head.into_parts(), r.body))
    {
        Ok((Ok(parts), body)) => Response::from_parts(parts, body.boxed_unsync()),
        _ => {
            let mut resp = Response::new(gatehouse_proxy::empty_body());
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            resp
        }
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: bare_proxy <listen addr> <upstream host:port>");
    let upstream: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: bare_proxy <listen addr> <upstream host:port>");
    let pools = UpstreamPools::default();
    let pool = pools.get(&upstream.ip().to_string(), upstream.port(), 5000);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("cannot listen");
    println!("bare proxy listening on http://{listen}, forwarding to {upstream}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let pool = pool.clone();
                async move { Ok::<_, std::convert::Infallible>(forward(pool, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
