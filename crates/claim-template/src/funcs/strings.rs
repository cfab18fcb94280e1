//! String functions: case conversion, trimming, abbreviation, padding and
//! wrapping, random strings, splitting/joining, conversions (`atoi`,
//! `int64`, `toString`, …), `seq`/`until`/`untilStep`, and the hash
//! functions `sha1sum`, `sha256sum`, `adler32sum`.
//!
//! Deviations from sprig: positions (`substr`, `trunc`, `abbrev`) count
//! Unicode characters rather than bytes (same result for ASCII, no
//! mid-character cuts); `snakecase`/`kebabcase` split words at
//! lower→upper and acronym boundaries and at non-alphanumerics, but keep
//! digits attached to the preceding word (`http2xx` → `http2xx`, where
//! sprig's xstrings gives `http_2xx`).

use rand::Rng;
use rand::seq::SliceRandom;
use sha1::Digest as _;

use super::{FuncDef, VAR, arg, count, def, rerr, s, strslice, to_f64, to_i64};
use crate::RenderError;
use crate::eval::{Env, MAX_ITEMS, MAX_STRING};
use crate::value::Value;

pub(super) const FUNCS: &[FuncDef] = &[
    def("abbrev", 2, 2, abbrev),
    def("abbrevboth", 3, 3, abbrevboth),
    def("trunc", 2, 2, trunc),
    def("trim", 1, 1, trim),
    def("upper", 1, 1, upper),
    def("lower", 1, 1, lower),
    def("title", 1, 1, title),
    def("untitle", 1, 1, untitle),
    def("substr", 3, 3, substr),
    def("repeat", 2, 2, repeat),
    def("trimAll", 2, 2, trim_all),
    def("trimall", 2, 2, trim_all),
    def("trimSuffix", 2, 2, trim_suffix),
    def("trimPrefix", 2, 2, trim_prefix),
    def("nospace", 1, 1, nospace),
    def("initials", 1, 1, initials),
    def("randAlphaNum", 1, 1, rand_alpha_num),
    def("randAlpha", 1, 1, rand_alpha),
    def("randAscii", 1, 1, rand_ascii),
    def("randNumeric", 1, 1, rand_numeric),
    def("swapcase", 1, 1, swapcase),
    def("shuffle", 1, 1, shuffle),
    def("snakecase", 1, 1, snakecase),
    def("camelcase", 1, 1, camelcase),
    def("kebabcase", 1, 1, kebabcase),
    def("wrap", 2, 2, wrap),
    def("wrapWith", 3, 3, wrap_with),
    def("contains", 2, 2, contains),
    def("hasPrefix", 2, 2, has_prefix),
    def("hasSuffix", 2, 2, has_suffix),
    def("quote", 0, VAR, quote),
    def("squote", 0, VAR, squote),
    def("cat", 0, VAR, cat),
    def("indent", 2, 2, indent),
    def("nindent", 2, 2, nindent),
    def("replace", 3, 3, replace),
    def("plural", 3, 3, plural),
    def("sha1sum", 1, 1, sha1sum),
    def("sha256sum", 1, 1, sha256sum),
    def("adler32sum", 1, 1, adler32sum),
    def("toString", 1, 1, to_string),
    def("atoi", 1, 1, atoi),
    def("int64", 1, 1, int64),
    def("int", 1, 1, int64),
    def("float64", 1, 1, float64),
    def("seq", 0, VAR, seq),
    def("toDecimal", 1, 1, to_decimal),
    def("split", 2, 2, split),
    def("splitList", 2, 2, split_list),
    def("splitn", 3, 3, splitn),
    def("toStrings", 1, 1, to_strings),
    def("until", 1, 1, until),
    def("untilStep", 3, 3, until_step),
    def("join", 2, 2, join),
    def("sortAlpha", 1, 1, sort_alpha),
];

fn st(v: String) -> Result<Value, RenderError> {
    Ok(Value::String(v))
}

fn check_len(n: usize) -> Result<(), RenderError> {
    if n > MAX_STRING {
        return Err(rerr(format!(
            "result would be {n} bytes, over the {MAX_STRING}-byte limit"
        )));
    }
    Ok(())
}

