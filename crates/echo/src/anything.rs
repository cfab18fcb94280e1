//! The `/anything` answer: the request described as httpbin's JSON.
//!
//! Everything here is synchronous and works on a request whose body was
//! already read (and capped) by the caller, so it is easy to test and cannot
//! stall a connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

use crate::multipart;

/// Renders the httpbin JSON for a request (newline-terminated, like httpbin).
pub(crate) fn render(parts: &Parts, peer: SocketAddr, body: &[u8]) -> Vec<u8> {
    let payload = Payload::from_body(&parts.headers, body);
    // Keys are inserted in httpbin's (alphabetical) order, so the output is
    // the same whether or not serde_json preserves insertion order.
    let mut out = Map::new();
    out.insert("args".into(), args(parts.uri.query()));
    out.insert("data".into(), Value::String(payload.data));
    out.insert("files".into(), payload.files);
    out.insert("form".into(), payload.form);
    out.insert("headers".into(), headers(parts));
    out.insert("json".into(), payload.json);
    out.insert(
        "method".into(),
        Value::String(parts.method.as_str().to_owned()),
    );
    // A dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`; report them as IPv4.
    out.insert(
        "origin".into(),
        Value::String(peer.ip().to_canonical().to_string()),
    );
    out.insert("url".into(), Value::String(url(parts)));
    let mut json = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
    json.push(b'\n');
    json
}

/// The query parameters, percent- and `+`-decoded.
fn args(query: Option<&str>) -> Value {
    let pairs = query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()));
    grouped(pairs.map(|(k, v)| (k.into_owned(), v.into_owned())))
}

/// Groups key/value pairs httpbin's way: keys sorted; a key seen once maps to
/// a string, several times to an array of its values in order.
fn grouped(pairs: impl IntoIterator<Item = (String, String)>) -> Value {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in pairs {
        groups.entry(key).or_default().push(value);
    }
    let map = groups
        .into_iter()
        .map(|(key, mut values)| {
            let value = if values.len() == 1 {
                Value::String(values.swap_remove(0))
            } else {
                Value::Array(values.into_iter().map(Value::String).collect())
            };
            (key, value)
        })
        .collect::<Map<_, _>>();
    Value::Object(map)
}

/// Every request header, names Title-Cased, values as received.
fn headers(parts: &Parts) -> Value {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for name in parts.headers.keys() {
        let mut values = parts.headers.get_all(name).iter().map(header_text);
        let value = match (values.next(), values.next()) {
            (Some(only), None) => Value::String(only),
            (first, second) => Value::Array(
                first
                    .into_iter()
                    .chain(second)
                    .chain(values)
                    .map(Value::String)
                    .collect(),
            ),
        };
        out.insert(title_case(name.as_str()), value);
    }
    // HTTP/2 carries the host in the `:authority` pseudo-header, which hyper
    // puts in the URI rather than the header map; a server behind WSGI would
    // still show it as `Host`.
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
    {
        out.insert("Host".into(), Value::String(authority.as_str().to_owned()));
    }
    Value::Object(out.into_iter().collect())
}

/// A header value as text: UTF-8 when it is, else Latin-1 (byte → char), so
/// no byte is lost or replaced.
fn header_text(value: &HeaderValue) -> String {
    match std::str::from_utf8(value.as_bytes()) {
        Ok(text) => text.to_owned(),
        Err(_) => value.as_bytes().iter().map(|&b| char::from(b)).collect(),
    }
}

/// httpbin's header-name form: what Python's `str.title()` gives after WSGI
/// turned `-` into `_` and back. A letter is upper-cased when it follows a
/// non-letter (or starts the name) and lower-cased otherwise, so
/// `x-b3-traceid` → `X-B3-Traceid`.
pub(crate) fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut after_letter = false;
    for c in name.chars() {
        if c.is_ascii_alphabetic() {
            out.push(if after_letter {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            });
            after_letter = true;
        } else {
            out.push(c);
            after_letter = false;
        }
    }
    out
}

