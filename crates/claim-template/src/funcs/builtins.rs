//! Go `text/template` builtin functions: `and`, `or`, `not`, `len`,
//! `index`, `print`, `printf`, `println`, `eq`, `ne`, `lt`, `le`, `gt`,
//! `ge`, `urlquery`, `html`, `js`.
//!
//! Deviations: `and`/`or` evaluate all their arguments (there are no side
//! effects to skip); comparisons accept mixed integer/float operands and
//! compare them numerically (Go reports incompatible types); `printf`
//! supports the verbs `v s d q f F e E g G t x X o b c %` with flags
//! `- + 0 space #`, width and precision.

use super::{FuncDef, VAR, arg, def, rerr, s};
use crate::RenderError;
use crate::eval::{Env, MAX_STRING};
use crate::value::{Value, format_go_float};

pub(super) const FUNCS: &[FuncDef] = &[
    def("and", 1, VAR, and),
    def("or", 1, VAR, or),
    def("not", 1, 1, not),
    def("len", 1, 1, len),
    def("index", 1, VAR, index),
    def("print", 0, VAR, print),
    def("println", 0, VAR, println),
    def("printf", 1, VAR, printf),
    def("eq", 2, VAR, eq),
    def("ne", 2, 2, ne),
    def("lt", 2, 2, lt),
    def("le", 2, 2, le),
    def("gt", 2, 2, gt),
    def("ge", 2, 2, ge),
    def("urlquery", 0, VAR, urlquery),
    def("html", 0, VAR, html),
    def("js", 0, VAR, js),
];

type Res = Result<Value, RenderError>;

/// Go template truthiness.
fn truth(v: &Value) -> bool {
    match v {
        Value::Time(_) => true,
        other => !other.is_empty(),
    }
}

fn and(_: &mut Env, a: Vec<Value>) -> Res {
    let n = a.len();
    for (i, v) in a.into_iter().enumerate() {
        if !truth(&v) || i + 1 == n {
            return Ok(v);
        }
    }
    Ok(Value::Nil)
}

fn or(_: &mut Env, a: Vec<Value>) -> Res {
    let n = a.len();
    for (i, v) in a.into_iter().enumerate() {
        if truth(&v) || i + 1 == n {
            return Ok(v);
        }
    }
    Ok(Value::Nil)
}

fn not(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::Bool(!truth(arg(&a, 0))))
}

fn len(_: &mut Env, a: Vec<Value>) -> Res {
    let n = match arg(&a, 0) {
        Value::String(s) => s.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        other => return Err(rerr(format!("len of type {}", other.type_name()))),
    };
    Ok(Value::Int(n as i64))
}

fn index(_: &mut Env, a: Vec<Value>) -> Res {
    let mut cur = arg(&a, 0).clone();
    for idx in a.iter().skip(1) {
        cur = match (&cur, idx) {
            (Value::Map(m), k) => m.get(&s(k)).cloned().unwrap_or_default(),
            (Value::List(l), Value::Int(i)) => {
                let i = usize::try_from(*i)
                    .ok()
                    .filter(|i| *i < l.len())
                    .ok_or_else(|| rerr(format!("index out of range: {i}")))?;
                l[i].clone()
            }
            (Value::String(st), Value::Int(i)) => {
                let b = usize::try_from(*i)
                    .ok()
                    .and_then(|i| st.as_bytes().get(i))
                    .ok_or_else(|| rerr(format!("index out of range: {i}")))?;
                Value::Int(i64::from(*b))
            }
            (Value::Nil, _) => return Err(rerr("index of untyped nil")),
            (c, i) => {
                return Err(rerr(format!(
                    "can't index item of type {} with {}",
                    c.type_name(),
                    i.type_name()
                )));
            }
        };
    }
    Ok(cur)
}

fn go_v(v: &Value) -> String {
    v.to_go_string()
}

/// `fmt.Sprint`: spaces between operands when neither side is a string.
fn sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !matches!(v, Value::String(_)) && !matches!(a[i - 1], Value::String(_)) {
            out.push(' ');
        }
        out.push_str(&go_v(v));
    }
    out
}