fn chars_prefix(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn abbreviate_full(s: &str, offset: usize, max_width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len();
    if s.is_empty() || max_width < 4 || len <= max_width {
        return s.to_owned();
    }
    let mut offset = offset.min(len);
    if len - offset < max_width - 3 {
        offset = len - (max_width - 3);
    }
    let marker = "...";
    if offset <= 4 {
        return format!("{}{marker}", chars_prefix(s, max_width - 3));
    }
    if max_width < 7 {
        return s.to_owned();
    }
    if offset + max_width - 3 < len {
        let rest: String = chars[offset..].iter().collect();
        return format!("{marker}{}", abbreviate_full(&rest, 0, max_width - 3));
    }
    let tail: String = chars[len - (max_width - 3)..].iter().collect();
    format!("{marker}{tail}")
}

fn abbrev(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let w = to_i64(arg(&a, 0));
    let text = s(arg(&a, 1));
    if w < 4 {
        return st(text);
    }
    st(abbreviate_full(&text, 0, w as usize))
}

fn abbrevboth(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let left = to_i64(arg(&a, 0));
    let right = to_i64(arg(&a, 1));
    let text = s(arg(&a, 2));
    if right < 4 || (left > 0 && right < 7) {
        return st(text);
    }
    st(abbreviate_full(&text, left.max(0) as usize, right as usize))
}

fn trunc(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let c = to_i64(arg(&a, 0));
    let text = s(arg(&a, 1));
    let chars: Vec<char> = text.chars().collect();
    let len = chars.len() as i64;
    if c < 0 && len + c > 0 {
        return st(chars[(len + c) as usize..].iter().collect());
    }
    if c >= 0 && len > c {
        return st(chars[..c as usize].iter().collect());
    }
    st(text)
}

fn trim(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(s(arg(&a, 0)).trim().to_owned())
}

fn upper(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(s(arg(&a, 0)).to_uppercase())
}

fn lower(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(s(arg(&a, 0)).to_lowercase())
}

/// Go `strings.Title`: upper-case the first letter of each word; word
/// boundaries are spaces, punctuation other than `_`, and the start.
fn title(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let mut prev_sep = true;
    let mut out = String::new();
    for c in s(arg(&a, 0)).chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        };
    }
    st(out)
}