/// `http://` + the `Host` header (or the URI's authority, over HTTP/2) + the
/// path and query as received.
fn url(parts: &Parts) -> String {
    let host = match parts.headers.get(http::header::HOST) {
        Some(host) => header_text(host),
        None => parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    format!("http://{host}{path}")
}

/// What the body contributes: `data`, `files`, `form` and `json`.
struct Payload {
    data: String,
    files: Value,
    form: Value,
    json: Value,
}

impl Payload {
    fn from_body(headers: &HeaderMap, body: &[u8]) -> Self {
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(multipart::split_header);
        if let Some((essence, params)) = &content_type {
            if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                let fields =
                    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned()));
                return Payload {
                    data: String::new(),
                    files: empty_object(),
                    form: grouped(fields),
                    json: Value::Null,
                };
            }
            if essence.eq_ignore_ascii_case("multipart/form-data")
                && let Some((_, boundary)) = params.iter().find(|(k, _)| k == "boundary")
                && let Some(parts) = multipart::parse(body, boundary)
            {
                return Self::from_multipart(parts);
            }
        }
        Payload {
            data: data_text(body, "application/octet-stream"),
            files: empty_object(),
            form: empty_object(),
            // httpbin tries JSON whatever the content type.
            json: if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(body).unwrap_or(Value::Null)
            },
        }
    }

    fn from_multipart(parts: Vec<multipart::Part<'_>>) -> Self {
        let mut fields = Vec::new();
        let mut files = Vec::new();
        for part in parts {
            if part.filename.is_some() {
                let content_type = part
                    .content_type
                    .as_deref()
                    .unwrap_or("application/octet-stream");
                files.push((part.name, data_text(part.data, content_type)));
            } else {
                fields.push((part.name, String::from_utf8_lossy(part.data).into_owned()));
            }
        }
        Payload {
            data: String::new(),
            files: grouped(files),
            form: grouped(fields),
            json: Value::Null,
        }
    }
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// Bytes as a string when they are UTF-8, else as a base64 `data:` URL, as
/// httpbin's `json_safe` does.
fn data_text(bytes: &[u8], content_type: &str) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("data:{content_type};base64,{}", BASE64.encode(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn echo(req: http::Request<&[u8]>) -> Value {
        let (parts, body) = req.into_parts();
        let peer: SocketAddr = "[::ffff:10.1.2.3]:4567".parse().unwrap();
        serde_json::from_slice(&render(&parts, peer, body)).unwrap()
    }

    #[test]
    fn title_case_matches_python() {
        assert_eq!(
            title_case("x-credential-client-id"),
            "X-Credential-Client-Id"
        );
        assert_eq!(title_case("host"), "Host");
        assert_eq!(title_case("x-b3-traceid"), "X-B3-Traceid");
        assert_eq!(title_case("x-1abc"), "X-1Abc");
        assert_eq!(title_case("www-authenticate"), "Www-Authenticate");
        assert_eq!(title_case("x_under"), "X_Under");
    }

    #[test]
    fn describes_a_request() {
        let req = http::Request::post("/anything/x?b=2&a=1&a=%20two+words&bad=%FF%zz")
            .header("host", "example.test:8080")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("x-latin", HeaderValue::from_bytes(b"caf\xe9").unwrap())
            .header("content-type", "text/plain")
            .body(&b"{\"k\": [1]}"[..])
            .unwrap();
        let v = echo(req);
        assert_eq!(
            v["args"],
            json!({"a": ["1", " two words"], "b": "2", "bad": "\u{fffd}%zz"})
        );
        assert_eq!(v["headers"]["X-Multi"], json!(["one", "two"]));
        assert_eq!(v["headers"]["X-Latin"], "café");
        assert_eq!(v["headers"]["Host"], "example.test:8080");
        assert_eq!(v["data"], "{\"k\": [1]}");
        assert_eq!(v["json"], json!({"k": [1]}));
        assert_eq!(v["form"], json!({}));
        assert_eq!(v["files"], json!({}));
        assert_eq!(v["method"], "POST");
        assert_eq!(v["origin"], "10.1.2.3");
        assert_eq!(
            v["url"],
            "http://example.test:8080/anything/x?b=2&a=1&a=%20two+words&bad=%FF%zz"
        );
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "args", "data", "files", "form", "headers", "json", "method", "origin", "url"
            ]
        );
    }

    #[test]
    fn http2_authority_becomes_host() {
        let req = http::Request::get("http://h2.test/anything")
            .body(&b""[..])
            .unwrap();
        let v = echo(req);
        assert_eq!(v["headers"], json!({"Host": "h2.test"}));
        assert_eq!(v["url"], "http://h2.test/anything");
        assert_eq!(v["args"], json!({}));
        assert_eq!(v["json"], Value::Null);
        assert_eq!(v["data"], "");
    }

    #[test]
    fn form_body() {
        let req = http::Request::post("/anything")
            .header(
                "content-type",
                "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            )
            .body(&b"a=1&b=x+y&a=%32"[..])
            .unwrap();
        let v = echo(req);
        assert_eq!(v["form"], json!({"a": ["1", "2"], "b": "x y"}));
        assert_eq!(v["data"], "");
        assert_eq!(v["json"], Value::Null);
    }

    #[test]
    fn multipart_body() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n\
            --B\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a.txt\"\r\n\r\nhello\r\n\
            --B\r\nContent-Disposition: form-data; name=\"bin\"; filename=\"b\"\r\nContent-Type: image/png\r\n\r\n\xff\x00\r\n\
            --B--\r\n";
        let req = http::Request::post("/anything")
            .header("content-type", "multipart/form-data; boundary=B")
            .body(&body[..])
            .unwrap();
        let v = echo(req);
        assert_eq!(v["form"], json!({"field": "value"}));
        assert_eq!(
            v["files"],
            json!({"up": "hello", "bin": "data:image/png;base64,/wA="})
        );
        assert_eq!(v["data"], "");
    }

    #[test]
    fn malformed_multipart_is_reported_as_data() {
        let req = http::Request::post("/anything")
            .header("content-type", "multipart/form-data; boundary=B")
            .body(&b"not multipart"[..])
            .unwrap();
        let v = echo(req);
        assert_eq!(v["data"], "not multipart");
        assert_eq!(v["form"], json!({}));
    }

    #[test]
    fn binary_body() {
        let req = http::Request::put("/anything")
            .body(&b"\xff\xfe\x00"[..])
            .unwrap();
        let v = echo(req);
        assert_eq!(v["data"], "data:application/octet-stream;base64,//4A");
        assert_eq!(v["json"], Value::Null);
    }
}
