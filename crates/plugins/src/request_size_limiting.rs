//! Kong's `request-size-limiting` plugin (priority 951): a per-route (or service, or global)
//! limit on request bodies, so that an endpoint that takes small JSON bodies does not accept
//! uploads of any size.
//!
//! Config as Kong's: `allowed_payload_size` (default 128), `size_unit` (`megabytes`
//! (default), `kilobytes`, `bytes`; binary multiples as in Kong), `require_content_length`
//! (default false: a body without `Content-Length` is allowed and counted as it streams).
//!
//! A `Content-Length` over the limit is refused before anything is read: 413 `Request size
//! limit exceeded` (417 when the client asked for `100-continue`, as Kong). Kong reads a
//! chunked body whole before it checks it; Gatehouse never buffers it: the body streams
//! upstream and is cut at the limit, and the client gets 413 unless the upstream has already
//! answered (docs/compatibility.md).

use async_trait::async_trait;
use gatehouse_core::kong_schema::{FieldErrors, KongReader};
use gatehouse_listener::body::CappedBody;
use gatehouse_proxy::context::RequestCtx;
use gatehouse_proxy::error::error_response;
use gatehouse_proxy::plugin::{Flow, Plugin, PluginError, PluginFactory};
use gatehouse_proxy::{ProxyRequest, empty_body};
use http::StatusCode;
use http::header;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;

/// The plugin's name.
pub const NAME: &str = "request-size-limiting";
/// Kong's priority for this plugin (after authentication, before most transformations).
pub const PRIORITY: i32 = 951;

const UNITS: [(&str, u64); 3] = [("megabytes", 1 << 20), ("kilobytes", 1 << 10), ("bytes", 1)];

/// Builds `request-size-limiting` instances.
pub struct Factory;

struct Config {
    /// The limit in bytes.
    max: u64,
    require_content_length: bool,
}

fn parse(raw: Value) -> Result<(Config, Value), FieldErrors> {
    let mut r = KongReader::new(raw)?;
    let size = r
        .int("allowed_payload_size", 0, i64::from(i32::MAX))
        .unwrap_or(128);
    let unit = r.string("size_unit").unwrap_or_else(|| "megabytes".into());
    let multiple = match UNITS.iter().find(|(name, _)| *name == unit) {
        Some((_, m)) => *m,
        None => {
            r.errors
                .add("size_unit", "expected one of: megabytes, kilobytes, bytes");
            1
        }
    };
    let require_content_length = r.bool("require_content_length").unwrap_or(false);
    r.finish()?;
    let stored = json!({
        "allowed_payload_size": size,
        "size_unit": unit,
        "require_content_length": require_content_length,
    });
    Ok((
        Config {
            max: u64::try_from(size).unwrap_or(0) * multiple,
            require_content_length,
        },
        stored,
    ))
}

impl PluginFactory for Factory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn priority(&self) -> i32 {
        PRIORITY
    }

    fn protocols(&self) -> &'static [&'static str] {
        &["http", "https"]
    }

    fn validate(&self, config: Value) -> Result<Value, FieldErrors> {
        parse(config).map(|(_, stored)| stored)
    }

    fn schema(&self) -> Value {
        json!({
            "fields": [
                {"protocols": {
                    "type": "set", "required": true, "default": ["http", "https"],
                    "elements": {"type": "string", "one_of": ["http", "https"]},
                    "description": "A set of strings representing HTTP protocols."
                }},
                {"config": {
                    "type": "record", "required": true,
                    "fields": [
                        {"allowed_payload_size": {
                            "type": "integer", "required": true, "default": 128,
                            "description": "Allowed request payload size in megabytes. Default is `128` megabytes (128000000 bytes)."
                        }},
                        {"size_unit": {
                            "type": "string", "required": true, "default": "megabytes",
                            "one_of": ["megabytes", "kilobytes", "bytes"],
                            "description": "Size unit can be set either in `bytes`, `kilobytes`, or `megabytes` (default). This configuration is not available in versions prior to Kong Gateway 1.3 and Kong Gateway (OSS) 2.0."
                        }},
                        {"require_content_length": {
                            "type": "boolean", "required": true, "default": false,
                            "description": "Set to `true` to ensure a valid `Content-Length` header exists before reading the request body."
                        }}
                    ]
                }}
            ]
        })
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn Plugin>, PluginError> {
        let (config, _) = parse(config.clone())
            .map_err(|e| PluginError(format!("invalid {NAME} configuration: {}", e.summary())))?;
        Ok(Arc::new(RequestSizeLimiting { config }))
    }
}

/// One configured `request-size-limiting` instance.
struct RequestSizeLimiting {
    config: Config,
}

#[async_trait]
impl Plugin for RequestSizeLimiting {
    async fn access(
        &self,
        ctx: &mut RequestCtx,
        req: &mut ProxyRequest,
    ) -> Result<Flow, PluginError> {
        let headers = &req.parts.headers;
        let accept = headers.get(header::ACCEPT);
        let refuse = |status: StatusCode, message: &str| {
            Ok(Flow::Respond(error_response(
                status,
                message,
                &ctx.request_id,
                accept,
                true,
            )))
        };
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match announced {
            Some(n) if n > self.config.max => {
                let continues = headers
                    .get(header::EXPECT)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
                let status = if continues {
                    StatusCode::EXPECTATION_FAILED
                } else {
                    StatusCode::PAYLOAD_TOO_LARGE
                };
                refuse(status, "Request size limit exceeded")
            }
            Some(_) => Ok(Flow::Continue),
            None if self.config.require_content_length => refuse(
                StatusCode::LENGTH_REQUIRED,
                "A valid Content-Length header is required",
            ),
            None => {
                let body = std::mem::replace(&mut req.body, empty_body());
                req.body = CappedBody::new(body, self.config.max).boxed_unsync();
                Ok(Flow::Continue)
            }
        }
    }
}

#[cfg(test)]
mod tests;
