//! Kong Identity claim templates.
//!
//! A claim's `value` is a string that may embed template expressions between
//! `${` and `}`. The expression language is the *action* syntax of Go's
//! `text/template` (with those delimiters) plus the [sprig] function
//! library, evaluated when a token is issued:
//!
//! ```
//! use gatehouse_claim_template::{Template, Value};
//!
//! let ctx = Value::map([
//!     ("AuthServer", Value::map([("Audience", "api")])),
//!     ("Client", Value::map([("ID", "c-1"), ("Name", "shop")])),
//! ]);
//! let t = Template::parse("${ .AuthServer.Audience }-${ .Client.ID }").unwrap();
//! assert_eq!(t.render(&ctx).unwrap(), serde_json::json!("api-c-1"));
//! let t = Template::parse("${ upper .Client.Name }").unwrap();
//! assert_eq!(t.render(&ctx).unwrap(), serde_json::json!("SHOP"));
//! ```
//!
//! # Syntax
//!
//! * Fields: `.`, `.Client.Name`, `$`, `$.Client.Name`; `(pipeline).Field`.
//! * Literals: `"Go \"escapes\" \u00e9"`, `` `raw` ``, `'c'` (an integer),
//!   `42`, `0x2A`, `-1.5`, `1e3` (a float, as in Go), `true`, `false`, `nil`.
//! * Calls `f a b`, parenthesised sub-expressions `(upper .Client.Name)`,
//!   pipelines `a | f "x"` — the piped value is passed as the **last**
//!   argument, as in Go.
//! * Whitespace inside `${ … }` is insignificant; Go trim markers
//!   (`${- x -}`) and comments (`${/* note */}`) are accepted. A `}` inside
//!   a string literal does not close an action.
//! * Variables (`$x := …`) and control structures (`if`, `range`, `with`,
//!   …) are rejected with a [`ParseError`].
//!
//! Everything that can be checked statically is checked by
//! [`Template::parse`]: unclosed `${`, bad literals, unknown functions and
//! wrong argument counts (counting a piped value as an argument). Failures
//! that depend on data (`mustX` functions, division by zero, bad dates…)
//! surface as [`RenderError`] from [`Template::render`].
//!
//! # Semantics and deliberate choices
//!
//! * **Missing map keys render as the empty string.** Go prints
//!   `<no value>` for them; for claims that is never what an admin wants, and
//!   sprig's `default` treats the missing value as empty, so
//!   `${ .Client.Labels.environment | default "production" }` works. Field
//!   access on a missing value (`.Client.Labels.a.b`) is also `nil` rather
//!   than an error. Wherever a function expects a string, `nil` converts to
//!   `""`.
//! * **Printing** follows Go's `fmt` `%v`: lists print as `[a b c]`, maps as
//!   `map[k:v]` (keys sorted), floats in `%g` form (`1e+06`), times as
//!   `2006-01-02 15:04:05.999999999 -0700 MST`, durations as `1h2m3s`.
//! * **Whole-value structures are JSON.** When the claim value is exactly
//!   one action (no literal text around it, not even whitespace) and that
//!   action yields a list or a map, the claim becomes the corresponding JSON
//!   array/object (times as RFC 3339 strings, durations as nanoseconds)
//!   instead of the `%v` text — that is what a user wants in a JWT, e.g.
//!   `${ .Client.GrantTypes }` → `["client_credentials"]`. In every other
//!   case the rendered text goes through [`infer_json`].
//! * **Type inference** ([`infer_json`]): exact integer text that fits `i64`
//!   (no sign other than a leading `-`, no leading zeros) becomes a number;
//!   exact JSON float text that is finite becomes a number; `true`/`false`
//!   become booleans; text starting with `{` or `[` that parses as JSON
//!   becomes that JSON; anything else (including `null`, `1e400`, ` 42`,
//!   `007`) stays a string. Static values (no `${`) are inferred the same way
//!   once, at parse time, and rendering them is a clone.
//! * **Time zones:** `now` is UTC and Go's `"Local"` zone is UTC. Zone names
//!   accepted by `dateInZone`/`htmlDateInZone` are `UTC`, `GMT`, `Local`,
//!   `Z`, `Etc/GMT±N` and numeric offsets (`+02:00`, `-0530`); IANA region
//!   names need a tz database this crate deliberately does not ship and give
//!   a [`RenderError`].
//! * **Limits** (abuse protection on the token hot path): claim source
//!   ≤ 64 KiB; parenthesis nesting ≤ 64; any produced string ≤ 64 KiB; any
//!   produced list/map and any count argument (`repeat`, `until`, `seq`,
//!   `randAlphaNum`, `indent` …) ≤ 10 000; and 4 MiB of produced values per
//!   render. Exceeding a limit is a [`RenderError`].
//!
//! # Functions
//!
//! All of sprig's functions in these families, with sprig's argument order
//! (so the natural piped argument is last):
//!
//! * **Dates:** `now date dateInZone htmlDate htmlDateInZone toDate
//!   mustToDate dateModify mustDateModify ago duration durationRound
//!   unixEpoch` (layouts use Go's reference time, e.g.
//!   `"2006-01-02T15:04:05Z07:00"`).
//! * **Strings:** `abbrev abbrevboth trunc trim trimAll trimPrefix
//!   trimSuffix upper lower title untitle substr repeat nospace initials
//!   swapcase shuffle snakecase camelcase kebabcase wrap wrapWith contains
//!   hasPrefix hasSuffix quote squote cat indent nindent replace plural
//!   randAlphaNum randAlpha randAscii randNumeric sha1sum sha256sum
//!   adler32sum toString atoi int int64 float64 toDecimal seq split
//!   splitList splitn toStrings until untilStep join sortAlpha`.
//! * **Math:** `add1 add sub div mod mul randInt add1f addf subf divf mulf
//!   biggest max min maxf minf ceil floor round`.
//! * **Defaults / JSON:** `default empty coalesce all any compact
//!   mustCompact ternary deepCopy mustDeepCopy fromJson mustFromJson toJson
//!   mustToJson toPrettyJson mustToPrettyJson toRawJson mustToRawJson`.
//! * **Paths:** `base dir clean ext isAbs`. **Encoding:** `b64enc b64dec
//!   b32enc b32dec`.
//! * **Lists / dicts:** `list tuple dict get set unset hasKey pluck keys
//!   values pick omit merge mustMerge mergeOverwrite mustMergeOverwrite dig
//!   append push prepend first rest last initial reverse uniq without has
//!   slice concat chunk` and their `must…` forms.
//! * **UUID / URL:** `uuidv4 uuidParse uuidValidate urlParse urlJoin`.
//! * **Go builtins:** `and or not len index print printf println eq ne lt
//!   le gt ge urlquery html js`.
//!
//! Deviations from Go/sprig, all deliberate:
//!
//! * Parameters are converted leniently instead of failing on Go's static
//!   types: a string parameter accepts any value (`%v`, `nil` → `""`), an
//!   integer parameter converts like sprig's `toInt64` (`"42"` → 42).
//! * Where sprig panics (a Go template error), e.g. `first 1`, both the
//!   plain and the `must` variant return a [`RenderError`].
//! * Positions in `substr`/`trunc`/`abbrev` count characters, not bytes.
//! * `snakecase`/`kebabcase` keep digits attached to the preceding word.
//! * `fromJson` keeps integral numbers as integers (Go makes them
//!   `float64`).
//! * `keys`/`values` are in sorted key order (Go's is random).
//! * `and`/`or` evaluate all arguments; comparisons accept int/float mixes.
//! * `uuidParse` (a Kong addition) returns the canonical UUID string.
//!
//! [sprig]: https://masterminds.github.io/sprig/

