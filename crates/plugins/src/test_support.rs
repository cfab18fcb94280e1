//! Helpers shared by the plugins' tests: requests, contexts, snapshots and a miniature plugin
//! chain runner that resolves instances per consumer like the proxy's handler.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use gatehouse_core::gateway::{Consumer, CoreEntity, Plugin as PluginEntity, Route, Service};
use gatehouse_proxy::context::{RequestCtx, RequestId};
use gatehouse_proxy::plugin::Flow;
use gatehouse_proxy::snapshot::{self, BuildCache, Consumers, Snapshot};
use gatehouse_proxy::{ProxyBody, ProxyRequest, empty_body, full_body};
use http::Response;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// A request as the proxy hands it to plugins.
pub fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> ProxyRequest {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    let upstream_path = parts.uri.path().to_owned();
    ProxyRequest {
        parts,
        body: if body.is_empty() {
            empty_body()
        } else {
            full_body(body.to_owned())
        },
        upstream_path,
    }
}

/// A `GET` with `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> ProxyRequest {
    request(
        "GET",
        "/anything",
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
}

/// The request id of every context [`ctx`] makes.
pub const TEST_REQUEST_ID: &str = "0000000000007e570000000000000001";

/// A fresh context on `snapshot`.
pub fn ctx(snapshot: &Arc<Snapshot>) -> RequestCtx {
    RequestCtx::new(
        snapshot.clone(),
        RequestId::from_parts(0x7e57, 1),
        "127.0.0.1:40000".parse().unwrap(),
    )
}

/// A consumer.
pub fn consumer(username: Option<&str>, custom_id: Option<&str>) -> Consumer {
    Consumer {
        id: Uuid::new_v4(),
        username: username.map(str::to_owned),
        custom_id: custom_id.map(str::to_owned),
        tags: None,
        created_at: 0,
        updated_at: 0,
    }
}

/// A snapshot holding only `consumers`.
pub fn snapshot(consumers: &[Consumer]) -> Arc<Snapshot> {
    let mut index = Consumers::default();
    for c in consumers {
        index.insert(Arc::new(c.clone()));
    }
    Arc::new(Snapshot {
        consumers: Arc::new(index),
        ..Snapshot::empty(Uuid::nil())
    })
}

/// The response of a [`Flow::Respond`]; panics on [`Flow::Continue`].
pub fn responded(flow: Flow) -> Response<ProxyBody> {
    match flow {
        Flow::Respond(r) => r,
        Flow::Continue => panic!("expected a response, the plugin continued"),
    }
}

/// Panics unless the flow continues (shows the response otherwise).
pub async fn continued(flow: Flow) {
    if let Flow::Respond(r) = flow {
        let status = r.status();
        let body = body_string(r.into_body()).await;
        panic!("expected Continue, got {status}: {body}");
    }
}

/// A body's bytes.
pub async fn body_bytes(body: ProxyBody) -> Bytes {
    body.collect().await.unwrap().to_bytes()
}

/// A body as text.
pub async fn body_string(body: ProxyBody) -> String {
    String::from_utf8(body_bytes(body).await.to_vec()).unwrap()
}

/// A body as JSON.
pub async fn body_json(body: ProxyBody) -> Value {
    serde_json::from_slice(&body_bytes(body).await).unwrap()
}

/// Builds configuration entities for [`snapshot::build`].
#[derive(Default)]
pub struct Entities {
    /// The control plane.
    pub cp: Uuid,
    /// Everything added so far.
    pub list: Vec<Arc<CoreEntity>>,
}

impl Entities {
    /// Adds a service; returns its id.
    pub fn service(&mut self, body: Value) -> Uuid {
        let id = Uuid::new_v4();
        let s = Service::from_input(id, body, 0, 0).unwrap();
        self.list.push(Arc::new(s.to_entity(self.cp)));
        id
    }

    /// Adds a route; returns its id.
    pub fn route(&mut self, body: Value) -> Uuid {
        let id = Uuid::new_v4();
        let r = Route::from_input(id, body, 0, 0).unwrap();
        self.list.push(Arc::new(r.to_entity(self.cp)));
        id
    }

    /// Adds a consumer.
    pub fn consumer(&mut self, c: &Consumer) {
        let body = serde_json::json!({"username": c.username, "custom_id": c.custom_id});
        let c = Consumer::from_input(c.id, body, 0, 0).unwrap();
        self.list.push(Arc::new(c.to_entity(self.cp)));
    }

    /// Adds a plugin validated by this crate's registry; returns its id.
    pub fn plugin(&mut self, body: Value) -> Uuid {
        let id = Uuid::new_v4();
        let p = PluginEntity::from_input(id, body, 0, 0, &crate::registry()).unwrap();
        self.list.push(Arc::new(p.to_entity(self.cp)));
        id
    }

    /// The snapshot of these entities.
    pub fn build(&self, cache: &mut BuildCache) -> Arc<Snapshot> {
        let upstreams = gatehouse_proxy::upstream::UpstreamPools::default();
        Arc::new(
            snapshot::build(self.cp, &self.list, &crate::registry(), cache, &upstreams).unwrap(),
        )
    }
}

/// Runs the `access` phase of the first route's chain as the proxy's handler does: each slot's
/// instance is chosen by the consumer authenticated so far.
pub async fn run_chain(snapshot: &Arc<Snapshot>, req: &mut ProxyRequest) -> (RequestCtx, Flow) {
    let route = snapshot.routes.first().cloned().expect("a route");
    let mut ctx = ctx(snapshot);
    ctx.route = Some(route.clone());
    for slot in &route.plugins {
        let Some(inst) = slot.resolve(ctx.consumer.as_ref().map(|c| c.id)).cloned() else {
            continue;
        };
        match inst.plugin.access(&mut ctx, req).await {
            Ok(Flow::Continue) => {}
            Ok(flow) => return (ctx, flow),
            Err(e) => panic!("plugin {} failed: {e}", inst.name),
        }
    }
    (ctx, Flow::Continue)
}
