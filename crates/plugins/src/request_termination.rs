//! Kong's `request-termination` plugin (priority 2): answers the request itself with a fixed
//! status and body, optionally only when a trigger header or query parameter is present, or
//! echoes the request back for debugging.
//!
//! Config: `status_code` (100–599, default 503), `message` (JSON `{"message": …}` body in the
//! format the client accepts, default Kong's message for the status), `body` + `content_type`
//! (a raw body instead), `echo` (answer with a JSON description of the request; request
//! bodies are not echoed because Gatehouse never buffers them for this), `trigger` (a header
//! or query parameter name: terminate only requests that carry it).

use async_trait::async_trait;
use gatehouse_core::kong_schema::{FieldErrors, KongReader};
use gatehouse_proxy::context::RequestCtx;
use gatehouse_proxy::error::error_response;
use gatehouse_proxy::plugin::{Flow, Plugin, PluginError, PluginFactory};
use gatehouse_proxy::{ProxyRequest, full_body};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The plugin's name.
pub const NAME: &str = "request-termination";
/// Kong's priority for this plugin (runs after nearly everything).
pub const PRIORITY: i32 = 2;

/// Builds `request-termination` instances.
pub struct Factory;

struct Config {
    status: StatusCode,
    message: Option<String>,
    content_type: Option<String>,
    body: Option<String>,
    echo: bool,
    trigger: Option<String>,
}