/// Lower-case the first letter of each whitespace-separated word.
fn untitle(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let mut prev_space = true;
    let mut out = String::new();
    for c in s(arg(&a, 0)).chars() {
        if prev_space {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev_space = c.is_whitespace();
    }
    st(out)
}

fn substr(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let start = to_i64(arg(&a, 0));
    let end = to_i64(arg(&a, 1));
    let chars: Vec<char> = s(arg(&a, 2)).chars().collect();
    let len = chars.len() as i64;
    let (from, to) = if start < 0 {
        (0, end)
    } else if end < 0 || end > len {
        (start, len)
    } else {
        (start, end)
    };
    if from < 0 || to < 0 || from > to || to > len {
        return Err(rerr(format!(
            "slice bounds out of range [{from}:{to}] with length {len}"
        )));
    }
    st(chars[from as usize..to as usize].iter().collect())
}

fn repeat(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let n = count(arg(&a, 0), "repeat count")?;
    let text = s(arg(&a, 1));
    let total = text.len().saturating_mul(n);
    env.reserve(total)?;
    st(text.repeat(n))
}

fn trim_all(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let cutset: Vec<char> = s(arg(&a, 0)).chars().collect();
    st(s(arg(&a, 1))
        .trim_matches(|c| cutset.contains(&c))
        .to_owned())
}

fn trim_suffix(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let suf = s(arg(&a, 0));
    let text = s(arg(&a, 1));
    st(text.strip_suffix(suf.as_str()).unwrap_or(&text).to_owned())
}

fn trim_prefix(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let pre = s(arg(&a, 0));
    let text = s(arg(&a, 1));
    st(text.strip_prefix(pre.as_str()).unwrap_or(&text).to_owned())
}

fn nospace(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(s(arg(&a, 0))
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect())
}

fn initials(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(s(arg(&a, 0))
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .collect())
}

fn random_from(a: &[Value], alphabet: &[u8]) -> Result<Value, RenderError> {
    let n = count(arg(a, 0), "random string length")?;
    let mut rng = rand::rng();
    let out: String = (0..n)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect();
    st(out)
}

const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const DIGITS: &[u8] = b"0123456789";

fn rand_alpha_num(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    random_from(&a, ALNUM)
}

fn rand_alpha(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    random_from(&a, ALPHA)
}

fn rand_numeric(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    random_from(&a, DIGITS)
}

fn rand_ascii(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let printable: Vec<u8> = (32u8..=126).collect();
    random_from(&a, &printable)
}

fn swapcase(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let mut out = String::new();
    for c in s(arg(&a, 0)).chars() {
        if c.is_uppercase() {
            out.extend(c.to_lowercase());
        } else if c.is_lowercase() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
    }
    st(out)
}

fn shuffle(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let mut chars: Vec<char> = s(arg(&a, 0)).chars().collect();
    chars.shuffle(&mut rand::rng());
    st(chars.into_iter().collect())
}

/// Split an identifier into lower-cased words.
fn words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_uppercase() && !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn snakecase(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(words(&s(arg(&a, 0))).join("_"))
}

fn kebabcase(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(words(&s(arg(&a, 0))).join("-"))
}

/// xstrings `ToCamelCase`: `_`-separated parts, each part's first letter
/// upper-cased, the rest kept.
fn camelcase(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let text = s(arg(&a, 0));
    let mut out = String::new();
    if text.starts_with('_') {
        out.push('_');
    }
    for part in text.split('_').filter(|p| !p.is_empty()) {
        let mut cs = part.chars();
        if let Some(f) = cs.next() {
            out.extend(f.to_uppercase());
            out.push_str(cs.as_str());
        }
    }
    if text.len() > 1 && text.ends_with('_') {
        out.push('_');
    }
    st(out)
}

/// Greedy word wrap at spaces; words longer than `width` are split only
/// when `long`.
fn wrap_custom(text: &str, width: usize, sep: &str, long: bool) -> String {
    let width = width.max(1);
    let mut out = String::new();
    for (li, line) in text.split('\n').enumerate() {
        if li > 0 {
            out.push_str(sep);
        }
        let mut cur_len = 0usize;
        let mut first = true;
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            let mut word: Vec<char> = word.chars().collect();
            if !first && cur_len + 1 + word.len() <= width {
                out.push(' ');
                cur_len += 1;
            } else if !first {
                out.push_str(sep);
                cur_len = 0;
            }
            while long && word.len() > width {
                if cur_len > 0 {
                    out.push_str(sep);
                    cur_len = 0;
                }
                let rest = word.split_off(width);
                out.extend(word.iter());
                out.push_str(sep);
                word = rest;
            }
            cur_len += word.len();
            out.extend(word.iter());
            first = false;
        }
    }
    out
}

fn wrap(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let w = to_i64(arg(&a, 0)).max(1) as usize;
    let text = s(arg(&a, 1));
    env.reserve(text.len() * 2)?;
    st(wrap_custom(&text, w, "\n", false))
}

fn wrap_with(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let w = to_i64(arg(&a, 0)).max(1) as usize;
    let sep = s(arg(&a, 1));
    let text = s(arg(&a, 2));
    env.reserve(text.len().saturating_mul(sep.len() + 1))?;
    st(wrap_custom(&text, w, &sep, true))
}

fn contains(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::Bool(s(arg(&a, 1)).contains(&s(arg(&a, 0)))))
}

fn has_prefix(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::Bool(s(arg(&a, 1)).starts_with(&s(arg(&a, 0)))))
}

fn has_suffix(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::Bool(s(arg(&a, 1)).ends_with(&s(arg(&a, 0)))))
}

