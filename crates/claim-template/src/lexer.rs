//! Lexer: splits a claim value into literal text and `${ … }` actions and
//! tokenises the actions with Go `text/template` lexical rules (string,
//! raw-string, character and number literals, fields, identifiers, pipes,
//! parentheses, trim markers `${- ` / ` -}` and `/* comments */`).
//!
//! A `}` inside a string literal never closes an action.

use crate::ParseError;

/// Maximum accepted source length (bytes) of a claim value.
pub(crate) const MAX_SOURCE_LEN: usize = 64 * 1024;

const LEFT: &str = "${";
const RIGHT: &str = "}";

/// One token of an action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// `.` alone.
    Dot,
    /// `.Name` (name without the dot).
    Field(String),
    /// A bare identifier (function name or keyword).
    Ident(String),
    /// `$` or `$name` (including the `$`).
    Var(String),
    /// A decoded string literal (interpreted or raw).
    Str(String),
    /// A character constant, as its code point.
    Char(i64),
    /// Raw number text.
    Number(String),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// `|`.
    Pipe,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// `,`.
    Comma,
}

/// A token with its byte offset and whether whitespace preceded it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
    pub space_before: bool,
}

/// A lexed piece of the claim value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    /// Literal text.
    Text(String),
    /// An action's tokens; `pos` is the offset of its `${`.
    Action { tokens: Vec<Token>, pos: usize },
}

fn err(pos: usize, msg: impl Into<String>) -> ParseError {
    ParseError::new(pos, msg)
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Split `src` into text and action segments.
pub(crate) fn lex(src: &str) -> Result<Vec<Segment>, ParseError> {
    if src.len() > MAX_SOURCE_LEN {
        return Err(err(
            0,
            format!("claim value longer than {MAX_SOURCE_LEN} bytes"),
        ));
    }
    let mut segs: Vec<Segment> = Vec::new();
    let mut i = 0;
    let mut trim_next_text = false;
    while i < src.len() {
        let Some(rel) = src[i..].find(LEFT) else {
            push_text(&mut segs, &src[i..], trim_next_text);
            break;
        };
        let start = i + rel;
        let mut text = &src[i..start];
        let mut j = start + LEFT.len();
        // Left trim marker: "${- ".
        let b = src.as_bytes();
        if b.get(j) == Some(&b'-') && b.get(j + 1).is_some_and(|c| is_space(*c)) {
            text = text.trim_end_matches(|c: char| c.is_ascii_whitespace());
            j += 2;
        }
        push_text(&mut segs, text, trim_next_text);
        let (tokens, end, trim_right) = lex_action(src, j, start)?;
        if !tokens.is_empty() {
            segs.push(Segment::Action { tokens, pos: start });
        } else if !is_comment_only(src, j) {
            return Err(err(start, "missing value for command (empty action)"));
        }
        trim_next_text = trim_right;
        i = end;
    }
    Ok(segs)
}

fn is_comment_only(src: &str, j: usize) -> bool {
    src[j..]
        .trim_start_matches(|c: char| c.is_ascii_whitespace())
        .starts_with("/*")
}

fn push_text(segs: &mut Vec<Segment>, text: &str, trim_left: bool) {
    let text = if trim_left {
        text.trim_start_matches(|c: char| c.is_ascii_whitespace())
    } else {
        text
    };
    if text.is_empty() {
        return;
    }
    if let Some(Segment::Text(prev)) = segs.last_mut() {
        prev.push_str(text);
    } else {
        segs.push(Segment::Text(text.to_owned()));
    }
}

/// Lex one action starting right after `${` (and a left trim marker).
/// Returns the tokens, the offset just past the closing `}`, and whether a
/// right trim marker was present.
fn lex_action(
    src: &str,
    mut i: usize,
    start: usize,
) -> Result<(Vec<Token>, usize, bool), ParseError> {
    let b = src.as_bytes();
    let mut tokens = Vec::new();
    let unclosed = || err(start, "unclosed action: missing closing \"}\"");
    // Comments: ${/* … */} with optional surrounding space / trim markers.
    {
        let mut k = i;
        while k < b.len() && is_space(b[k]) {
            k += 1;
        }
        if src[k..].starts_with("/*") {
            let Some(close) = src[k + 2..].find("*/") else {
                return Err(err(start, "unclosed comment"));
            };
            let mut e = k + 2 + close + 2;
            let mut trim = false;
            if b.get(e).is_some_and(|c| is_space(*c)) && b.get(e + 1) == Some(&b'-') {
                trim = true;
                e += 2;
            }
            if !src[e..].starts_with(RIGHT) {
                return Err(err(start, "comment ends before closing delimiter"));
            }
            return Ok((tokens, e + RIGHT.len(), trim));
        }
    }
    let mut space_before = true;
    loop {
        if i >= b.len() {
            return Err(unclosed());
        }
        let c = b[i];
        // Right trim marker " -}".
        if is_space(c) && b.get(i + 1) == Some(&b'-') && src[i + 2..].starts_with(RIGHT) {
            return Ok((tokens, i + 2 + RIGHT.len(), true));
        }
        if src[i..].starts_with(RIGHT) {
            return Ok((tokens, i + RIGHT.len(), false));
        }
        if is_space(c) {
            i += 1;
            space_before = true;
            continue;
        }
        let pos = i;
        let tok = match c {
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b':' => {
                if b.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Tok::Declare
                } else {
                    return Err(err(pos, "expected :="));
                }
            }
            b'"' => {
                let (s, end) = lex_quoted(src, i)?;
                i = end;
                Tok::Str(s)
            }
            b'`' => {
                let Some(close) = src[i + 1..].find('`') else {
                    return Err(err(pos, "unterminated raw quoted string"));
                };
                let s = src[i + 1..i + 1 + close].replace('\r', "");
                i += close + 2;
                Tok::Str(s)
            }
            b'\'' => {
                let (ch, end) = lex_char(src, i)?;
                i = end;
                Tok::Char(ch)
            }
            b'$' => {
                let name_len = src[i + 1..]
                    .chars()
                    .take_while(|c| is_alnum(*c))
                    .map(char::len_utf8)
                    .sum::<usize>();
                let v = src[i..i + 1 + name_len].to_owned();
                i += 1 + name_len;
                Tok::Var(v)
            }
            b'.' => {
                let next = src[i + 1..].chars().next();
                match next {
                    Some(d) if d.is_ascii_digit() => {
                        let (n, end) = lex_number(src, i)?;
                        i = end;
                        Tok::Number(n)
                    }
                    Some(a) if is_alnum(a) => {
                        let name_len = src[i + 1..]
                            .chars()
                            .take_while(|c| is_alnum(*c))
                            .map(char::len_utf8)
                            .sum::<usize>();
                        let name = src[i + 1..i + 1 + name_len].to_owned();
                        i += 1 + name_len;
                        Tok::Field(name)
                    }
                    _ => {
                        i += 1;
                        Tok::Dot
                    }
                }
            }
            b'0'..=b'9' => {
                let (n, end) = lex_number(src, i)?;
                i = end;
                Tok::Number(n)
            }
            b'+' | b'-'
                if b.get(i + 1)
                    .is_some_and(|d| d.is_ascii_digit() || *d == b'.') =>
            {
                let (n, end) = lex_number(src, i)?;
                i = end;
                Tok::Number(n)
            }
            _ => {
                let Some(ch) = src[i..].chars().next() else {
                    return Err(unclosed());
                };
                if !is_alnum(ch) {
                    return Err(err(pos, format!("unexpected {ch:?} in action")));
                }
                let len = src[i..]
                    .chars()
                    .take_while(|c| is_alnum(*c))
                    .map(char::len_utf8)
                    .sum::<usize>();
                let word = &src[i..i + len];
                i += len;
                match word {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    w => Tok::Ident(w.to_owned()),
                }
            }
        };
        tokens.push(Token {
            tok,
            pos,
            space_before,
        });
        space_before = false;
    }
}

