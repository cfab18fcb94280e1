//! The function library: sprig's functions (by family, one module each) plus
//! the Go `text/template` builtins (`and`, `or`, `not`, `len`, `index`,
//! `print`, `printf`, `println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`,
//! `urlquery`, `html`, `js`).
//!
//! Functions receive already-evaluated arguments (a piped value is the last
//! one) and return a value or a [`RenderError`]. Argument counts are checked
//! by the parser against each [`FuncDef`]'s `min`/`max`.
//!
//! Argument conversion is lenient where Go would fail on a parameter's
//! static type: a string parameter accepts any value (printed with `%v`,
//! `nil` → `""`), an integer parameter converts like sprig's `toInt64`
//! (strings are parsed, floats truncated, failures are `0`).

use crate::RenderError;
use crate::eval::{Env, MAX_ITEMS};
use crate::value::Value;

mod builtins;
mod collections;
mod dates;
mod defaults;
mod encoding;
mod math;
mod misc;
mod strings;

/// Signature of a template function.
pub(crate) type FuncImpl = fn(&mut Env, Vec<Value>) -> Result<Value, RenderError>;

/// A named template function with its accepted argument count range.
pub(crate) struct FuncDef {
    /// Name used in templates.
    pub name: &'static str,
    /// Minimum number of arguments (including a piped value).
    pub min: usize,
    /// Maximum number of arguments (`usize::MAX` for variadic).
    pub max: usize,
    /// Implementation.
    pub f: FuncImpl,
}

impl std::fmt::Debug for FuncDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FuncDef({})", self.name)
    }
}

/// Variadic marker for [`FuncDef::max`].
pub(crate) const VAR: usize = usize::MAX;

/// Shorthand constructor for function tables.
pub(crate) const fn def(name: &'static str, min: usize, max: usize, f: FuncImpl) -> FuncDef {
    FuncDef { name, min, max, f }
}

/// All tables, sprig first so that sprig's definitions win over Go builtins
/// of the same name (as `template.Funcs` does).
const TABLES: &[&[FuncDef]] = &[
    dates::FUNCS,
    strings::FUNCS,
    math::FUNCS,
    defaults::FUNCS,
    encoding::FUNCS,
    collections::FUNCS,
    misc::FUNCS,
    builtins::FUNCS,
];

/// Find a function by name.
pub(crate) fn lookup(name: &str) -> Option<&'static FuncDef> {
    TABLES
        .iter()
        .flat_map(|t| t.iter())
        .find(|f| f.name == name)
}

/// Names of all functions (used by tests).
#[cfg(test)]
pub(crate) fn all_names() -> Vec<&'static str> {
    TABLES
        .iter()
        .flat_map(|t| t.iter())
        .map(|f| f.name)
        .collect()
}

static NIL: Value = Value::Nil;

/// Argument `i` (or nil if absent; the parser guarantees the count).
pub(crate) fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&NIL)
}

/// Build a render error.
pub(crate) fn rerr(msg: impl Into<String>) -> RenderError {
    RenderError::new(msg)
}

/// A string parameter: strings as-is, nil as `""`, anything else `%v`.
pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_go_string(),
    }
}

/// Go `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/leading-0
/// prefixes, underscores only with a prefix.
pub(crate) fn parse_int_base0(text: &str) -> Option<i64> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let (digits, radix) = if let Some(h) = lower.strip_prefix("0x") {
        (h.replace('_', ""), 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        (o.replace('_', ""), 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (b.replace('_', ""), 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (lower[1..].replace('_', ""), 8)
    } else {
        (lower.clone(), 10)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let mag = i128::from_str_radix(&digits, radix).ok()?;
    i64::try_from(if neg { -mag } else { mag }).ok()
}

/// sprig `toInt64` (spf13/cast semantics): numbers convert (floats
/// truncate), booleans are 1/0, strings are parsed with base prefixes (a
/// trailing `.0…` is ignored), anything else is 0.
pub(crate) fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        // `as` saturates and maps NaN to 0.
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::String(s) => {
            let t = match s.split_once('.') {
                Some((int, frac)) if !frac.is_empty() && frac.bytes().all(|c| c == b'0') => int,
                _ => s.as_str(),
            };
            parse_int_base0(t).unwrap_or(0)
        }
        Value::Duration(d) => d.num_nanoseconds().unwrap_or(0),
        _ => 0,
    }
}

/// sprig `toFloat64`: numbers convert, booleans are 1/0, strings are parsed,
/// anything else is 0.
pub(crate) fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => parse_go_float(s).unwrap_or(0.0),
        Value::Duration(d) => d.num_nanoseconds().unwrap_or(0) as f64,
        _ => 0.0,
    }
}

/// Go `strconv.ParseFloat` (decimal forms, `inf`, `nan`).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.replace('_', "");
    match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t.is_empty()
        || !t
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    t.parse().ok()
}

/// A count argument (sizes, repetitions): negative is 0, over the limit is
/// an error.
pub(crate) fn count(v: &Value, what: &str) -> Result<usize, RenderError> {
    let n = to_i64(v);
    if n < 0 {
        return Ok(0);
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > MAX_ITEMS {
        return Err(rerr(format!("{what} {n} exceeds the limit of {MAX_ITEMS}")));
    }
    Ok(n)
}

/// A list argument: lists as-is; anything else is an error naming `func`.
pub(crate) fn list_arg<'a>(v: &'a Value, func: &str) -> Result<&'a [Value], RenderError> {
    match v {
        Value::List(l) => Ok(l),
        other => Err(rerr(format!("Cannot {func} on type {}", other.type_name()))),
    }
}

/// A map argument.
pub(crate) fn map_arg<'a>(
    v: &'a Value,
    func: &str,
) -> Result<&'a std::collections::BTreeMap<String, Value>, RenderError> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(rerr(format!(
            "{func}: expected a dict, got {}",
            other.type_name()
        ))),
    }
}

/// sprig `strslice`: a list's non-nil items as strings; a scalar becomes a
/// one-item list; nil an empty one.
pub(crate) fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(s)
            .collect(),
        Value::Nil => Vec::new(),
        other => vec![s(other)],
    }
}
