//! Parser: turns lexed segments into the AST of Go template *actions*
//! (pipelines of commands with operands), resolving function names and
//! checking argument counts up front so that bad claims are rejected when
//! they are created, not when a token is issued.
//!
//! Supported: `.`, `.A.B`, `$`, `$.A`, literals, function calls, pipelines
//! `a | f x` (the piped value becomes the last argument), parenthesised
//! sub-pipelines with optional field chains `(dict "a" 1).a`.
//! Rejected: variables (`$x := …`), control structures and any keyword of
//! them (`if`, `range`, `with`, `define`, `template`, `block`, `else`,
//! `end`, `break`, `continue`).

use crate::ParseError;
use crate::funcs::{self, FuncDef};
use crate::lexer::{Segment, Tok, Token};
use crate::value::Value;

/// Maximum parenthesis nesting depth.
pub(crate) const MAX_DEPTH: usize = 64;

/// A top-level node of a claim value.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Literal text.
    Text(String),
    /// A `${ pipeline }` action.
    Action(Pipeline),
}

/// `cmd | cmd | …`.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    pub cmds: Vec<Command>,
}

/// One command of a pipeline.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// A function call; a piped value is appended to `args` at run time.
    Call {
        func: &'static FuncDef,
        args: Vec<Operand>,
        pos: usize,
    },
    /// A plain operand (only allowed as the first command).
    Operand(Operand),
}

/// An argument or operand.
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    /// A constant.
    Literal(Value),
    /// A field path from the root context (`.` is the empty path).
    Path(Vec<String>),
    /// An identifier used as an argument: a zero-argument call.
    Niladic { func: &'static FuncDef, pos: usize },
    /// A parenthesised pipeline with an optional field chain.
    Sub(Box<Pipeline>, Vec<String>),
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

fn err(pos: usize, msg: impl Into<String>) -> ParseError {
    ParseError::new(pos, msg)
}

/// Build the AST from lexed segments.
pub(crate) fn parse(segments: Vec<Segment>) -> Result<Vec<Node>, ParseError> {
    let mut nodes = Vec::with_capacity(segments.len());
    for seg in segments {
        match seg {
            Segment::Text(t) => nodes.push(Node::Text(t)),
            Segment::Action { tokens, pos } => {
                let mut p = Parser {
                    toks: &tokens,
                    i: 0,
                    action_pos: pos,
                };
                let pipe = p.pipeline(0)?;
                if let Some(t) = p.peek() {
                    return Err(err(
                        t.pos,
                        format!("unexpected {} in action", describe(&t.tok)),
                    ));
                }
                nodes.push(Node::Action(pipe));
            }
        }
    }
    Ok(nodes)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Dot => "\".\"".into(),
        Tok::Field(f) => format!("field .{f}"),
        Tok::Ident(i) => format!("identifier {i:?}"),
        Tok::Var(v) => format!("variable {v}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Char(_) => "character constant".into(),
        Tok::Number(n) => format!("number {n}"),
        Tok::Bool(b) => format!("{b}"),
        Tok::Nil => "nil".into(),
        Tok::Pipe => "\"|\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Comma => "\",\"".into(),
    }
}

struct Parser<'a> {
    toks: &'a [Token],
    i: usize,
    action_pos: usize,
}

/// A term before it is known whether it is a function name.
enum Term {
    Ident(String, usize),
    Op(Operand),
    Nil(usize),
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn end_pos(&self) -> usize {
        self.toks.last().map_or(self.action_pos, |t| t.pos)
    }

    fn pipeline(&mut self, depth: usize) -> Result<Pipeline, ParseError> {
        // Variable declarations are not part of the supported subset.
        if let (Some(Tok::Var(v)), Some(next)) = (
            self.peek().map(|t| &t.tok),
            self.toks.get(self.i + 1).map(|t| &t.tok),
        ) && matches!(next, Tok::Declare | Tok::Assign | Tok::Comma)
        {
            return Err(err(
                self.toks[self.i].pos,
                format!("variables are not supported (declaration of {v})"),
            ));
        }
        let mut cmds = Vec::new();
        loop {
            let cmd = self.command(depth, cmds.is_empty())?;
            cmds.push(cmd);
            match self.peek().map(|t| &t.tok) {
                Some(Tok::Pipe) => {
                    self.i += 1;
                }
                _ => break,
            }
        }
        Ok(Pipeline { cmds })
    }

    fn command(&mut self, depth: usize, first: bool) -> Result<Command, ParseError> {
        let start = self.peek().map_or(self.end_pos(), |t| t.pos);
        let mut terms = Vec::new();
        while let Some(t) = self.peek() {
            match t.tok {
                Tok::Pipe | Tok::RParen => break,
                _ => terms.push(self.operand(depth)?),
            }
        }
        let mut it = terms.into_iter();
        let Some(head) = it.next() else {
            return Err(err(start, "missing value for command"));
        };
        let rest: Vec<Term> = it.collect();
        match head {
            Term::Ident(name, pos) => {
                let func = resolve(&name, pos)?;
                let mut args = Vec::with_capacity(rest.len());
                for t in rest {
                    args.push(self.arg(t)?);
                }
                let n = args.len() + usize::from(!first);
                check_arity(func, n, pos)?;
                Ok(Command::Call { func, args, pos })
            }
            Term::Nil(pos) => Err(err(pos, "nil is not a command")),
            Term::Op(op) => {
                if !rest.is_empty() || !first {
                    return Err(err(start, "can't give argument to non-function"));
                }
                Ok(Command::Operand(op))
            }
        }
    }