fn lex_number(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let b = src.as_bytes();
    let mut i = start;
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let hex = b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X'));
    let other_radix =
        b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'o' | b'O' | b'b' | b'B'));
    if hex || other_radix {
        i += 2;
        while i < b.len() && (b[i].is_ascii_hexdigit() || b[i] == b'_') {
            i += 1;
        }
    } else {
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    if let Some(c) = src[i..].chars().next()
        && (is_alnum(c) || c == '.')
    {
        return Err(err(
            start,
            format!("bad number syntax: {:?}", &src[start..i + c.len_utf8()]),
        ));
    }
    Ok((src[start..i].to_owned(), i))
}

/// Decode one Go escape sequence starting after the backslash at `i`.
fn lex_escape(src: &str, i: usize, quote: char) -> Result<(char, usize), ParseError> {
    let b = src.as_bytes();
    let bad = || err(i, "invalid escape sequence in literal");
    let c = *b.get(i).ok_or_else(bad)?;
    let simple = match c {
        b'a' => Some('\u{7}'),
        b'b' => Some('\u{8}'),
        b'f' => Some('\u{c}'),
        b'n' => Some('\n'),
        b'r' => Some('\r'),
        b't' => Some('\t'),
        b'v' => Some('\u{b}'),
        b'\\' => Some('\\'),
        b'"' if quote == '"' => Some('"'),
        b'\'' if quote == '\'' => Some('\''),
        _ => None,
    };
    if let Some(s) = simple {
        return Ok((s, i + 1));
    }
    let (digits, radix, start) = match c {
        b'x' => (2, 16, i + 1),
        b'u' => (4, 16, i + 1),
        b'U' => (8, 16, i + 1),
        b'0'..=b'7' => (3, 8, i),
        _ => return Err(bad()),
    };
    let hex = src.get(start..start + digits).ok_or_else(bad)?;
    let n = u32::from_str_radix(hex, radix).map_err(|_| bad())?;
    let ch = char::from_u32(n).ok_or_else(bad)?;
    if (c == b'x' || radix == 8) && n > 255 {
        return Err(bad());
    }
    Ok((ch, start + digits))
}

fn lex_quoted(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        let Some(c) = src[i..].chars().next() else {
            return Err(err(start, "unterminated quoted string"));
        };
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => return Err(err(start, "unterminated quoted string")),
            '\\' => {
                let (ch, end) = lex_escape(src, i + 1, '"')?;
                out.push(ch);
                i = end;
            }
            c => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
}

fn lex_char(src: &str, start: usize) -> Result<(i64, usize), ParseError> {
    let i = start + 1;
    let Some(c) = src[i..].chars().next() else {
        return Err(err(start, "unterminated character constant"));
    };
    let (ch, end) = match c {
        '\\' => lex_escape(src, i + 1, '\'')?,
        '\'' | '\n' => return Err(err(start, "malformed character constant")),
        c => (c, i + c.len_utf8()),
    };
    if !src[end..].starts_with('\'') {
        return Err(err(start, "unterminated character constant"));
    }
    Ok((i64::from(u32::from(ch)), end + 1))
}
