//! Template values: the dynamic data model the evaluator works on, its
//! conversion from/to `serde_json`, Go `fmt` `%v` printing, and a
//! Go-`encoding/json`-compatible serializer used by `toJson` and friends.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, TimeDelta};

use crate::golayout;

/// A value flowing through a template pipeline.
///
/// This mirrors the handful of Go types sprig functions traffic in:
/// `nil`, `bool`, `int64`, `float64`, `string`, `time.Time`,
/// `time.Duration`, `[]interface{}` and `map[string]interface{}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Go `nil`; also what a missing map key evaluates to.
    #[default]
    Nil,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer (Go `int` / `int64`).
    Int(i64),
    /// A 64-bit float (Go `float64`).
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// An instant with a fixed UTC offset (Go `time.Time`).
    Time(DateTime<FixedOffset>),
    /// A span of time (Go `time.Duration`).
    Duration(TimeDelta),
    /// An ordered list (Go `[]interface{}`).
    List(Vec<Value>),
    /// A string-keyed map (Go `map[string]interface{}`); keys are kept sorted,
    /// which is also the order Go's `fmt` and `encoding/json` print them in.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// Build a map value from `(key, value)` pairs, e.g. to assemble a
    /// template context: `Value::map([("Client", client), ("AuthServer", server)])`.
    pub fn map<K, V, I>(entries: I) -> Value
    where
        K: Into<String>,
        V: Into<Value>,
        I: IntoIterator<Item = (K, V)>,
    {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// Build a list value from anything convertible into values.
    pub fn list<V, I>(items: I) -> Value
    where
        V: Into<Value>,
        I: IntoIterator<Item = V>,
    {
        Value::List(items.into_iter().map(Into::into).collect())
    }

    /// The Go-ish type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::String(_) => "string",
            Value::Time(_) => "time.Time",
            Value::Duration(_) => "time.Duration",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
        }
    }

    /// Sprig's notion of emptiness (`empty`, `default`, `coalesce`, …):
    /// nil, `false`, `0`, `0.0`, `""`, empty list/map and a zero duration.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Nil => true,
            Value::Bool(b) => !b,
            Value::Int(i) => *i == 0,
            Value::Float(f) => *f == 0.0,
            Value::String(s) => s.is_empty(),
            Value::Time(_) => false,
            Value::Duration(d) => d.is_zero(),
            Value::List(l) => l.is_empty(),
            Value::Map(m) => m.is_empty(),
        }
    }

    /// Go `fmt` `%v` rendering of the value.
    pub fn to_go_string(&self) -> String {
        let mut out = String::new();
        write_go(&mut out, self);
        out
    }

    /// Convert to JSON. Times become RFC 3339 strings, durations their
    /// nanosecond count (as Go's `encoding/json` does) and non-finite floats
    /// `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Nil => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::String(s) => J::String(s.clone()),
            Value::Time(t) => J::String(golayout::format(t, golayout::RFC3339_NANO)),
            Value::Duration(d) => J::from(d.num_nanoseconds().unwrap_or(i64::MAX)),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        use serde_json::Value as J;
        match v {
            J::Null => Value::Nil,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::String(s),
            J::Array(a) => Value::List(a.into_iter().map(Value::from).collect()),
            J::Object(o) => Value::Map(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl<Tz: chrono::TimeZone> From<DateTime<Tz>> for Value {
    fn from(t: DateTime<Tz>) -> Self {
        Value::Time(t.fixed_offset())
    }
}

impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Self {
        Value::List(l)
    }
}

impl From<BTreeMap<String, Value>> for Value {
    fn from(m: BTreeMap<String, Value>) -> Self {
        Value::Map(m)
    }
}

impl<K: Into<String>> FromIterator<(K, Value)> for Value {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        Value::Map(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl FromIterator<Value> for Value {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Self {
        Value::List(iter.into_iter().collect())
    }
}

fn write_go(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&format_go_float(*f)),
        Value::String(s) => out.push_str(s),
        Value::Time(t) => out.push_str(&golayout::format(t, golayout::GO_TIME_STRING)),
        Value::Duration(d) => out.push_str(&golayout::format_duration(*d)),
        Value::List(l) => {
            out.push('[');
            for (i, item) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_go(out, item);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_go(out, item);
            }
            out.push(']');
        }
    }
}

/// Split a finite, non-zero float into its shortest decimal digits and the
/// decimal exponent of the first digit (`d.ddd × 10^exp`).
fn shortest_digits(f: f64) -> (String, i32) {
    let s = format!("{:e}", f.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` as used by `%v`.
pub(crate) fn format_go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (digits, exp) = shortest_digits(f);
    let sign = if f < 0.0 { "-" } else { "" };
    // %v is %g with the shortest precision: the exponent form is used when
    // the decimal exponent is < -4 or >= 6 (strconv uses eprec = 6).
    if !(-4..6).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    format!("{sign}{}", plain_decimal(&digits, exp))
}

/// Render digits `d.ddd × 10^exp` without an exponent.
fn plain_decimal(digits: &str, exp: i32) -> String {
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("0.{zeros}{digits}")
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..int_len], &digits[int_len..])
        }
    }
}

/// Go `encoding/json` float formatting (`strconv` 'f' in [1e-6, 1e21), else 'e').
fn format_json_float(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (digits, exp) = shortest_digits(f);
    let sign = if f < 0.0 { "-" } else { "" };
    let abs = f.abs();
    if !(1e-6..1e21).contains(&abs) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        // Go's json trims "e-07" to "e-7".
        return format!("{sign}{m}e{esign}{}", exp.abs());
    }
    format!("{sign}{}", plain_decimal(&digits, exp))
}

/// Serialize like Go's `encoding/json`: sorted map keys, Go float format,
/// optional HTML escaping of `<`, `>`, `&` (`json.Marshal` does it,
/// `toRawJson` does not), optional two-space indentation.
pub(crate) fn to_go_json(v: &Value, escape_html: bool, pretty: bool) -> Result<String, String> {
    let mut out = String::new();
    write_json(&mut out, v, escape_html, pretty, 0)?;
    Ok(out)
}

fn newline_indent(out: &mut String, pretty: bool, depth: usize) {
    if pretty {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
}

fn write_json(
    out: &mut String,
    v: &Value,
    esc: bool,
    pretty: bool,
    depth: usize,
) -> Result<(), String> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => {
            if !f.is_finite() {
                return Err(format!("json: unsupported value: {}", format_go_float(*f)));
            }
            out.push_str(&format_json_float(*f));
        }
        Value::String(s) => write_json_string(out, s, esc),
        Value::Time(t) => write_json_string(out, &golayout::format(t, golayout::RFC3339_NANO), esc),
        Value::Duration(d) => {
            let _ = write!(out, "{}", d.num_nanoseconds().unwrap_or(i64::MAX));
        }
        Value::List(l) => {
            out.push('[');
            for (i, item) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, pretty, depth + 1);
                write_json(out, item, esc, pretty, depth + 1)?;
            }
            if !l.is_empty() {
                newline_indent(out, pretty, depth);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, pretty, depth + 1);
                write_json_string(out, k, esc);
                out.push(':');
                if pretty {
                    out.push(' ');
                }
                write_json(out, item, esc, pretty, depth + 1)?;
            }
            if !m.is_empty() {
                newline_indent(out, pretty, depth);
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_json_string(out: &mut String, s: &str, esc: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' if esc => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
