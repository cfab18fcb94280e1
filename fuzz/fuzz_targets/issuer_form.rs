//! `issuer_form`: the identity server's form parser (`http::form_pairs`) and its client
//! authentication (`http::parse_client_credentials`: the form, then HTTP Basic or the form's
//! `client_id` and `client_secret`, RFC 6749 §2.3).
//!
//! For every input it checks that:
//! - `form_pairs` yields exactly what `url::form_urlencoded::parse` yields for the same bytes
//!   (the fast path for pairs without escapes must not change a thing);
//! - one of, as the control byte says:
//!   - an id and a secret built from the input, each percent-encoded or form-urlencoded
//!     (RFC 6749 §2.3.1 and Appendix B), sent as `Basic base64(id:secret)`, with or without a
//!     matching `client_id` in the form, come back exactly (a space sent as `+` is a space:
//!     the finding replayed from `fuzz/regressions/issuer_form/`);
//!   - any `Authorization` value is refused or read as credentials that, encoded again, read
//!     the same (and nothing panics);
//!   - a form body without `Authorization` gives its `client_id` and `client_secret` when
//!     both are there and no parameter is repeated, `invalid_request` when one is repeated,
//!     `invalid_client` otherwise: what a reading of the form with `url` predicts.
//!
//! Input: a control byte, then the body, or the header value, or `id 0xFF secret`.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_fuzz::control;
use gatehouse_identity::OAuthError;
use gatehouse_identity::http::{form_pairs, parse_client_credentials};
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

const FORM: &str = "application/x-www-form-urlencoded";

fn form_headers(content_type: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("a valid content type"),
    );
    headers
}

/// How the id and the secret are encoded before Base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Every byte but ASCII letters and digits as `%XX`.
    Percent,
    /// `application/x-www-form-urlencoded` (RFC 6749 Appendix B, which §2.3.1 names): as
    /// above, but a space as `+`.
    Form,
}

fn encode(s: &str, encoding: Encoding) -> String {
    match encoding {
        Encoding::Percent => utf8_percent_encode(s, NON_ALPHANUMERIC).to_string(),
        Encoding::Form => url::form_urlencoded::byte_serialize(s.as_bytes()).collect(),
    }
}

/// `Basic base64(enc(id) ":" enc(secret))`.
fn basic(id: &str, secret: &str, encoding: Encoding) -> HeaderValue {
    let pair = format!("{}:{}", encode(id, encoding), encode(secret, encoding));
    HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair))).expect("ASCII")
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Sends `id` and `secret` in a Basic header and expects them back.
fn basic_round_trip(
    id: &str,
    secret: &str,
    encoding: Encoding,
    with_form_id: bool,
    content_type: &str,
) {
    let mut headers = form_headers(content_type);
    headers.insert(header::AUTHORIZATION, basic(id, secret, encoding));
    let mut form = vec![("grant_type", "client_credentials")];
    if with_form_id {
        form.push(("client_id", id));
    }
    let body = form_encode(&form);
    let got = parse_client_credentials(&headers, body.as_bytes());
    let expected = Ok((id.to_owned(), secret.to_owned()));
    assert_eq!(
        got, expected,
        "Basic credentials {id:?} / {secret:?} ({encoding:?}), body {body:?}"
    );
}

/// Any `Authorization` value: refused, or credentials that read the same once re-encoded.
fn any_authorization(value: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = form_headers(FORM);
    headers.insert(header::AUTHORIZATION, value);
    match parse_client_credentials(&headers, b"grant_type=client_credentials") {
        Ok((id, secret)) => basic_round_trip(&id, &secret, Encoding::Percent, false, FORM),
        Err(OAuthError::InvalidClient(_)) => {}
        Err(other) => panic!("a Basic header refused with {other:?}"),
    }
}

/// A form body alone: the credentials a reading with `url` predicts.
fn form_credentials(body: &[u8], content_type: &str) {
    let headers = form_headers(content_type);
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let repeated = pairs
        .iter()
        .enumerate()
        .any(|(i, (k, _))| pairs[..i].iter().any(|(seen, _)| seen == k));
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let got = parse_client_credentials(&headers, body);
    match (repeated, get("client_id"), get("client_secret")) {
        (true, _, _) => assert!(
            matches!(got, Err(OAuthError::InvalidRequest(_))),
            "a repeated parameter gave {got:?}"
        ),
        (false, Some(id), Some(secret)) => assert_eq!(got, Ok((id, secret))),
        (false, _, _) => assert!(
            matches!(got, Err(OAuthError::InvalidClient(_))),
            "no credentials gave {got:?}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let (ctl, rest) = control::take::<1>(data);

    let ours: Vec<(String, String)> = form_pairs(rest)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let theirs: Vec<(String, String)> = url::form_urlencoded::parse(rest)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(ours, theirs, "form_pairs vs url::form_urlencoded::parse");

    // The media type may carry parameters and any case.
    let content_type =
        [FORM, "Application/X-WWW-Form-URLEncoded; charset=UTF-8"][usize::from(ctl[0] >> 7)];
    match ctl[0] % 4 {
        0 | 1 => {
            let (id, secret) = match rest.iter().position(|&b| b == 0xff) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &b""[..]),
            };
            let id = String::from_utf8_lossy(id);
            let secret = String::from_utf8_lossy(secret);
            let encoding = if ctl[0] & 0x40 == 0 {
                Encoding::Percent
            } else {
                Encoding::Form
            };
            basic_round_trip(&id, &secret, encoding, ctl[0] % 4 == 1, content_type);
        }
        2 => any_authorization(rest),
        _ => form_credentials(rest, content_type),
    }
});