fn reserve_args(env: &mut Env, a: &[Value]) -> Result<(), RenderError> {
    let n: usize = a
        .iter()
        .map(|v| match v {
            Value::String(s) => s.len() + 1,
            _ => 64,
        })
        .sum();
    env.reserve(n)
}

fn print(env: &mut Env, a: Vec<Value>) -> Res {
    reserve_args(env, &a)?;
    Ok(Value::String(sprint(&a)))
}

fn println(env: &mut Env, a: Vec<Value>) -> Res {
    reserve_args(env, &a)?;
    let parts: Vec<String> = a.iter().map(go_v).collect();
    Ok(Value::String(format!("{}\n", parts.join(" "))))
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn go_exp(f: f64, prec: usize, upper: bool) -> String {
    let s = format!("{f:.prec$e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    let sign = if e < 0 { '-' } else { '+' };
    let out = format!("{m}e{sign}{:02}", e.abs());
    if upper { out.to_uppercase() } else { out }
}

fn format_one(verb: char, sp: &Spec, v: &Value) -> String {
    let bad = || format!("%!{verb}({}={})", v.type_name(), go_v(v));
    let num_sign = |neg: bool| {
        if neg {
            "-"
        } else if sp.plus {
            "+"
        } else if sp.space {
            " "
        } else {
            ""
        }
    };
    let body = match (verb, v) {
        ('v', _) => go_v(v),
        ('s', Value::String(x)) => x.clone(),
        ('s', other) => go_v(other),
        ('q', Value::String(x)) => super::strings::go_quote(x),
        ('q', Value::Int(i)) => char::from_u32(*i as u32).map_or_else(bad, |c| format!("{c:?}")),
        ('t', Value::Bool(b)) => b.to_string(),
        ('d', Value::Int(i)) => format!("{}{}", num_sign(*i < 0), i.unsigned_abs()),
        ('x', Value::Int(i)) => format!("{}{:x}", num_sign(*i < 0), i.unsigned_abs()),
        ('X', Value::Int(i)) => format!("{}{:X}", num_sign(*i < 0), i.unsigned_abs()),
        ('o', Value::Int(i)) => format!("{}{:o}", num_sign(*i < 0), i.unsigned_abs()),
        ('b', Value::Int(i)) => format!("{}{:b}", num_sign(*i < 0), i.unsigned_abs()),
        ('c', Value::Int(i)) => char::from_u32(*i as u32).map_or_else(bad, String::from),
        ('x', Value::String(x)) => x.bytes().map(|b| format!("{b:02x}")).collect(),
        ('X', Value::String(x)) => x.bytes().map(|b| format!("{b:02X}")).collect(),
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Value::Int(_)) => bad(),
        ('f' | 'F', Value::Float(f)) => {
            format!("{}{:.*}", num_sign(*f < 0.0), sp.prec.unwrap_or(6), f.abs())
        }
        ('e' | 'E', Value::Float(f)) => format!(
            "{}{}",
            num_sign(*f < 0.0),
            go_exp(f.abs(), sp.prec.unwrap_or(6), verb == 'E')
        ),
        ('g' | 'G', Value::Float(f)) => {
            let t = format!("{}{}", num_sign(*f < 0.0), format_go_float(f.abs()));
            if verb == 'G' { t.to_uppercase() } else { t }
        }
        _ => bad(),
    };
    let body = match (verb, sp.prec, v) {
        ('s', Some(p), _) => body.chars().take(p).collect(),
        _ => body,
    };
    let _ = sp.sharp;
    pad(
        body,
        sp,
        matches!(v, Value::Int(_) | Value::Float(_)) && verb != 's' && verb != 'v',
    )
}

fn pad(body: String, sp: &Spec, numeric: bool) -> String {
    let Some(w) = sp.width else {
        return body;
    };
    let len = body.chars().count();
    if len >= w {
        return body;
    }
    let fill = w - len;
    if sp.minus {
        format!("{body}{}", " ".repeat(fill))
    } else if sp.zero && numeric {
        let (sign, digits) = match body.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), body[1..].to_owned()),
            _ => (String::new(), body),
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{body}", " ".repeat(fill))
    }
}