/// Go `strconv.Quote`.
pub(crate) fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n > 0xffff {
                    out.push_str(&format!("\\U{n:08x}"));
                } else {
                    out.push_str(&format!("\\u{n:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn total_len(a: &[Value]) -> usize {
    a.iter()
        .map(|v| match v {
            Value::String(s) => s.len(),
            _ => 32,
        })
        .sum()
}

fn quote(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    env.reserve(total_len(&a).saturating_mul(2))?;
    let parts: Vec<String> = a
        .iter()
        .filter(|v| !matches!(v, Value::Nil))
        .map(|v| go_quote(&s(v)))
        .collect();
    st(parts.join(" "))
}

fn squote(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    env.reserve(total_len(&a) + 3 * a.len())?;
    let parts: Vec<String> = a
        .iter()
        .filter(|v| !matches!(v, Value::Nil))
        .map(|v| format!("'{}'", s(v)))
        .collect();
    st(parts.join(" "))
}

fn cat(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    env.reserve(total_len(&a) + a.len())?;
    let parts: Vec<String> = a
        .iter()
        .filter(|v| !matches!(v, Value::Nil))
        .map(s)
        .collect();
    st(parts.join(" "))
}

fn do_indent(env: &mut Env, n: &Value, text: &str) -> Result<String, RenderError> {
    let n = count(n, "indent width")?;
    let lines = text.matches('\n').count() + 1;
    env.reserve(text.len().saturating_add(lines.saturating_mul(n)))?;
    let pad = " ".repeat(n);
    Ok(format!("{pad}{}", text.replace('\n', &format!("\n{pad}"))))
}

fn indent(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let text = s(arg(&a, 1));
    st(do_indent(env, arg(&a, 0), &text)?)
}

fn nindent(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let text = s(arg(&a, 1));
    st(format!("\n{}", do_indent(env, arg(&a, 0), &text)?))
}

fn replace(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let old = s(arg(&a, 0));
    let new = s(arg(&a, 1));
    let text = s(arg(&a, 2));
    let hits = if old.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(old.as_str()).count()
    };
    env.reserve(text.len().saturating_add(hits.saturating_mul(new.len())))?;
    st(text.replace(old.as_str(), &new))
}

fn plural(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let n = to_i64(arg(&a, 2));
    Ok(if n == 1 {
        Value::String(s(arg(&a, 0)))
    } else {
        Value::String(s(arg(&a, 1)))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha1sum(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(hex(&sha1::Sha1::digest(s(arg(&a, 0)).as_bytes())))
}

fn sha256sum(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(hex(&sha2::Sha256::digest(s(arg(&a, 0)).as_bytes())))
}

/// Adler-32 checksum (RFC 1950).
pub(crate) fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

fn adler32sum(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(adler32(s(arg(&a, 0)).as_bytes()).to_string())
}

fn to_string(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    st(s(arg(&a, 0)))
}

/// Go `strconv.Atoi`, errors ignored (→ 0).
fn atoi(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let text = s(arg(&a, 0));
    let body = text.strip_prefix(['+', '-']).unwrap_or(&text);
    let ok = !body.is_empty() && body.bytes().all(|c| c.is_ascii_digit());
    Ok(Value::Int(if ok { text.parse().unwrap_or(0) } else { 0 }))
}

fn int64(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::Int(to_i64(arg(&a, 0))))
}

fn float64(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::Float(to_f64(arg(&a, 0))))
}

/// sprig `untilStep` as a vector, with the item limit enforced.
pub(crate) fn until_step_vec(start: i64, stop: i64, step: i64) -> Result<Vec<i64>, RenderError> {
    let mut out = Vec::new();
    if step == 0 {
        return Ok(out);
    }
    let n = if step > 0 && start < stop {
        (i128::from(stop) - i128::from(start) + i128::from(step) - 1) / i128::from(step)
    } else if step < 0 && stop < start {
        (i128::from(start) - i128::from(stop) + (-i128::from(step)) - 1) / -i128::from(step)
    } else {
        0
    };
    if n > MAX_ITEMS as i128 {
        return Err(rerr(format!(
            "sequence of {n} items exceeds the limit of {MAX_ITEMS}"
        )));
    }
    let mut i = i128::from(start);
    for _ in 0..n {
        out.push(i as i64);
        i += i128::from(step);
    }
    Ok(out)
}

fn seq(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let p: Vec<i64> = a.iter().map(to_i64).collect();
    let nums = match p.as_slice() {
        [end] => {
            let inc = if *end < 1 { -1 } else { 1 };
            until_step_vec(1, end.saturating_add(inc), inc)?
        }
        [start, end] => {
            let step = if end < start { -1 } else { 1 };
            until_step_vec(*start, end.saturating_add(step), step)?
        }
        [start, step, end] => {
            let mut inc = 1;
            if end < start {
                inc = -1;
                if *step > 0 {
                    return st(String::new());
                }
            }
            until_step_vec(*start, end.saturating_add(inc), *step)?
        }
        _ => Vec::new(),
    };
    let parts: Vec<String> = nums.iter().map(i64::to_string).collect();
    st(parts.join(" "))
}

fn to_decimal(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let text = s(arg(&a, 0));
    Ok(Value::Int(i64::from_str_radix(&text, 8).unwrap_or(0)))
}

fn index_map(parts: Vec<&str>) -> Result<Value, RenderError> {
    if parts.len() > MAX_ITEMS {
        return Err(rerr(format!("split produced more than {MAX_ITEMS} parts")));
    }
    Ok(Value::Map(
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), Value::String(p.to_owned())))
            .collect(),
    ))
}

