//! Evaluator: walks the AST against a context value, calls functions and
//! enforces the resource limits that keep a hostile template from
//! exhausting memory on the token-issuing hot path.

use chrono::{DateTime, FixedOffset, Utc};

use crate::RenderError;
use crate::parser::{Command, Node, Operand, Pipeline};
use crate::value::Value;

/// Maximum length of any string produced while rendering (and of the
/// rendered claim text).
pub(crate) const MAX_STRING: usize = 64 * 1024;
/// Maximum number of items in any list or map produced while rendering,
/// and of any count argument (`until`, `seq`, `repeat`, `randAlpha` …).
pub(crate) const MAX_ITEMS: usize = 10_000;
/// Maximum total (approximate) bytes of values produced by function calls
/// during one render.
pub(crate) const MAX_BUDGET: usize = 4 * 1024 * 1024;

static NIL: Value = Value::Nil;

/// Per-render state handed to every function.
pub(crate) struct Env {
    clock: Option<DateTime<FixedOffset>>,
    used: usize,
}

impl Env {
    /// A fresh environment; `clock` pins `now` (tests), `None` uses the wall clock.
    pub(crate) fn new(clock: Option<DateTime<FixedOffset>>) -> Env {
        Env { clock, used: 0 }
    }

    /// The current time (UTC; Go's "Local" is treated as UTC).
    pub(crate) fn now(&self) -> DateTime<FixedOffset> {
        self.clock.unwrap_or_else(|| Utc::now().fixed_offset())
    }

    /// Account for a produced value, failing when a limit is exceeded.
    fn charge(&mut self, v: &Value) -> Result<(), RenderError> {
        let size = approx_size(v, 0)?;
        self.used = self.used.saturating_add(size);
        if self.used > MAX_BUDGET {
            return Err(RenderError::new(format!(
                "template exceeded its {MAX_BUDGET}-byte evaluation budget"
            )));
        }
        Ok(())
    }

    /// Fail early when a function is about to build more than allowed.
    pub(crate) fn reserve(&mut self, bytes: usize) -> Result<(), RenderError> {
        if bytes > MAX_STRING {
            return Err(RenderError::new(format!(
                "result would be {bytes} bytes, over the {MAX_STRING}-byte limit"
            )));
        }
        if self.used.saturating_add(bytes) > MAX_BUDGET {
            return Err(RenderError::new(format!(
                "template exceeded its {MAX_BUDGET}-byte evaluation budget"
            )));
        }
        Ok(())
    }
}

/// Size of a value, checking per-value limits on the way.
fn approx_size(v: &Value, depth: usize) -> Result<usize, RenderError> {
    if depth > 256 {
        return Err(RenderError::new("value nested too deeply"));
    }
    Ok(match v {
        Value::String(s) => {
            if s.len() > MAX_STRING {
                return Err(RenderError::new(format!(
                    "string of {} bytes exceeds the {MAX_STRING}-byte limit",
                    s.len()
                )));
            }
            s.len() + 8
        }
        Value::List(l) => {
            if l.len() > MAX_ITEMS {
                return Err(RenderError::new(format!(
                    "list of {} items exceeds the {MAX_ITEMS}-item limit",
                    l.len()
                )));
            }
            let mut n = 16;
            for x in l {
                n += approx_size(x, depth + 1)?;
            }
            n
        }
        Value::Map(m) => {
            if m.len() > MAX_ITEMS {
                return Err(RenderError::new(format!(
                    "map of {} entries exceeds the {MAX_ITEMS}-entry limit",
                    m.len()
                )));
            }
            let mut n = 16;
            for (k, x) in m {
                n += k.len() + 8 + approx_size(x, depth + 1)?;
            }
            n
        }
        _ => 16,
    })
}

/// Render nodes to text.
pub(crate) fn render_nodes(
    nodes: &[Node],
    root: &Value,
    env: &mut Env,
) -> Result<String, RenderError> {
    let mut out = String::new();
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = eval_pipeline(p, root, env)?;
                print_value(&mut out, &v);
            }
        }
        if out.len() > MAX_STRING {
            return Err(RenderError::new(format!(
                "rendered claim exceeds the {MAX_STRING}-byte limit"
            )));
        }
    }
    Ok(out)
}

/// Print an action's result: `nil` (a missing key) prints as nothing.
pub(crate) fn print_value(out: &mut String, v: &Value) {
    match v {
        Value::Nil => {}
        Value::String(s) => out.push_str(s),
        other => out.push_str(&other.to_go_string()),
    }
}

/// Evaluate a pipeline.
pub(crate) fn eval_pipeline(
    p: &Pipeline,
    root: &Value,
    env: &mut Env,
) -> Result<Value, RenderError> {
    let mut prev: Option<Value> = None;
    for cmd in &p.cmds {
        prev = Some(eval_command(cmd, root, env, prev.take())?);
    }
    Ok(prev.unwrap_or(Value::Nil))
}

fn eval_command(
    cmd: &Command,
    root: &Value,
    env: &mut Env,
    piped: Option<Value>,
) -> Result<Value, RenderError> {
    match cmd {
        Command::Call { func, args, pos } => {
            let mut vals = Vec::with_capacity(args.len() + 1);
            for a in args {
                vals.push(eval_operand(a, root, env)?);
            }
            if let Some(p) = piped {
                vals.push(p);
            }
            let v = (func.f)(env, vals).map_err(|e| e.in_func(func.name, *pos))?;
            env.charge(&v)?;
            Ok(v)
        }
        Command::Operand(op) => eval_operand(op, root, env),
    }
}

fn eval_operand(op: &Operand, root: &Value, env: &mut Env) -> Result<Value, RenderError> {
    match op {
        Operand::Literal(v) => Ok(v.clone()),
        Operand::Path(path) => walk(root, path).cloned(),
        Operand::Niladic { func, pos } => {
            let v = (func.f)(env, Vec::new()).map_err(|e| e.in_func(func.name, *pos))?;
            env.charge(&v)?;
            Ok(v)
        }
        Operand::Sub(p, path) => {
            let v = eval_pipeline(p, root, env)?;
            if path.is_empty() {
                Ok(v)
            } else {
                walk(&v, path).cloned()
            }
        }
    }
}

/// Follow a field path. Missing keys and fields of nil yield nil.
fn walk<'a>(mut cur: &'a Value, path: &[String]) -> Result<&'a Value, RenderError> {
    for name in path {
        cur = match cur {
            Value::Map(m) => m.get(name).unwrap_or(&NIL),
            Value::Nil => &NIL,
            other => {
                return Err(RenderError::new(format!(
                    "can't evaluate field {name} in type {}",
                    other.type_name()
                )));
            }
        };
    }
    Ok(cur)
}