fn printf(env: &mut Env, a: Vec<Value>) -> Res {
    let fmt = s(arg(&a, 0));
    let args = &a[1.min(a.len())..];
    reserve_args(env, &a)?;
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut sp = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => sp.minus = true,
                '+' => sp.plus = true,
                '0' => sp.zero = true,
                ' ' => sp.space = true,
                '#' => sp.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
                chars.next();
            }
            n
        };
        sp.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            sp.prec = Some(num(&mut chars).unwrap_or(0));
        }
        if sp.width.unwrap_or(0) > MAX_STRING || sp.prec.unwrap_or(0) > 1000 {
            return Err(rerr("printf width or precision too large"));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(v) => out.push_str(&format_one(verb, &sp, v)),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
        next += 1;
        if out.len() > MAX_STRING {
            return Err(rerr("printf result too large"));
        }
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|v| format!("{}={}", v.type_name(), go_v(v)))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    Ok(Value::String(out))
}

fn cmp(a: &Value, b: &Value) -> Result<std::cmp::Ordering, RenderError> {
    use std::cmp::Ordering;
    let num = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Time(x), Value::Time(y)) => Ok(x.cmp(y)),
        (Value::Duration(x), Value::Duration(y)) => Ok(x.cmp(y)),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).ok_or_else(|| rerr("incomparable NaN")),
            _ => {
                let _ = Ordering::Equal;
                Err(rerr(format!(
                    "incompatible types for comparison: {} and {}",
                    a.type_name(),
                    b.type_name()
                )))
            }
        },
    }
}

fn equal(a: &Value, b: &Value) -> Result<bool, RenderError> {
    match (a, b) {
        (Value::Nil, Value::Nil) => Ok(true),
        (Value::Nil, _) | (_, Value::Nil) => Ok(false),
        (Value::Bool(x), Value::Bool(y)) => Ok(x == y),
        (Value::List(_) | Value::Map(_), _) | (_, Value::List(_) | Value::Map(_)) => {
            Err(rerr(format!(
                "non-comparable types {} and {}",
                a.type_name(),
                b.type_name()
            )))
        }
        _ => Ok(cmp(a, b)?.is_eq()),
    }
}

fn eq(_: &mut Env, a: Vec<Value>) -> Res {
    let first = arg(&a, 0);
    if a.len() < 2 {
        return Err(rerr("missing argument for comparison"));
    }
    for other in &a[1..] {
        if equal(first, other)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn ne(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::Bool(!equal(arg(&a, 0), arg(&a, 1))?))
}

fn lt(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::Bool(cmp(arg(&a, 0), arg(&a, 1))?.is_lt()))
}

fn le(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::Bool(cmp(arg(&a, 0), arg(&a, 1))?.is_le()))
}

fn gt(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::Bool(cmp(arg(&a, 0), arg(&a, 1))?.is_gt()))
}

fn ge(_: &mut Env, a: Vec<Value>) -> Res {
    Ok(Value::Bool(cmp(arg(&a, 0), arg(&a, 1))?.is_ge()))
}

/// Go `url.QueryEscape` of the `fmt.Sprint` of the arguments.
fn urlquery(env: &mut Env, a: Vec<Value>) -> Res {
    reserve_args(env, &a)?;
    let text = if let [Value::String(x)] = a.as_slice() {
        x.clone()
    } else {
        sprint(&a)
    };
    let mut out = String::new();
    for &c in text.as_bytes() {
        match c {
            b' ' => out.push('+'),
            c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') => {
                out.push(char::from(c));
            }
            c => out.push_str(&format!("%{c:02X}")),
        }
    }
    Ok(Value::String(out))
}

fn html(env: &mut Env, a: Vec<Value>) -> Res {
    reserve_args(env, &a)?;
    let text = sprint(&a);
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    Ok(Value::String(out))
}

fn js(env: &mut Env, a: Vec<Value>) -> Res {
    reserve_args(env, &a)?;
    let text = sprint(&a);
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    Ok(Value::String(out))
}