mod eval;
mod funcs;
mod golayout;
mod lexer;
mod parser;
mod value;

#[cfg(test)]
mod tests;

use std::fmt;

pub use value::Value;

use parser::Node;

/// Error returned by [`Template::parse`]: the claim value is not a valid
/// template. Carries the byte offset in the source where the problem was
/// found.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pos: usize,
    message: String,
}

impl ParseError {
    pub(crate) fn new(pos: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            pos,
            message: message.into(),
        }
    }

    /// Byte offset in the claim value where the error was detected.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The error message without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "template parse error at offset {}: {}",
            self.pos, self.message
        )
    }
}

/// Error returned by [`Template::render`]: evaluation failed for this
/// context (a `must…` function failed, division by zero, a limit was hit…).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    message: String,
}

impl RenderError {
    pub(crate) fn new(message: impl Into<String>) -> RenderError {
        RenderError {
            message: message.into(),
        }
    }

    /// Prefix the message with the failing function, as Go does.
    pub(crate) fn in_func(self, name: &str, pos: usize) -> RenderError {
        if self.message.starts_with("error calling ") {
            return self;
        }
        RenderError {
            message: format!("error calling {name} at offset {pos}: {}", self.message),
        }
    }

    /// The error message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template render error: {}", self.message)
    }
}

