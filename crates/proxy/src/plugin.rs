//! The plugin runtime's contract: the [`Plugin`] trait (Kong's handler phases), the
//! [`PluginFactory`] that validates a plugin's configuration and builds instances (Kong's
//! `schema.lua`), and the [`Registry`] of every plugin this build knows.
//!
//! A factory validates a configuration once, when it is written through the admin API; the
//! snapshot builder then calls [`PluginFactory::build`] and keeps the instance for as long as
//! the configuration does not change, so per-instance state such as a cache survives unrelated
//! configuration changes.

use crate::context::RequestCtx;
use crate::{ProxyBody, ProxyRequest};
use async_trait::async_trait;
use gatehouse_core::gateway::PluginSchemas;
use gatehouse_core::kong_schema::FieldErrors;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a phase tells the runtime to do next.
pub enum Flow {
    /// Go on with the next plugin, then the upstream.
    Continue,
    /// Answer the client with this response; no later plugin's `access` and no upstream call.
    Respond(http::Response<ProxyBody>),
}

/// A plugin failed in a way the client cannot fix: the runtime answers 500 with the generic
/// body and logs the cause (never sent to the client).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

/// A configured plugin instance. Phases run in plugin priority order; each has a default that
/// does nothing, so a plugin implements only the phases it needs.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// Runs after routing, before the request is sent upstream. May change the request
    /// (headers, path, body), set the authenticated consumer and credential on `ctx`, or answer
    /// the request itself with [`Flow::Respond`]. Default: continue unchanged.
    async fn access(
        &self,
        ctx: &mut RequestCtx,
        req: &mut ProxyRequest,
    ) -> Result<Flow, PluginError> {
        let _ = (ctx, req);
        Ok(Flow::Continue)
    }

    /// Runs when the upstream's response headers arrive (or a plugin's own response is about to
    /// be sent), before they go to the client. Default: nothing.
    ///
    /// An upstream response reaches this phase only when [`Plugin::rewrites_response_headers`]
    /// says so: otherwise its head is forwarded as received, never parsed into a map.
    fn response_headers(&self, ctx: &mut RequestCtx, resp: &mut http::response::Parts) {
        let _ = (ctx, resp);
    }

    /// Whether [`Plugin::response_headers`] is to see upstream responses. A plugin that
    /// implements that phase returns `true`; the proxy then hands every upstream response of
    /// a request this plugin ran for to the phase as `http` parts. Default: `false`.
    fn rewrites_response_headers(&self) -> bool {
        false
    }

    /// Runs once per request after the response was produced, whatever happened. Default:
    /// nothing.
    fn log(&self, ctx: &RequestCtx, status: http::StatusCode) {
        let _ = (ctx, status);
    }
}

/// Builds instances of one plugin and validates their configuration.
pub trait PluginFactory: Send + Sync + 'static {
    /// The plugin's name (`oauth2-introspection`, …).
    fn name(&self) -> &'static str;
    /// Kong's priority: higher runs first.
    fn priority(&self) -> i32;
    /// The plugin's version, for `GET /` and `/plugins/enabled`.
    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
    /// Protocols the plugin supports (the default of an instance's `protocols`).
    fn protocols(&self) -> &'static [&'static str] {
        &["grpc", "grpcs", "http", "https"]
    }
    /// Whether instances may be scoped to a consumer (Kong's `no_consumer` is `false` here).
    fn allows_consumer(&self) -> bool {
        true
    }
    /// Configuration fields holding secrets: encrypted at rest by the admin layer.
    fn encrypted_fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// Validates a raw configuration and returns it with every default filled in.
    fn validate(&self, config: Value) -> Result<Value, FieldErrors>;
    /// The configuration schema in Kong's `/schemas/plugins/{name}` shape.
    fn schema(&self) -> Value;
    /// Builds an instance from a configuration that [`PluginFactory::validate`] accepted.
    fn build(&self, config: &Value) -> Result<Arc<dyn Plugin>, PluginError>;
}

/// Every plugin this build knows, by name.
#[derive(Default, Clone)]
pub struct Registry {
    factories: BTreeMap<&'static str, Arc<dyn PluginFactory>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plugin.
    pub fn register(&mut self, factory: Arc<dyn PluginFactory>) {
        self.factories.insert(factory.name(), factory);
    }

    /// A plugin's factory.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn PluginFactory>> {
        self.factories.get(name)
    }

    /// All factories, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn PluginFactory>> {
        self.factories.values()
    }
}

impl PluginSchemas for Registry {
    fn validate_config(&self, name: &str, config: Value) -> Option<Result<Value, FieldErrors>> {
        self.get(name).map(|f| f.validate(config))
    }

    fn protocols(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|f| f.protocols().iter().map(|p| (*p).to_owned()).collect())
            .unwrap_or_default()
    }

    fn allows_consumer(&self, name: &str) -> bool {
        self.get(name).is_some_and(|f| f.allows_consumer())
    }
}