/// Go `strings.Split` (empty separator splits into characters).
fn go_split(text: &str, sep: &str, n: Option<usize>) -> Vec<String> {
    if sep.is_empty() {
        let chars: Vec<String> = text.chars().map(String::from).collect();
        return match n {
            Some(n) if n > 0 && chars.len() > n => {
                let mut v: Vec<String> = chars[..n - 1].to_vec();
                v.push(text.chars().skip(n - 1).collect());
                v
            }
            _ => chars,
        };
    }
    match n {
        Some(n) => text.splitn(n, sep).map(str::to_owned).collect(),
        None => text.split(sep).map(str::to_owned).collect(),
    }
}

fn split(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let parts = go_split(&s(arg(&a, 1)), &s(arg(&a, 0)), None);
    index_map(parts.iter().map(String::as_str).collect())
}

fn split_list(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let parts = go_split(&s(arg(&a, 1)), &s(arg(&a, 0)), None);
    if parts.len() > MAX_ITEMS {
        return Err(rerr(format!("split produced more than {MAX_ITEMS} parts")));
    }
    Ok(Value::List(parts.into_iter().map(Value::String).collect()))
}

fn splitn(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let sep = s(arg(&a, 0));
    let n = to_i64(arg(&a, 1));
    let text = s(arg(&a, 2));
    if n == 0 {
        return Ok(Value::Map(Default::default()));
    }
    let limit = if n < 0 { None } else { Some(n as usize) };
    let parts = go_split(&text, &sep, limit);
    index_map(parts.iter().map(String::as_str).collect())
}

fn to_strings(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::List(
        strslice(arg(&a, 0))
            .into_iter()
            .map(Value::String)
            .collect(),
    ))
}

fn int_list(v: Vec<i64>) -> Value {
    Value::List(v.into_iter().map(Value::Int).collect())
}

fn until(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let n = to_i64(arg(&a, 0));
    let step = if n < 0 { -1 } else { 1 };
    Ok(int_list(until_step_vec(0, n, step)?))
}

fn until_step(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(int_list(until_step_vec(
        to_i64(arg(&a, 0)),
        to_i64(arg(&a, 1)),
        to_i64(arg(&a, 2)),
    )?))
}

fn join(env: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let sep = s(arg(&a, 0));
    let parts = strslice(arg(&a, 1));
    let total: usize =
        parts.iter().map(String::len).sum::<usize>() + sep.len().saturating_mul(parts.len());
    env.reserve(total)?;
    check_len(total)?;
    st(parts.join(&sep))
}

fn sort_alpha(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let mut parts = match arg(&a, 0) {
        v @ Value::List(_) => strslice(v),
        other => vec![s(other)],
    };
    parts.sort();
    Ok(Value::List(parts.into_iter().map(Value::String).collect()))
}
