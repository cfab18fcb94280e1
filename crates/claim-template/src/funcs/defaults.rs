//! Defaults and JSON: `default`, `empty`, `coalesce`, `all`, `any`,
//! `compact`/`mustCompact`, `ternary`, `deepCopy`/`mustDeepCopy`,
//! `fromJson`/`mustFromJson` and the `toJson` family.
//!
//! Emptiness is sprig's: nil (including a missing map key), `false`, `0`,
//! `""` and empty collections. `toJson` output matches Go's
//! `encoding/json` (sorted keys, HTML-escaped `<>&`, Go float format);
//! `toRawJson` does not escape HTML. Deviation: `fromJson` keeps integral
//! numbers as integers (Go decodes every number as `float64`, which would
//! print large integers in exponent form).

use super::{FuncDef, VAR, arg, def, list_arg, rerr, s};
use crate::RenderError;
use crate::eval::Env;
use crate::value::{Value, to_go_json};

pub(super) const FUNCS: &[FuncDef] = &[
    def("default", 1, 2, default),
    def("empty", 1, 1, empty),
    def("coalesce", 0, VAR, coalesce),
    def("all", 0, VAR, all),
    def("any", 0, VAR, any),
    def("compact", 1, 1, compact),
    def("mustCompact", 1, 1, compact),
    def("ternary", 3, 3, ternary),
    def("deepCopy", 1, 1, deep_copy),
    def("mustDeepCopy", 1, 1, must_deep_copy),
    def("fromJson", 1, 1, from_json),
    def("mustFromJson", 1, 1, must_from_json),
    def("toJson", 1, 1, to_json),
    def("mustToJson", 1, 1, must_to_json),
    def("toPrettyJson", 1, 1, to_pretty_json),
    def("mustToPrettyJson", 1, 1, must_to_pretty_json),
    def("toRawJson", 1, 1, to_raw_json),
    def("mustToRawJson", 1, 1, must_to_raw_json),
];

/// `default DEFAULT GIVEN`: GIVEN unless it is empty (or absent).
fn default(_: &mut Env, mut a: Vec<Value>) -> Result<Value, RenderError> {
    let given = if a.len() > 1 { a.pop() } else { None };
    let dflt = a.pop().unwrap_or_default();
    Ok(match given {
        Some(g) if !g.is_empty() => g,
        _ => dflt,
    })
}

fn empty(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::Bool(arg(&a, 0).is_empty()))
}

fn coalesce(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(a.into_iter().find(|v| !v.is_empty()).unwrap_or_default())
}

fn all(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::Bool(a.iter().all(|v| !v.is_empty())))
}

fn any(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::Bool(a.iter().any(|v| !v.is_empty())))
}

fn compact(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let l = list_arg(arg(&a, 0), "compact")?;
    Ok(Value::List(
        l.iter().filter(|v| !v.is_empty()).cloned().collect(),
    ))
}

fn ternary(_: &mut Env, mut a: Vec<Value>) -> Result<Value, RenderError> {
    let cond = match a.pop().unwrap_or_default() {
        Value::Bool(b) => b,
        other => !other.is_empty(),
    };
    let vf = a.pop().unwrap_or_default();
    let vt = a.pop().unwrap_or_default();
    Ok(if cond { vt } else { vf })
}

fn deep_copy(_: &mut Env, mut a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(a.pop().unwrap_or_default())
}

fn must_deep_copy(_: &mut Env, mut a: Vec<Value>) -> Result<Value, RenderError> {
    match a.pop().unwrap_or_default() {
        Value::Nil => Err(rerr("copy: Invalid value")),
        v => Ok(v),
    }
}

fn parse_json(a: &[Value]) -> Result<Value, RenderError> {
    let text = s(arg(a, 0));
    serde_json::from_str::<serde_json::Value>(&text)
        .map(Value::from)
        .map_err(|e| rerr(e.to_string()))
}

fn from_json(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(parse_json(&a).unwrap_or_default())
}

fn must_from_json(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    parse_json(&a)
}

fn encode(a: &[Value], esc: bool, pretty: bool) -> Result<Value, RenderError> {
    to_go_json(arg(a, 0), esc, pretty)
        .map(Value::String)
        .map_err(rerr)
}

fn to_json(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(encode(&a, true, false).unwrap_or_else(|_| Value::String(String::new())))
}

fn must_to_json(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    encode(&a, true, false)
}

fn to_pretty_json(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(encode(&a, true, true).unwrap_or_else(|_| Value::String(String::new())))
}

fn must_to_pretty_json(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    encode(&a, true, true)
}

fn to_raw_json(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(encode(&a, false, false).unwrap_or_else(|_| Value::String(String::new())))
}

fn must_to_raw_json(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    encode(&a, false, false)
}