    fn arg(&self, t: Term) -> Result<Operand, ParseError> {
        Ok(match t {
            Term::Op(op) => op,
            Term::Nil(_) => Operand::Literal(Value::Nil),
            Term::Ident(name, pos) => {
                let func = resolve(&name, pos)?;
                check_arity(func, 0, pos)?;
                Operand::Niladic { func, pos }
            }
        })
    }

    /// A term followed by an optional (adjacent) field chain.
    fn operand(&mut self, depth: usize) -> Result<Term, ParseError> {
        let term = self.term(depth)?;
        let mut chain = Vec::new();
        while let Some(Token {
            tok: Tok::Field(f),
            space_before: false,
            ..
        }) = self.peek()
        {
            chain.push(f.clone());
            self.i += 1;
        }
        if chain.is_empty() {
            return Ok(term);
        }
        match term {
            Term::Op(Operand::Path(mut p)) => {
                p.extend(chain);
                Ok(Term::Op(Operand::Path(p)))
            }
            Term::Op(Operand::Sub(pipe, mut p)) => {
                p.extend(chain);
                Ok(Term::Op(Operand::Sub(pipe, p)))
            }
            Term::Ident(_, pos) | Term::Nil(pos) => Err(err(
                pos,
                "field access on a function name or nil is not supported",
            )),
            Term::Op(_) => Err(err(self.action_pos, "unexpected . after term")),
        }
    }

    fn term(&mut self, depth: usize) -> Result<Term, ParseError> {
        let Some(t) = self.toks.get(self.i) else {
            return Err(err(self.end_pos(), "unexpected end of action"));
        };
        self.i += 1;
        let pos = t.pos;
        Ok(match &t.tok {
            Tok::Dot => Term::Op(Operand::Path(Vec::new())),
            Tok::Field(f) => Term::Op(Operand::Path(vec![f.clone()])),
            Tok::Var(v) if v == "$" => Term::Op(Operand::Path(Vec::new())),
            Tok::Var(v) => {
                return Err(err(pos, format!("variables are not supported ({v})")));
            }
            Tok::Str(s) => Term::Op(Operand::Literal(Value::String(s.clone()))),
            Tok::Char(c) => Term::Op(Operand::Literal(Value::Int(*c))),
            Tok::Number(n) => Term::Op(Operand::Literal(parse_number(n, pos)?)),
            Tok::Bool(b) => Term::Op(Operand::Literal(Value::Bool(*b))),
            Tok::Nil => Term::Nil(pos),
            Tok::Ident(name) => {
                if KEYWORDS.contains(&name.as_str()) {
                    return Err(err(
                        pos,
                        format!("control structures are not supported ({name:?})"),
                    ));
                }
                Term::Ident(name.clone(), pos)
            }
            Tok::LParen => {
                if depth + 1 > MAX_DEPTH {
                    return Err(err(pos, format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                let pipe = self.pipeline(depth + 1)?;
                match self.peek() {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => self.i += 1,
                    _ => return Err(err(pos, "unclosed left paren")),
                }
                Term::Op(Operand::Sub(Box::new(pipe), Vec::new()))
            }
            other => {
                return Err(err(
                    pos,
                    format!("unexpected {} in operand", describe(other)),
                ));
            }
        })
    }
}

fn resolve(name: &str, pos: usize) -> Result<&'static FuncDef, ParseError> {
    funcs::lookup(name).ok_or_else(|| err(pos, format!("function {name:?} not defined")))
}

fn check_arity(f: &FuncDef, n: usize, pos: usize) -> Result<(), ParseError> {
    if n < f.min || n > f.max {
        let want = if f.min == f.max {
            format!("{}", f.min)
        } else if f.max == usize::MAX {
            format!("at least {}", f.min)
        } else {
            format!("{} to {}", f.min, f.max)
        };
        return Err(err(
            pos,
            format!("wrong number of args for {}: want {want} got {n}", f.name),
        ));
    }
    Ok(())
}

/// Go template number constants: text with `.`, `e` or `E` (non-hex) is a
/// float, otherwise an integer (decimal, `0x` hex, `0o`/leading-`0` octal,
/// `0b` binary).
fn parse_number(text: &str, pos: usize) -> Result<Value, ParseError> {
    let bad = || err(pos, format!("bad number syntax: {text:?}"));
    let clean = text.replace('_', "");
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let lower = body.to_ascii_lowercase();
    let is_hex = lower.starts_with("0x");
    if !is_hex && (lower.contains('.') || lower.contains('e')) {
        let f: f64 = body.parse().map_err(|_| bad())?;
        if !f.is_finite() {
            return Err(bad());
        }
        return Ok(Value::Float(if neg { -f } else { f }));
    }
    let (digits, radix) = if let Some(h) = lower.strip_prefix("0x") {
        (h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        (o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (b, 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8)
    } else {
        (lower.as_str(), 10)
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let mag = i128::from_str_radix(digits, radix).map_err(|_| bad())?;
    let v = if neg { -mag } else { mag };
    i64::try_from(v)
        .map(Value::Int)
        .map_err(|_| err(pos, format!("number out of range: {text}")))
}
