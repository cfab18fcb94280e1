//! Where does a chunked body end? The proxy's incremental decoder, fed the same bytes in
//! different pieces, and a reference decoder that reads whole lines, must all say the same.
//!
//! A proxy and the next hop that disagree on where a body ends are how requests are
//! smuggled; here the "two parsers" are the decoder against itself (one piece, one byte at a
//! time, fuzzer-chosen cuts) and against [`reference`], written separately from RFC 9112 §7.1
//! with the decoder's documented limits (size line ≤ 4096 bytes, trailer section ≤ 16 KiB,
//! sizes that fit in 64 bits).

use bytes::BytesMut;
use gatehouse_proxy::h1::chunked::{Chunk, ChunkedDecoder, ChunkedError};

/// The longest chunk-size line the decoder accepts, CR excluded (`chunked.rs`).
const MAX_SIZE_LINE: usize = 4096;
/// The largest trailer section the decoder accepts, every byte after the last chunk's size
/// line up to and including the final LF (`chunked.rs`).
const MAX_TRAILERS: usize = 16 * 1024;

/// What decoding a whole input produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The body ended; `rest` is what follows it (the next pipelined message).
    Done { body: Vec<u8>, rest: Vec<u8> },
    /// The input ran out before the end.
    NeedMore { body: Vec<u8> },
    /// The body is malformed; `body` is what was handed out before.
    Failed { body: Vec<u8>, error: ChunkedError },
}

/// Decodes `pieces` in order with one decoder, appending each to the buffer as a connection
/// would, and checks the decoder's own contract on the way: data is never empty, `None`
/// means every byte was consumed, `Done` and errors repeat on the next call.
pub fn feed(pieces: &[&[u8]]) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Chunk::Data(data))) => {
                    assert!(!data.is_empty(), "empty data chunk");
                    body.extend_from_slice(&data);
                }
                Ok(Some(Chunk::Done)) => {
                    assert!(decoder.is_done());
                    let before = buf.len();
                    assert_eq!(decoder.decode(&mut buf), Ok(Some(Chunk::Done)));
                    assert_eq!(buf.len(), before, "Done again consumed bytes");
                    let mut rest = buf.to_vec();
                    for later in &pieces[i + 1..] {
                        rest.extend_from_slice(later);
                    }
                    return Outcome::Done { body, rest };
                }
                Ok(None) => {
                    assert!(buf.is_empty(), "None with {} bytes left unread", buf.len());
                    break;
                }
                Err(error) => {
                    assert!(!decoder.is_done());
                    assert_eq!(decoder.decode(&mut buf), Err(error), "error not sticky");
                    return Outcome::Failed { body, error };
                }
            }
        }
    }
    Outcome::NeedMore { body }
}

/// What the reference decoder concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// The body ends after `consumed` bytes.
    Done { body: Vec<u8>, consumed: usize },
    /// A complete line (or the data's CRLF) breaks the grammar, or a limit was passed.
    Failed { body: Vec<u8> },
    /// The input stops inside a line or a chunk's data. The incremental decoder may already
    /// have refused the partial line (it checks each byte as it comes); it must not have ended
    /// the body.
    Partial { body: Vec<u8> },
}

/// Decodes a whole chunked body from `input` line by line (RFC 9112 §7.1).
pub fn reference(input: &[u8]) -> Reference {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        // chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; last-chunk has size 0.
        let line = match read_line(input, pos) {
            Line::Complete(line) => line,
            Line::Partial(partial) if partial.len() > MAX_SIZE_LINE => {
                return Reference::Failed { body };
            }
            Line::Partial(_) => return Reference::Partial { body },
            Line::Broken => return Reference::Failed { body },
        };
        if line.len() > MAX_SIZE_LINE {
            return Reference::Failed { body };
        }
        let Some(size) = size_line(line) else {
            return Reference::Failed { body };
        };
        pos += line.len() + 2;
        if size == 0 {
            break;
        }
        let available = (input.len() - pos) as u64;
        if available < size {
            body.extend_from_slice(&input[pos..]);
            return Reference::Partial { body };
        }
        let end = pos + size as usize;
        body.extend_from_slice(&input[pos..end]);
        pos = end;
        match input.get(pos..pos + 2) {
            Some(b"\r\n") => pos += 2,
            Some(_) => return Reference::Failed { body },
            None if input[pos..].iter().all(|&b| b == b'\r') => return Reference::Partial { body },
            None => return Reference::Failed { body },
        }
    }
    // trailer-section = *( field-line CRLF ), then CRLF.
    let trailers_start = pos;
    loop {
        let seen = pos - trailers_start;
        let line = match read_line(input, pos) {
            Line::Complete(line) => line,
            Line::Partial(partial) if seen + partial.len() > MAX_TRAILERS => {
                return Reference::Failed { body };
            }
            Line::Partial(_) => return Reference::Partial { body },
            Line::Broken => return Reference::Failed { body },
        };
        if seen + line.len() + 2 > MAX_TRAILERS {
            return Reference::Failed { body };
        }
        pos += line.len() + 2;
        if line.is_empty() {
            return Reference::Done {
                body,
                consumed: pos,
            };
        }
        if !trailer_line(line) {
            return Reference::Failed { body };
        }
    }
}

