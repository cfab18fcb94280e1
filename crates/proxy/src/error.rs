//! Gateway-generated responses (spec C.7): the one place where proxy failures become statuses
//! and messages, in JSON, plain text or HTML according to the request's `Accept`.

use crate::{ProxyBody, full_body};
use http::header::{CONTENT_TYPE, HeaderValue, SERVER};
use http::{Response, StatusCode};

/// Everything the proxy itself can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    /// No route matched.
    NoRoute,
    /// The request line or path is unusable.
    BadRequest,
    /// The request's headers are larger than the proxy accepts.
    HeadersTooLarge,
    /// The request target is longer than the proxy accepts.
    UriTooLong,
    /// The client did not send its request body in time.
    RequestTimeout,
    /// The request body is larger than the route allows.
    PayloadTooLarge,
    /// An https-only route was called over http (the route's redirect status decides).
    HttpsRequired,
    /// The matched route has no service and no plugin answered.
    NoService,
    /// The upstream refused the connection, reset it, or sent garbage.
    BadGateway,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream host name did not resolve.
    NameResolution,
    /// A bug or a plugin failure; the cause is logged, never sent.
    Internal,
}

impl GatewayError {
    /// Kong's status and message for this error.
    pub fn status_and_message(self) -> (StatusCode, &'static str) {
        match self {
            Self::NoRoute => (StatusCode::NOT_FOUND, "no Route matched with those values"),
            Self::BadRequest => (StatusCode::BAD_REQUEST, "Bad request"),
            Self::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request header fields too large",
            ),
            Self::UriTooLong => (StatusCode::URI_TOO_LONG, "URI too long"),
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "Request timeout"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Request size limit exceeded"),
            Self::HttpsRequired => (StatusCode::UPGRADE_REQUIRED, "Please use HTTPS protocol"),
            Self::NoService => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no Service found with those values",
            ),
            Self::BadGateway => (
                StatusCode::BAD_GATEWAY,
                "An invalid response was received from the upstream server",
            ),
            Self::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "The upstream server is timing out",
            ),
            Self::NameResolution => (StatusCode::SERVICE_UNAVAILABLE, "name resolution failed"),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unexpected error occurred",
            ),
        }
    }

    /// Whether the body defaults to JSON when `Accept` says nothing: router and plugin errors
    /// do (Kong's `kong.response.error`), upstream failures default to text (nginx's
    /// `error_default_type`).
    fn json_by_default(self) -> bool {
        !matches!(
            self,
            Self::BadGateway | Self::Timeout | Self::NameResolution
        )
    }

    /// The response, formatted for `accept`.
    pub fn response(self, request_id: &str, accept: Option<&HeaderValue>) -> Response<ProxyBody> {
        let (status, message) = self.status_and_message();
        let mut resp = error_response(status, message, request_id, accept, self.json_by_default());
        if self == Self::HttpsRequired {
            let h = resp.headers_mut();
            h.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("Upgrade"),
            );
            h.insert(
                http::header::UPGRADE,
                HeaderValue::from_static("TLS/1.2, HTTP/1.1"),
            );
        }
        resp
    }
}

enum Format {
    Json,
    Text,
    Html,
}

fn negotiate(accept: Option<&HeaderValue>, json_default: bool) -> Format {
    let accept = accept.and_then(|a| a.to_str().ok()).unwrap_or("");
    // First listed type we can produce wins (q-values are rare on error paths; Kong does the
    // same first-match scan).
    for part in accept.split(',') {
        let mime = part.split(';').next().unwrap_or("").trim();
        match mime {
            "application/json" | "application/*" => return Format::Json,
            "text/plain" => return Format::Text,
            "text/html" => return Format::Html,
            _ => {}
        }
    }
    if json_default {
        Format::Json
    } else {
        Format::Text
    }
}

/// A gateway-generated response with `message` and the request id.
pub fn error_response(
    status: StatusCode,
    message: &str,
    request_id: &str,
    accept: Option<&HeaderValue>,
    json_default: bool,
) -> Response<ProxyBody> {
    let (content_type, body) = match negotiate(accept, json_default) {
        Format::Json => (
            "application/json; charset=utf-8",
            serde_json::json!({"message": message, "request_id": request_id}).to_string(),
        ),
        Format::Text => (
            "text/plain; charset=utf-8",
            format!("{message}\nrequest_id: {request_id}\n"),
        ),
        Format::Html => (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html>\n<html>\n<head><title>Error</title></head>\n<body>\n<h1>Error</h1>\n<p>{}</p>\n<p>request_id: {}</p>\n</body>\n</html>\n",
                html_escape(message),
                html_escape(request_id)
            ),
        ),
    };
    let mut resp = Response::new(full_body(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(SERVER, HeaderValue::from_static(crate::SERVER_TOKEN));
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(resp: Response<ProxyBody>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn each_error_has_kongs_status_and_message() {
        let cases = [
            (
                GatewayError::NoRoute,
                404,
                "no Route matched with those values",
            ),
            (GatewayError::BadRequest, 400, "Bad request"),
            (
                GatewayError::HeadersTooLarge,
                431,
                "Request header fields too large",
            ),
            (GatewayError::UriTooLong, 414, "URI too long"),
            (GatewayError::RequestTimeout, 408, "Request timeout"),
            (
                GatewayError::PayloadTooLarge,
                413,
                "Request size limit exceeded",
            ),
            (
                GatewayError::HttpsRequired,
                426,
                "Please use HTTPS protocol",
            ),
            (
                GatewayError::NoService,
                503,
                "no Service found with those values",
            ),
            (
                GatewayError::BadGateway,
                502,
                "An invalid response was received from the upstream server",
            ),
            (
                GatewayError::Timeout,
                504,
                "The upstream server is timing out",
            ),
            (GatewayError::NameResolution, 503, "name resolution failed"),
            (GatewayError::Internal, 500, "An unexpected error occurred"),
        ];
        let json = HeaderValue::from_static("application/json");
        for (err, status, message) in cases {
            let resp = err.response("rid", Some(&json));
            assert_eq!(resp.status().as_u16(), status);
            let v: serde_json::Value = serde_json::from_str(&body(resp).await).unwrap();
            assert_eq!(
                v,
                serde_json::json!({"message": message, "request_id": "rid"})
            );
        }
    }

    #[tokio::test]
    async fn format_follows_accept_and_defaults_differ() {
        let text = HeaderValue::from_static("text/plain, */*");
        let resp = GatewayError::NoRoute.response("r1", Some(&text));
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(
            body(resp).await,
            "no Route matched with those values\nrequest_id: r1\n"
        );
        let resp = GatewayError::NoRoute.response("r1", None);
        assert_eq!(
            resp.headers()[CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        let resp = GatewayError::BadGateway.response("r1", None);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        let html = HeaderValue::from_static("text/html");
        let resp = GatewayError::Timeout.response("<x>", Some(&html));
        assert!(body(resp).await.contains("request_id: &lt;x&gt;"));
        let resp = GatewayError::HttpsRequired.response("r", None);
        assert_eq!(resp.headers()[http::header::UPGRADE], "TLS/1.2, HTTP/1.1");
    }
}