/// A parsed claim value, ready to render many times.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    /// Pre-computed result for values without any `${ }` expression.
    static_json: Option<serde_json::Value>,
}

impl Template {
    /// Parse a claim value. Fails on any statically detectable problem:
    /// unclosed `${`, malformed literals, unsupported syntax, unknown
    /// functions and wrong argument counts.
    pub fn parse(src: &str) -> Result<Template, ParseError> {
        let segments = lexer::lex(src)?;
        let nodes = parser::parse(segments)?;
        let has_action = nodes.iter().any(|n| matches!(n, Node::Action(_)));
        let has_delim = src.contains("${");
        let static_json = if has_action || has_delim {
            None
        } else {
            Some(infer_json(src))
        };
        Ok(Template { nodes, static_json })
    }

    /// True when the value contains no `${ }` expression.
    pub fn is_static(&self) -> bool {
        self.static_json.is_some()
    }

    /// Render against the context and infer the JSON type of the result.
    pub fn render(&self, ctx: &Value) -> Result<serde_json::Value, RenderError> {
        self.render_with(ctx, &mut eval::Env::new(None))
    }

    /// Render to text without type inference.
    pub fn render_text(&self, ctx: &Value) -> Result<String, RenderError> {
        eval::render_nodes(&self.nodes, ctx, &mut eval::Env::new(None))
    }

    #[cfg(test)]
    pub(crate) fn render_text_with(
        &self,
        ctx: &Value,
        env: &mut eval::Env,
    ) -> Result<String, RenderError> {
        eval::render_nodes(&self.nodes, ctx, env)
    }

    /// Evaluate a single-action template to its raw value (tests).
    #[cfg(test)]
    pub(crate) fn eval_single(
        &self,
        ctx: &Value,
        env: &mut eval::Env,
    ) -> Result<Value, RenderError> {
        match self.nodes.as_slice() {
            [Node::Action(p)] => eval::eval_pipeline(p, ctx, env),
            _ => Err(RenderError::new("not a single action")),
        }
    }

    pub(crate) fn render_with(
        &self,
        ctx: &Value,
        env: &mut eval::Env,
    ) -> Result<serde_json::Value, RenderError> {
        if let Some(v) = &self.static_json {
            return Ok(v.clone());
        }
        if let [Node::Action(p)] = self.nodes.as_slice() {
            let v = eval::eval_pipeline(p, ctx, env)?;
            return match v {
                Value::List(_) | Value::Map(_) => Ok(v.to_json()),
                other => {
                    let mut out = String::new();
                    eval::print_value(&mut out, &other);
                    if out.len() > eval::MAX_STRING {
                        return Err(RenderError::new(format!(
                            "rendered claim exceeds the {}-byte limit",
                            eval::MAX_STRING
                        )));
                    }
                    Ok(infer_json(&out))
                }
            };
        }
        let text = eval::render_nodes(&self.nodes, ctx, env)?;
        Ok(infer_json(&text))
    }
}

/// Exact JSON integer grammar: `-?(0|[1-9][0-9]*)`.
fn is_int_text(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()) && (d == "0" || !d.starts_with('0'))
}

/// Exact JSON number grammar: `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`.
fn is_json_number_text(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Type inference used for rendered text and static values: an exact
/// integer fitting `i64` or a finite JSON-syntax float becomes a number,
/// `true`/`false` a boolean, text starting with `{` or `[` that parses as
/// JSON that JSON value; everything else stays a string (so `null`,
/// `1e400`, ` 42`, `007` and `99999999999999999999` are strings).
pub fn infer_json(text: &str) -> serde_json::Value {
    use serde_json::Value as J;
    if is_int_text(text) {
        return match text.parse::<i64>() {
            Ok(i) => J::from(i),
            Err(_) => J::String(text.to_owned()),
        };
    }
    if is_json_number_text(text)
        && let Ok(f) = text.parse::<f64>()
        && f.is_finite()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return J::Number(n);
    }
    match text {
        "true" => return J::Bool(true),
        "false" => return J::Bool(false),
        _ => {}
    }
    if (text.starts_with('{') || text.starts_with('['))
        && let Ok(v) = serde_json::from_str::<J>(text)
    {
        return v;
    }
    J::String(text.to_owned())
}