/// Kong's `typedefs.header_name` rule.
fn valid_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse(raw: Value) -> Result<(Config, Value), FieldErrors> {
    let mut r = KongReader::new(raw)?;
    let status_code = r.int("status_code", 100, 599).unwrap_or(503);
    // Kong's `is_present`: absent, null and "" are all "not set".
    let present = |s: Option<String>| s.filter(|s| !s.is_empty());
    let message = present(r.string("message"));
    let content_type = present(r.string("content_type"));
    let body = present(r.string("body"));
    let echo = r.bool("echo").unwrap_or(false);
    let trigger = present(r.string("trigger"));
    if let Some(t) = &trigger
        && !valid_header_name(t)
    {
        r.errors.add(
            "trigger",
            format!("bad header name '{t}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"),
        );
    }
    if message.is_some() && (content_type.is_some() || body.is_some()) {
        r.errors
            .entity("message cannot be used with content_type or body");
    } else if content_type.is_some() && body.is_none() {
        r.errors.entity("content_type requires a body");
    } else if echo && (content_type.is_some() || body.is_some()) {
        r.errors
            .entity("echo cannot be used with content_type and body");
    }
    let content_type_ok = content_type
        .as_deref()
        .is_none_or(|c| HeaderValue::from_str(c).is_ok());
    if !content_type_ok {
        r.errors.add(
            "content_type",
            "invalid value: not a valid HTTP header value",
        );
    }
    r.finish()?;
    let status = StatusCode::from_u16(u16::try_from(status_code).unwrap_or(503))
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let stored = json!({
        "status_code": status_code,
        "message": message,
        "content_type": content_type,
        "body": body,
        "echo": echo,
        "trigger": trigger,
    });
    Ok((
        Config {
            status,
            message,
            content_type,
            body,
            echo,
            trigger,
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

    fn validate(&self, config: Value) -> Result<Value, FieldErrors> {
        parse(config).map(|(_, stored)| stored)
    }

    fn schema(&self) -> Value {
        json!({
            "fields": [
                {"protocols": {
                    "type": "set", "required": true,
                    "default": ["grpc", "grpcs", "http", "https"],
                    "elements": {"type": "string", "one_of": ["grpc", "grpcs", "http", "https"]},
                    "description": "A set of strings representing HTTP protocols."
                }},
                {"config": {
                    "type": "record", "required": true,
                    "fields": [
                        {"status_code": {
                            "type": "integer", "required": true, "default": 503,
                            "between": [100, 599],
                            "description": "The response code to send. Must be an integer between 100 and 599."
                        }},
                        {"message": {
                            "type": "string",
                            "description": "The message to send, if using the default response generator."
                        }},
                        {"content_type": {
                            "type": "string",
                            "description": "Content type of the raw response configured with `config.body`."
                        }},
                        {"body": {
                            "type": "string",
                            "description": "The raw response body to send. This is mutually exclusive with the `config.message` field."
                        }},
                        {"echo": {
                            "type": "boolean", "required": true, "default": false,
                            "description": "When set, the plugin will echo a copy of the request back to the client. The main usecase for this is debugging. It can be combined with `trigger` in order to debug requests on live systems without disturbing real traffic."
                        }},
                        {"trigger": {
                            "type": "string",
                            "description": "A string representing an HTTP header name."
                        }}
                    ]
                }}
            ]
        })
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn Plugin>, PluginError> {
        let (config, _) = parse(config.clone())
            .map_err(|e| PluginError(format!("invalid {NAME} configuration: {}", e.summary())))?;
        Ok(Arc::new(RequestTermination { config }))
    }
}

/// One configured `request-termination` instance.
struct RequestTermination {
    config: Config,
}

/// Kong's default message for a status (`kong.response.error`).
fn default_message(status: StatusCode) -> String {
    let known = match status.as_u16() {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        406 => "Not acceptable",
        407 => "Proxy authentication required",
        408 => "Request timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length required",
        412 => "Precondition failed",
        413 => "Payload too large",
        414 => "URI too long",
        415 => "Unsupported media type",
        416 => "Range not satisfiable",
        417 => "Expectation failed",
        418 => "I'm a teapot",
        421 => "Misdirected request",
        422 => "Unprocessable entity",
        423 => "Locked",
        424 => "Failed dependency",
        425 => "Too early",
        426 => "Upgrade required",
        428 => "Precondition required",
        429 => "Too many requests",
        431 => "Request header fields too large",
        451 => "Unavailable for legal reasons",
        494 => "Request header or cookie too large",
        500 => "An unexpected error occurred",
        501 => "Not implemented",
        502 => "An invalid response was received from the upstream server",
        503 => "The upstream server is currently unavailable",
        504 => "The upstream server is timing out",
        505 => "HTTP version not supported",
        506 => "Variant also negotiates",
        507 => "Insufficient storage",
        508 => "Loop detected",
        510 => "Not extended",
        511 => "Network authentication required",
        _ => "",
    };
    if !known.is_empty() {
        known.to_owned()
    } else if status.as_u16() >= 400 {
        format!("The upstream server responded with {}", status.as_u16())
    } else {
        status.canonical_reason().unwrap_or("").to_owned()
    }
}

/// Query parameters as Kong's `kong.request.get_query()`: repeated names become arrays, a name
/// without `=` is `true`.
fn query_map(query: Option<&str>) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(q) = query else {
        return out;
    };
    for piece in q.split('&').filter(|p| !p.is_empty()) {
        let Some((k, v)) = url::form_urlencoded::parse(piece.as_bytes()).next() else {
            continue;
        };
        let v = if piece.contains('=') {
            Value::String(v.into_owned())
        } else {
            Value::Bool(true)
        };
        match out.get_mut(k.as_ref()) {
            Some(Value::Array(items)) => items.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
            None => {
                out.insert(k.into_owned(), v);
            }
        }
    }
    out
}

fn echo_body(ctx: &RequestCtx, req: &ProxyRequest, message: &str) -> Value {
    let mut headers = Map::new();
    for name in req.parts.headers.keys() {
        let values: Vec<Value> = req
            .parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let v = if values.len() == 1 {
            values.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(values)
        };
        headers.insert(name.as_str().to_owned(), v);
    }
    let host_header = req
        .parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.parts.uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default();
    let (host, port) = match host_header.rsplit_once(':') {
        // A bare IPv6 address: its colons are not a port separator.
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (host_header.clone(), None),
        Some((h, p)) => (h.to_owned(), p.parse::<u16>().ok()),
        None => (host_header.clone(), None),
    };
    let captures: Map<String, Value> = ctx
        .uri_captures
        .named
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let route = ctx.route.as_ref();
    json!({
        "message": message,
        "request": {
            "scheme": req.parts.uri.scheme_str().unwrap_or("http"),
            "host": host,
            "port": port,
            "headers": headers,
            "query": query_map(req.parts.uri.query()),
            "method": req.parts.method.as_str(),
            "path": req.parts.uri.path(),
            "uri_captures": {"named": captures, "unnamed": ctx.uri_captures.positional},
        },
        "matched_route": route.map(|r| json!(*r.route)),
        "matched_service": route.and_then(|r| r.service.as_ref()).map(|s| json!(s.service)),
    })
}

#[async_trait]
impl Plugin for RequestTermination {
    async fn access(
        &self,
        ctx: &mut RequestCtx,
        req: &mut ProxyRequest,
    ) -> Result<Flow, PluginError> {
        let c = &self.config;
        if let Some(trigger) = &c.trigger {
            let in_headers = req.parts.headers.contains_key(trigger.as_str());
            let in_query = req.parts.uri.query().is_some_and(|q| {
                url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == trigger.as_str())
            });
            if !in_headers && !in_query {
                return Ok(Flow::Continue);
            }
        }
        let message = c
            .message
            .clone()
            .unwrap_or_else(|| default_message(c.status));
        if c.echo {
            let body = echo_body(ctx, req, &message).to_string();
            let mut resp = Response::new(full_body(body));
            *resp.status_mut() = c.status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            return Ok(Flow::Respond(resp));
        }
        if let Some(body) = &c.body {
            let mut resp = Response::new(full_body(body.clone()));
            *resp.status_mut() = c.status;
            let ct = c
                .content_type
                .as_deref()
                .and_then(|t| HeaderValue::from_str(t).ok())
                .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8"));
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            return Ok(Flow::Respond(resp));
        }
        let accept = req.parts.headers.get(header::ACCEPT);
        Ok(Flow::Respond(error_response(
            c.status,
            &message,
            &ctx.request_id,
            accept,
            true,
        )))
    }
}

#[cfg(test)]
mod tests;
