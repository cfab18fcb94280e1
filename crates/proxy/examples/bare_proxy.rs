//! The floor of the proxy's HTTP stack: hyper's HTTP/1.1 server, the proxy's upstream pool and
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
use gatehouse_proxy::upstream::{HostPool, UpstreamBody, UpstreamPools};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

async fn forward(pool: Arc<HostPool>, req: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let mut upstream = Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());
    *upstream.version_mut() = http::Version::HTTP_11;
    match pool.send(upstream).await {
        Ok((resp, lease)) => {
            let (parts, incoming) = resp.into_parts();
            let body = UpstreamBody::new(incoming, Duration::from_secs(60), lease);
            Response::from_parts(parts, body.boxed_unsync())
        }
        Err(_) => {
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