enum Line<'a> {
    /// A line ended by CRLF (without it).
    Complete(&'a [u8]),
    /// No line end yet (a lone CR at the very end counts as not yet ended).
    Partial(&'a [u8]),
    /// A bare LF, or a CR followed by something else.
    Broken,
}

fn read_line(input: &[u8], pos: usize) -> Line<'_> {
    let rest = &input[pos..];
    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        None => Line::Partial(rest),
        Some(i) if rest[i] == b'\n' => Line::Broken,
        Some(i) => match rest.get(i + 1) {
            Some(b'\n') => Line::Complete(&rest[..i]),
            Some(_) => Line::Broken,
            None => Line::Partial(&rest[..i]),
        },
    }
}

/// `1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`, the size if it
/// fits in 64 bits.
fn size_line(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let mut size: u64 = 0;
    for &d in &line[..digits] {
        let v = u64::from((d as char).to_digit(16)?);
        size = size.checked_mul(16)?.checked_add(v)?;
    }
    let mut rest = &line[digits..];
    while !rest.is_empty() {
        rest = skip_bws(rest);
        rest = rest.strip_prefix(b";")?;
        rest = skip_bws(rest);
        let name = token_len(rest);
        if name == 0 {
            return None;
        }
        rest = &rest[name..];
        let after = skip_bws(rest);
        if let Some(value) = after.strip_prefix(b"=") {
            let value = skip_bws(value);
            let len = if value.first() == Some(&b'"') {
                quoted_len(value)?
            } else {
                token_len(value)
            };
            if len == 0 {
                return None;
            }
            rest = &value[len..];
        }
    }
    Some(size)
}

fn skip_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_tchar(b)).count()
}

/// The length of the quoted-string at the start of `s` (RFC 9110 §5.6.4).
fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *s.get(i + 1)? {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => i += 2,
                _ => return None,
            },
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
}

/// `field-name ":" field-value` with no whitespace before the colon and only field-vchar,
/// SP and HTAB in the value (RFC 9112 §5).
fn trailer_line(line: &[u8]) -> bool {
    let name = token_len(line);
    name > 0
        && line.get(name) == Some(&b':')
        && line[name + 1..]
            .iter()
            .all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80)
}

/// Decodes `input` as a chunked body in one piece, one byte at a time and in the given
/// pieces, and with [`reference`]; panics when any two disagree. Returns the one-piece outcome.
pub fn check(input: &[u8], cuts: &[usize]) -> Outcome {
    let whole = feed(&[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let bytewise = feed(&bytes);
    assert_eq!(whole, bytewise, "one piece vs one byte at a time");
    let split = feed(&crate::control::pieces(input, cuts));
    assert_eq!(whole, split, "one piece vs cut at {cuts:?}");

    match (&whole, reference(input)) {
        (Outcome::Done { body, rest }, Reference::Done { body: b, consumed }) => {
            assert_eq!(body, &b, "body differs from the reference's");
            assert_eq!(
                rest.len(),
                input.len() - consumed,
                "the body ends elsewhere than the reference says"
            );
        }
        (Outcome::Failed { body, .. }, Reference::Failed { body: b }) => {
            assert_eq!(
                body, &b,
                "body before the error differs from the reference's"
            );
        }
        (
            Outcome::NeedMore { body } | Outcome::Failed { body, .. },
            Reference::Partial { body: b },
        ) => {
            assert_eq!(body, &b, "body so far differs from the reference's");
        }
        (ours, theirs) => panic!("decoder says {ours:?}, reference says {theirs:?}"),
    }
    whole
}
