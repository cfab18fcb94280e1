//! UUID, URL and path functions: `uuidv4`, `uuidParse`, `uuidValidate`,
//! `urlParse`, `urlJoin`, and Go `path` package helpers `base`, `dir`,
//! `clean`, `ext`, `isAbs`.
//!
//! `uuidParse` accepts the forms Go's `uuid.Parse` does (hyphenated,
//! `urn:uuid:`, braced, 32 hex digits) and returns the canonical lower-case
//! hyphenated string; an invalid UUID is a render error. `uuidValidate`
//! returns a boolean. `urlParse` returns a dict with `scheme`, `host`,
//! `hostname`, `path`, `query`, `opaque`, `fragment` and `userinfo` like
//! sprig; `urlJoin` is its inverse.

use std::collections::BTreeMap;

use super::{FuncDef, arg, def, map_arg, rerr, s};
use crate::RenderError;
use crate::eval::Env;
use crate::value::Value;

pub(super) const FUNCS: &[FuncDef] = &[
    def("uuidv4", 0, 0, uuidv4),
    def("uuidParse", 1, 1, uuid_parse),
    def("uuidValidate", 1, 1, uuid_validate),
    def("urlParse", 1, 1, url_parse),
    def("urlJoin", 1, 1, url_join),
    def("base", 1, 1, base),
    def("dir", 1, 1, dir),
    def("clean", 1, 1, clean),
    def("ext", 1, 1, ext),
    def("isAbs", 1, 1, is_abs),
];

type Res = Result<Value, RenderError>;

fn uuidv4(_: &mut Env, _: Vec<Value>) -> Res {
    Ok(Value::String(uuid::Uuid::new_v4().to_string()))
}

fn parse_uuid(text: &str) -> Option<uuid::Uuid> {
    // Go's uuid.Parse accepts exactly 36, 38 ({…}), 45 (urn:uuid:…) or 32 chars.
    if !matches!(text.len(), 32 | 36 | 38 | 45) {
        return None;
    }
    uuid::Uuid::try_parse(text).ok()
}

fn uuid_parse(_: &mut Env, a: Vec<Value>) -> Res {
    let text = s(arg(&a, 0));
    parse_uuid(&text)
        .map(|u| Value::String(u.to_string()))
        .ok_or_else(|| rerr(format!("invalid UUID {text:?}")))
}

fn uuid_validate(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::Bool(parse_uuid(&s(arg(&a, 0))).is_some()))
}

/// Percent-decode (`+` is kept).
fn unescape(text: &str) -> Result<String, RenderError> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    rerr(format!(
                        "unable to parse url: invalid URL escape {:?}",
                        text.get(i..(i + 3).min(text.len())).unwrap_or("%")
                    ))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn escape(text: &str, fragment: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &c in text.as_bytes() {
        let keep = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'_' | b'.' | b'~')
            || matches!(
                c,
                b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@'
            )
            || (fragment && matches!(c, b'?' | b'!' | b'(' | b')' | b'*'));
        if keep {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn url_parse(_: &mut Env, a: Vec<Value>) -> Res {
    let raw = s(arg(&a, 0));
    let (rest, fragment) = match raw.split_once('#') {
        Some((r, f)) => (r, unescape(f)?),
        None => (raw.as_str(), String::new()),
    };
    let (mut rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, q.to_owned()),
        None => (rest, String::new()),
    };
    let mut scheme = String::new();
    if let Some(colon) = rest.find(':') {
        let cand = &rest[..colon];
        let valid = cand.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && cand
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if colon == 0 {
            return Err(rerr(format!(
                "unable to parse url: parse {raw:?}: missing protocol scheme"
            )));
        }
        if valid {
            scheme = cand.to_ascii_lowercase();
            rest = &rest[colon + 1..];
        }
    }
    let (mut host, mut userinfo, mut opaque, mut path) =
        (String::new(), String::new(), String::new(), String::new());
    if !scheme.is_empty() && !rest.starts_with('/') {
        opaque = rest.to_owned();
    } else if let Some(auth_rest) = rest.strip_prefix("//") {
        let end = auth_rest.find('/').unwrap_or(auth_rest.len());
        let authority = &auth_rest[..end];
        match authority.rsplit_once('@') {
            Some((u, h)) => {
                userinfo = u.to_owned();
                host = h.to_owned();
            }
            None => host = authority.to_owned(),
        }
        path = unescape(&auth_rest[end..])?;
    } else {
        path = unescape(rest)?;
    }
    let hostname = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or_default().to_owned()
    } else {
        host.rsplit_once(':')
            .map_or(host.as_str(), |(h, _)| h)
            .to_owned()
    };
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("scheme", scheme),
        ("host", host),
        ("hostname", hostname),
        ("path", path),
        ("query", query),
        ("opaque", opaque),
        ("fragment", fragment),
        ("userinfo", userinfo),
    ] {
        m.insert(k.to_owned(), Value::String(v));
    }
    Ok(Value::Map(m))
}

fn url_join(_: &mut Env, a: Vec<Value>) -> Res {
    let d = map_arg(arg(&a, 0), "urlJoin")?;
    let field = |k: &str| d.get(k).map(s).unwrap_or_default();
    let (scheme, host, path, query, opaque, fragment, user) = (
        field("scheme"),
        field("host"),
        field("path"),
        field("query"),
        field("opaque"),
        field("fragment"),
        field("userinfo"),
    );
    let mut out = String::new();
    if !scheme.is_empty() {
        out.push_str(&scheme);
        out.push(':');
    }
    if !opaque.is_empty() {
        out.push_str(&opaque);
    } else {
        if !scheme.is_empty() || !host.is_empty() || !user.is_empty() {
            if !host.is_empty() || !path.is_empty() || !user.is_empty() {
                out.push_str("//");
            }
            if !user.is_empty() {
                out.push_str(&user);
                out.push('@');
            }
            out.push_str(&host);
        }
        let p = escape(&path, false);
        if !p.is_empty() && !p.starts_with('/') && !host.is_empty() {
            out.push('/');
        }
        if out.is_empty() {
            let seg = p.split('/').next().unwrap_or_default();
            if seg.contains(':') {
                out.push_str("./");
            }
        }
        out.push_str(&p);
    }
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    if !fragment.is_empty() {
        out.push('#');
        out.push_str(&escape(&fragment, true));
    }
    Ok(Value::String(out))
}

/// Go `path.Clean`.
pub(crate) fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn base(_: &mut Env, a: Vec<Value>) -> Res {
    let p = s(arg(&a, 0));
    if p.is_empty() {
        return Ok(Value::String(".".into()));
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(Value::String("/".into()));
    }
    let b = trimmed.rsplit('/').next().unwrap_or(trimmed);
    Ok(Value::String(b.to_owned()))
}

fn dir(_: &mut Env, a: Vec<Value>) -> Res {
    let p = s(arg(&a, 0));
    let d = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    Ok(Value::String(clean_path(d)))
}

fn clean(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::String(clean_path(&s(arg(&a, 0)))))
}

fn ext(_: &mut Env, a: Vec<Value>) -> Res {
    let p = s(arg(&a, 0));
    for (i, c) in p.char_indices().rev() {
        if c == '/' {
            break;
        }
        if c == '.' {
            return Ok(Value::String(p[i..].to_owned()));
        }
    }
    Ok(Value::String(String::new()))
}

fn is_abs(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::Bool(s(arg(&a, 0)).starts_with('/')))
}
