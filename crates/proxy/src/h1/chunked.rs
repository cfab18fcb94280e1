//! The chunked transfer coding (RFC 9112 §7.1): an incremental decoder and the pieces an
//! encoder needs.
//!
//! Where to start: [`ChunkedDecoder::decode`] is called with the connection's read buffer each
//! time more bytes arrive; it hands out body data zero-copy and says when the body has ended.
//! Writing a chunked body is [`encode_chunk_size`], the data, [`CHUNK_END`], and finally
//! [`LAST_CHUNK`].
//!
//! The decoder is strict on purpose: this parses untrusted input on a proxy, and any leniency
//! the next hop does not share (a bare LF taken as a line end, whitespace after the size, a
//! quoted extension value spanning a line) is how requests get smuggled. So it follows the
//! RFC grammar exactly — including chunk extensions and trailer field lines, which are checked
//! and then thrown away — and rejects everything else. It consumes every byte it has looked
//! at and keeps its place in a small state machine, so a partial size line or trailer never
//! stays in the caller's buffer and the length limits are counted on bytes seen, not buffered.

use bytes::{Buf, Bytes, BytesMut};

/// The longest chunk-size line accepted (the size and its extensions, without the CRLF).
const MAX_SIZE_LINE: usize = 4096;

/// The largest trailer section accepted (every field line and the final empty line, CRLFs
/// included).
const MAX_TRAILERS: usize = 16 * 1024;

/// What ends each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Incremental decoder for a chunked body.
///
/// Feed it the connection's read buffer with [`decode`](Self::decode) until it returns
/// [`Chunk::Done`]; whatever follows the body stays in the buffer.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being read, valid while on a size line.
    size: u64,
    /// Bytes of the current size line seen so far, without its CR.
    line_len: usize,
    /// Bytes of the trailer section seen so far.
    trailer_len: usize,
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Some body bytes (never empty).
    Data(Bytes),
    /// The last chunk and the trailer section (discarded) and its final CRLF have been consumed.
    Done,
}

/// Why a chunked body is malformed.
///
/// Every variant means the message framing cannot be trusted: the connection must not be
/// reused after one.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// The chunk size is empty or has a character that is not a hex digit.
    #[error("invalid chunk size")]
    InvalidSize,
    /// The chunk size does not fit in 64 bits.
    #[error("chunk size overflows 64 bits")]
    SizeOverflow,
    /// A chunk extension does not follow `*( BWS ";" BWS name [ BWS "=" BWS value ] )`.
    #[error("invalid chunk extension")]
    InvalidExtension,
    /// The chunk-size line (size and extensions) is longer than 4096 bytes.
    #[error("chunk size line too long")]
    LineTooLong,
    /// A line ends in a bare LF, or a CR is followed by something other than LF.
    #[error("line does not end with CRLF")]
    InvalidLineEnding,
    /// A chunk's data is not followed by exactly CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    /// A trailer line is not a well-formed field line (`name ":" value`, no folding).
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// The trailer section is larger than 16 KiB.
    #[error("trailer section too large")]
    TrailersTooLarge,
}

/// Where the decoder is. The states before `SizeLf` are all on the chunk-size line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line: at least one hex digit must come.
    #[default]
    Size,
    /// Reading hex digits.
    SizeDigits,
    /// Whitespace after the size or a value: only more whitespace or `;` may follow.
    ExtBeforeSemi,
    /// After `;`: whitespace, then an extension name.
    ExtBeforeName,
    /// In an extension name.
    ExtName,
    /// Whitespace after a name: `=` or `;` must follow.
    ExtAfterName,
    /// After `=`: whitespace, then a token or a quoted string.
    ExtBeforeValue,
    /// In a token value.
    ExtToken,
    /// In a quoted-string value.
    ExtQuoted,
    /// After a backslash in a quoted string.
    ExtQuotedPair,
    /// After the closing quote of a value.
    ExtAfterQuoted,
    /// After the CR ending the size line.
    SizeLf,
    /// In a chunk's data, with this many bytes (more than zero) still to come.
    Data { remaining: u64 },
    /// After a chunk's data: CR must come.
    DataCr,
    /// After the CR following a chunk's data: LF must come.
    DataLf,
    /// At the start of a trailer line or the final empty line.
    TrailerLineStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// After the CR ending a trailer field line.
    TrailerLf,
    /// After the CR of the final empty line.
    EndLf,
    /// The body has ended.
    Done,
    /// The body was malformed; every later call fails the same way.
    Failed(ChunkedError),
}

impl State {
    /// States that read framing bytes one at a time (the rest are data, done or failed).
    fn is_framing(self) -> bool {
        !matches!(self, Self::Data { .. } | Self::Done | Self::Failed(_))
    }

    /// States on the chunk-size line before its CR, where the line limit counts.
    fn is_on_size_line(self) -> bool {
        matches!(
            self,
            Self::Size
                | Self::SizeDigits
                | Self::ExtBeforeSemi
                | Self::ExtBeforeName
                | Self::ExtName
                | Self::ExtAfterName
                | Self::ExtBeforeValue
                | Self::ExtToken
                | Self::ExtQuoted
                | Self::ExtQuotedPair
                | Self::ExtAfterQuoted
        )
    }

    /// States in the trailer section, where the trailer limit counts.
    fn is_in_trailers(self) -> bool {
        matches!(
            self,
            Self::TrailerLineStart
                | Self::TrailerName
                | Self::TrailerValue
                | Self::TrailerLf
                | Self::EndLf
        )
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes from the front of `buf`, removing the bytes it used.
    ///
    /// - `Ok(Some(Chunk::Data(b)))`: a non-empty piece of the current chunk's data, as much as
    ///   `buf` holds of it, split off `buf` without copying.
    /// - `Ok(Some(Chunk::Done))`: the body ended; bytes after the final CRLF stay in `buf` (the
    ///   next pipelined message). Later calls return `Done` again without consuming anything.
    /// - `Ok(None)`: more input is needed. Everything in `buf` has been consumed (framing bytes
    ///   are remembered in the decoder), so the caller appends more bytes and calls again.
    ///
    /// After an error the body cannot be framed; later calls return the same error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, ChunkedError> {
        if self.state.is_framing() {
            match self.read_framing(buf) {
                Ok(used) => buf.advance(used),
                Err(error) => {
                    self.state = State::Failed(error);
                    return Err(error);
                }
            }
        }
        match self.state {
            State::Done => Ok(Some(Chunk::Done)),
            State::Failed(error) => Err(error),
            State::Data { remaining } => {
                if buf.is_empty() {
                    return Ok(None);
                }
                // A chunk larger than the address space cannot be in `buf` whole anyway.
                let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                let data = buf.split_to(n).freeze();
                // `n <= remaining`, so this cannot underflow; usize always fits in u64.
                let left = remaining - n as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                Ok(Some(Chunk::Data(data)))
            }
            _ => Ok(None),
        }
    }

    /// True once the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Steps through framing bytes at the front of `bytes` until data starts, the body ends or
    /// the bytes run out; returns how many were used.
    fn read_framing(&mut self, bytes: &[u8]) -> Result<usize, ChunkedError> {
        for (i, &byte) in bytes.iter().enumerate() {
            self.step(byte)?;
            if !self.state.is_framing() {
                return Ok(i + 1);
            }
        }
        Ok(bytes.len())
    }

    /// Takes one framing byte.
    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        if self.state.is_on_size_line() {
            if byte == b'\n' {
                return Err(ChunkedError::InvalidLineEnding);
            }
            if byte != b'\r' {
                self.line_len += 1;
                if self.line_len > MAX_SIZE_LINE {
                    return Err(ChunkedError::LineTooLong);
                }
            }
        } else if self.state.is_in_trailers() {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILERS {
                return Err(ChunkedError::TrailersTooLarge);
            }
        }

        self.state = match self.state {
            State::Size => {
                self.size = u64::from(hex_value(byte).ok_or(ChunkedError::InvalidSize)?);
                State::SizeDigits
            }
            State::SizeDigits => match byte {
                b'\r' => State::SizeLf,
                b';' => State::ExtBeforeName,
                b' ' | b'\t' => State::ExtBeforeSemi,
                _ => {
                    let digit = hex_value(byte).ok_or(ChunkedError::InvalidSize)?;
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|size| size.checked_add(u64::from(digit)))
                        .ok_or(ChunkedError::SizeOverflow)?;
                    State::SizeDigits
                }
            },
            State::ExtBeforeSemi => match byte {
                b' ' | b'\t' => State::ExtBeforeSemi,
                b';' => State::ExtBeforeName,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            State::ExtBeforeName => match byte {
                b' ' | b'\t' => State::ExtBeforeName,
                _ if is_tchar(byte) => State::ExtName,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            State::ExtName => match byte {
                b'\r' => State::SizeLf,
                b';' => State::ExtBeforeName,
                b'=' => State::ExtBeforeValue,
                b' ' | b'\t' => State::ExtAfterName,
                _ if is_tchar(byte) => State::ExtName,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            State::ExtAfterName => match byte {
                b' ' | b'\t' => State::ExtAfterName,
                b';' => State::ExtBeforeName,
                b'=' => State::ExtBeforeValue,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            State::ExtBeforeValue => match byte {
                b' ' | b'\t' => State::ExtBeforeValue,
                b'"' => State::ExtQuoted,
                _ if is_tchar(byte) => State::ExtToken,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            State::ExtToken => match byte {
                b'\r' => State::SizeLf,
                b';' => State::ExtBeforeName,
                b' ' | b'\t' => State::ExtBeforeSemi,
                _ if is_tchar(byte) => State::ExtToken,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            State::ExtQuoted => match byte {
                b'"' => State::ExtAfterQuoted,
                b'\\' => State::ExtQuotedPair,
                // qdtext: HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF => State::ExtQuoted,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            State::ExtQuotedPair => match byte {
                b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF => State::ExtQuoted,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            State::ExtAfterQuoted => match byte {
                b'\r' => State::SizeLf,
                b';' => State::ExtBeforeName,
                b' ' | b'\t' => State::ExtBeforeSemi,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            State::SizeLf => match byte {
                b'\n' if self.size == 0 => {
                    self.trailer_len = 0;
                    State::TrailerLineStart
                }
                b'\n' => State::Data {
                    remaining: self.size,
                },
                _ => return Err(ChunkedError::InvalidLineEnding),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(ChunkedError::MissingCrlf),
            },
            State::DataLf => match byte {
                b'\n' => {
                    self.size = 0;
                    self.line_len = 0;
                    State::Size
                }
                _ => return Err(ChunkedError::MissingCrlf),
            },
            State::TrailerLineStart => match byte {
                b'\r' => State::EndLf,
                b'\n' => return Err(ChunkedError::InvalidLineEnding),
                _ if is_tchar(byte) => State::TrailerName,
                // Anything else, including the SP/HTAB of an obsolete line folding.
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            State::TrailerName => match byte {
                b':' => State::TrailerValue,
                b'\n' => return Err(ChunkedError::InvalidLineEnding),
                // No whitespace before the colon (RFC 9112 §5.1).
                _ if is_tchar(byte) => State::TrailerName,
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            State::TrailerValue => match byte {
                b'\r' => State::TrailerLf,
                b'\n' => return Err(ChunkedError::InvalidLineEnding),
                // field-vchar / SP / HTAB; no other control characters (NUL among them).
                b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF => State::TrailerValue,
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            State::TrailerLf => match byte {
                b'\n' => State::TrailerLineStart,
                _ => return Err(ChunkedError::InvalidLineEnding),
            },
            State::EndLf => match byte {
                b'\n' => State::Done,
                _ => return Err(ChunkedError::InvalidLineEnding),
            },
            // Not framing states: `read_framing` stops before reaching them.
            state @ (State::Data { .. } | State::Done | State::Failed(_)) => state,
        };
        Ok(())
    }
}

/// The value of a hex digit (either case).
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Appends the chunk-size line for a chunk of `len` bytes (lowercase hex, then CRLF) to `out`.
///
/// `len` is never 0 for data chunks (callers do not send empty chunks); a 0 would write
/// `0\r\n`, the start of the last chunk — end a body with [`LAST_CHUNK`] instead.
pub fn encode_chunk_size(len: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // At least one digit, so that 0 is written as "0".
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
    out.reserve(digits as usize + CHUNK_END.len());
    for i in (0..digits).rev() {
        // `4 * i < usize::BITS`, and the nibble is below 16.
        out.push(HEX[(len >> (4 * i)) & 0xf]);
    }
    out.extend_from_slice(CHUNK_END);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// What feeding a whole input to one decoder produced.
    #[derive(Debug, PartialEq, Eq)]
    struct Decoded {
        /// All data pieces, concatenated.
        body: Vec<u8>,
        /// How many times `Done` was returned.
        dones: usize,
        /// What was left in the buffer at the end.
        rest: Vec<u8>,
    }

    /// Feeds `pieces` in order, decoding after each until more input is needed.
    fn feed(pieces: &[&[u8]]) -> Result<Decoded, ChunkedError> {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut dones = 0;
        for piece in pieces {
            buf.extend_from_slice(piece);
            if decoder.is_done() {
                continue;
            }
            while let Some(chunk) = decoder.decode(&mut buf)? {
                match chunk {
                    Chunk::Data(data) => {
                        assert!(!data.is_empty(), "empty data piece");
                        body.extend_from_slice(&data);
                    }
                    Chunk::Done => {
                        dones += 1;
                        break;
                    }
                }
            }
            // Ok(None) promises that the buffer holds nothing left to look at.
            if !decoder.is_done() {
                assert!(buf.is_empty(), "bytes left behind: {buf:?}");
            }
        }
        Ok(Decoded {
            body,
            dones,
            rest: buf.to_vec(),
        })
    }

    fn whole(input: &[u8]) -> Result<Decoded, ChunkedError> {
        feed(&[input])
    }

    fn byte_by_byte(input: &[u8]) -> Result<Decoded, ChunkedError> {
        let pieces: Vec<&[u8]> = input.chunks(1).collect();
        feed(&pieces)
    }

    fn error_of(input: &[u8]) -> ChunkedError {
        whole(input).expect_err("input should be rejected")
    }

    const BODY: &[u8] =
        b"5\r\nhello\r\n1;ext=1\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nX-T: v\r\n\r\n";
    const PAYLOAD: &[u8] = b"hello 0123456789abcdef";

    #[test]
    fn decodes_a_whole_body() {
        let decoded = whole(BODY).unwrap();
        assert_eq!(decoded.body, PAYLOAD);
        assert_eq!(decoded.dones, 1);
        assert!(decoded.rest.is_empty());
    }

    #[test]
    fn decodes_one_byte_at_a_time() {
        assert_eq!(byte_by_byte(BODY).unwrap(), whole(BODY).unwrap());
    }

    #[test]
    fn decodes_split_at_every_position() {
        for i in 0..=BODY.len() {
            let (a, b) = BODY.split_at(i);
            let decoded = feed(&[a, b]).unwrap();
            assert_eq!(decoded.body, PAYLOAD, "split at {i}");
            assert_eq!(decoded.dones, 1, "split at {i}");
            assert!(decoded.rest.is_empty(), "split at {i}");
        }
    }

    #[test]
    fn decodes_split_at_every_pair_of_positions() {
        for i in 0..=BODY.len() {
            for j in i..=BODY.len() {
                let decoded = feed(&[&BODY[..i], &BODY[i..j], &BODY[j..]]).unwrap();
                assert_eq!(decoded.body, PAYLOAD, "split at {i}, {j}");
                assert_eq!(decoded.dones, 1, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn data_is_split_off_the_buffer_without_copying() {
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n0\r\n\r\n"[..]);
        let start = buf.as_ptr();
        let mut decoder = ChunkedDecoder::new();
        let Some(Chunk::Data(data)) = decoder.decode(&mut buf).unwrap() else {
            panic!("expected data");
        };
        assert_eq!(&data[..], b"hello");
        assert_eq!(data.as_ptr(), start.wrapping_add(3));
    }

    #[test]
    fn data_arrives_in_pieces_as_large_as_the_buffer_holds() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"a\r\n0123"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Chunk::Data(Bytes::from_static(b"0123")))
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"456789\r\n0\r\n\r\n");
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Chunk::Data(Bytes::from_static(b"456789")))
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Chunk::Done));
        assert!(decoder.is_done());
    }

    #[test]
    fn empty_body_is_just_the_last_chunk() {
        let decoded = whole(LAST_CHUNK).unwrap();
        assert!(decoded.body.is_empty());
        assert_eq!(decoded.dones, 1);
    }

    #[test]
    fn sizes_may_have_leading_zeros_and_either_case() {
        let input = b"000A\r\n0123456789\r\n0000000000000000000000001\r\n!\r\n000\r\n\r\n";
        assert_eq!(whole(input).unwrap().body, b"0123456789!");
    }

    #[test]
    fn largest_size_is_accepted() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nabc"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Chunk::Data(Bytes::from_static(b"abc")))
        );
        assert!(!decoder.is_done());
    }

    #[test]
    fn extensions_are_ignored() {
        let input = b"5;a=b;c;d=\"x;y\\\"z\\\\\" \t;e\r\nhello\r\n\
                      4 ; f = g ;h\t=\t\"\"\r\n abc\r\n\
                      1;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~\r\nd\r\n\
                      0;last=1\r\n\r\n";
        assert_eq!(whole(input).unwrap().body, b"hello abcd");
        assert_eq!(byte_by_byte(input).unwrap().body, b"hello abcd");
    }

    #[test]
    fn trailers_are_discarded() {
        let input = b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum:\t1 2\t\r\nEmpty:\r\n\r\n";
        let decoded = whole(input).unwrap();
        assert_eq!(decoded.body, b"abc");
        assert_eq!(decoded.dones, 1);
        assert!(decoded.rest.is_empty());
    }

    #[test]
    fn bytes_after_the_body_stay_in_the_buffer() {
        let next = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut input = b"3\r\nabc\r\n0\r\nX: y\r\n\r\n".to_vec();
        input.extend_from_slice(next);
        assert_eq!(whole(&input).unwrap().rest, next);
        assert_eq!(byte_by_byte(&input).unwrap().rest, next);
    }

    #[test]
    fn done_is_returned_again_without_consuming() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"0\r\n\r\nnext"[..]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Chunk::Done));
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Chunk::Done));
        assert_eq!(&buf[..], b"next");
        assert!(decoder.is_done());
    }

    #[test]
    fn needs_more_input_before_the_end() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"0\r\nX: y\r\n");
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        assert!(!decoder.is_done());
    }

    #[test]
    fn rejects_bad_hex() {
        assert_eq!(error_of(b"5g\r\nhello\r\n"), ChunkedError::InvalidSize);
        assert_eq!(error_of(b"x\r\n"), ChunkedError::InvalidSize);
        assert_eq!(error_of(b"0x5\r\nhello\r\n"), ChunkedError::InvalidSize);
        assert_eq!(error_of(b"+5\r\nhello\r\n"), ChunkedError::InvalidSize);
        assert_eq!(error_of(b" 5\r\nhello\r\n"), ChunkedError::InvalidSize);
    }

    #[test]
    fn rejects_an_empty_size() {
        assert_eq!(error_of(b"\r\n"), ChunkedError::InvalidSize);
        assert_eq!(error_of(b";a=b\r\n"), ChunkedError::InvalidSize);
        assert_eq!(error_of(b"5\r\nhello\r\n\r\n"), ChunkedError::InvalidSize);
    }

    #[test]
    fn rejects_an_overflowing_size() {
        assert_eq!(
            error_of(b"10000000000000000\r\n"),
            ChunkedError::SizeOverflow
        );
        assert_eq!(
            error_of(b"0fffffffffffffffff\r\n"),
            ChunkedError::SizeOverflow
        );
    }

    #[test]
    fn rejects_a_bare_lf() {
        assert_eq!(error_of(b"5\nhello\r\n"), ChunkedError::InvalidLineEnding);
        assert_eq!(
            error_of(b"5;a=b\nhello\r\n"),
            ChunkedError::InvalidLineEnding
        );
        assert_eq!(error_of(b"\n"), ChunkedError::InvalidLineEnding);
        assert_eq!(
            error_of(b"5\r\nhello\r\n0\n\r\n"),
            ChunkedError::InvalidLineEnding
        );
        assert_eq!(
            error_of(b"0\r\nX: y\n\r\n"),
            ChunkedError::InvalidLineEnding
        );
        assert_eq!(error_of(b"0\r\n\n"), ChunkedError::InvalidLineEnding);
    }

    #[test]
    fn rejects_a_cr_not_followed_by_lf() {
        assert_eq!(error_of(b"5\rhello\r\n"), ChunkedError::InvalidLineEnding);
        assert_eq!(
            error_of(b"5\r\r\nhello\r\n"),
            ChunkedError::InvalidLineEnding
        );
        assert_eq!(
            error_of(b"0\r\nX: y\rZ\r\n\r\n"),
            ChunkedError::InvalidLineEnding
        );
        assert_eq!(error_of(b"0\r\n\rX"), ChunkedError::InvalidLineEnding);
    }

    #[test]
    fn rejects_data_not_followed_by_crlf() {
        assert_eq!(
            error_of(b"5\r\nhelloX\r\n0\r\n\r\n"),
            ChunkedError::MissingCrlf
        );
        assert_eq!(
            error_of(b"5\r\nhello\n0\r\n\r\n"),
            ChunkedError::MissingCrlf
        );
        assert_eq!(
            error_of(b"5\r\nhello\rX0\r\n\r\n"),
            ChunkedError::MissingCrlf
        );
        // A size that is one too small leaves a data byte where the CRLF should be.
        assert_eq!(
            error_of(b"4\r\nhello\r\n0\r\n\r\n"),
            ChunkedError::MissingCrlf
        );
    }

    #[test]
    fn rejects_malformed_extensions() {
        for input in [
            &b"5 \r\nhello\r\n"[..],
            b"5\t\r\nhello\r\n",
            b"5;\r\nhello\r\n",
            b"5;=x\r\nhello\r\n",
            b"5;a=\r\nhello\r\n",
            b"5;a b\r\nhello\r\n",
            b"5;a=b c\r\nhello\r\n",
            b"5;a=\"x\r\nhello\r\n",
            b"5;a=\"x\"y\r\nhello\r\n",
            b"5;a=\"\\\r\nhello\r\n",
            b"5;a=\"\0\"\r\nhello\r\n",
            b"5;a,b\r\nhello\r\n",
            b"5;a=b \r\nhello\r\n",
        ] {
            assert_eq!(
                error_of(input),
                ChunkedError::InvalidExtension,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn accepts_a_size_line_of_exactly_the_limit() {
        let mut input = b"1;a=".to_vec();
        input.resize(MAX_SIZE_LINE, b'b');
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(whole(&input).unwrap().body, b"x");
    }

    #[test]
    fn rejects_an_over_long_size_line() {
        let mut input = b"1;a=".to_vec();
        input.resize(MAX_SIZE_LINE + 1, b'b');
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(whole(&input).unwrap_err(), ChunkedError::LineTooLong);
        // Leading zeros count too: they are not an overflow, but they are a long line.
        let zeros = vec![b'0'; MAX_SIZE_LINE + 1];
        assert_eq!(whole(&zeros).unwrap_err(), ChunkedError::LineTooLong);
    }

    #[test]
    fn rejects_a_size_line_that_never_ends_without_buffering_it() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"1;name=");
        let mut fed = buf.len();
        let error = loop {
            match decoder.decode(&mut buf) {
                Ok(None) => {
                    assert!(buf.is_empty());
                    assert!(fed <= MAX_SIZE_LINE, "still accepting after {fed} bytes");
                    buf.extend_from_slice(&[b'v'; 100]);
                    fed += 100;
                }
                Ok(Some(chunk)) => panic!("unexpected {chunk:?}"),
                Err(error) => break error,
            }
        };
        assert_eq!(error, ChunkedError::LineTooLong);
    }

    #[test]
    fn rejects_malformed_trailers() {
        for input in [
            &b"0\r\nno colon\r\n\r\n"[..],
            b"0\r\nName : v\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
            b"0\r\nA: b\r\n folded\r\n\r\n",
            b"0\r\n\tX: y\r\n\r\n",
            b"0\r\nX: a\0b\r\n\r\n",
            b"0\r\nX: a\x7fb\r\n\r\n",
        ] {
            assert_eq!(
                error_of(input),
                ChunkedError::InvalidTrailer,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// A trailer section of exactly `len` bytes: field lines, then the final CRLF.
    fn trailers_of(len: usize) -> Vec<u8> {
        let mut trailers = Vec::new();
        while len - trailers.len() > 1000 {
            trailers.extend_from_slice(b"X-Pad: ");
            trailers.resize(trailers.len() + 500, b'p');
            trailers.extend_from_slice(b"\r\n");
        }
        let last = len - trailers.len() - b"X:\r\n\r\n".len();
        trailers.extend_from_slice(b"X:");
        trailers.resize(trailers.len() + last, b'q');
        trailers.extend_from_slice(b"\r\n\r\n");
        assert_eq!(trailers.len(), len);
        trailers
    }

    #[test]
    fn accepts_trailers_of_exactly_the_limit() {
        let mut input = b"0\r\n".to_vec();
        input.extend_from_slice(&trailers_of(MAX_TRAILERS));
        assert_eq!(whole(&input).unwrap().dones, 1);
    }

    #[test]
    fn rejects_trailers_over_the_limit() {
        let mut input = b"0\r\n".to_vec();
        input.extend_from_slice(&trailers_of(MAX_TRAILERS + 1));
        assert_eq!(whole(&input).unwrap_err(), ChunkedError::TrailersTooLarge);
    }

    #[test]
    fn rejects_a_trailer_that_never_ends_without_buffering_it() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"0\r\nX-Long: "[..]);
        let mut fed = 0;
        let error = loop {
            match decoder.decode(&mut buf) {
                Ok(None) => {
                    assert!(buf.is_empty());
                    assert!(fed <= MAX_TRAILERS, "still accepting after {fed} bytes");
                    buf.extend_from_slice(&[b'v'; 1000]);
                    fed += 1000;
                }
                Ok(Some(chunk)) => panic!("unexpected {chunk:?}"),
                Err(error) => break error,
            }
        };
        assert_eq!(error, ChunkedError::TrailersTooLarge);
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"z\r\n"[..]);
        assert_eq!(decoder.decode(&mut buf), Err(ChunkedError::InvalidSize));
        buf.clear();
        buf.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(decoder.decode(&mut buf), Err(ChunkedError::InvalidSize));
        assert!(!decoder.is_done());
    }

    #[test]
    fn encodes_chunk_sizes_in_lowercase_hex() {
        for (len, expected) in [
            (1, &b"1\r\n"[..]),
            (10, b"a\r\n"),
            (15, b"f\r\n"),
            (16, b"10\r\n"),
            (255, b"ff\r\n"),
            (4096, b"1000\r\n"),
            (0xdead_beef, b"deadbeef\r\n"),
        ] {
            let mut out = b"prefix".to_vec();
            encode_chunk_size(len, &mut out);
            assert_eq!(&out[6..], expected, "{len}");
            assert_eq!(&out[..6], b"prefix");
        }
        let mut out = Vec::new();
        encode_chunk_size(usize::MAX, &mut out);
        let expected = format!("{:x}\r\n", usize::MAX);
        assert_eq!(out, expected.as_bytes());
    }

    #[test]
    fn encoded_chunks_decode_back() {
        let lens = [1, 2, 15, 16, 17, 255, 256, 4095, 4096, 70_000];
        let mut payload = Vec::new();
        let mut wire = Vec::new();
        for (n, len) in lens.into_iter().enumerate() {
            let chunk: Vec<u8> = (0..len).map(|i| ((i + n) % 251) as u8).collect();
            encode_chunk_size(chunk.len(), &mut wire);
            wire.extend_from_slice(&chunk);
            wire.extend_from_slice(CHUNK_END);
            payload.extend_from_slice(&chunk);
        }
        wire.extend_from_slice(LAST_CHUNK);
        let decoded = whole(&wire).unwrap();
        assert_eq!(decoded.body, payload);
        assert_eq!(decoded.dones, 1);
        assert!(decoded.rest.is_empty());
        let pieces: Vec<&[u8]> = wire.chunks(7).collect();
        assert_eq!(feed(&pieces).unwrap(), decoded);
    }

    /// Random inputs built from framing-heavy bytes: no panic, and the outcome does not depend
    /// on how the input is split.
    #[test]
    fn random_inputs_decode_the_same_however_split() {
        const ALPHABET: &[u8] = b"0123456789abcdefAFgxz \t;=\"\\:\r\n\r\n\r\n\0\x7f\xff";
        // xorshift64: deterministic, no dependency.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let len = (next() % 40) as usize;
            let mut input: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            // Half the time, start from a plausible prefix so that later states are reached.
            if next() % 2 == 0 {
                let mut prefixed = b"3;a=\"b\"\r\nabc\r\n0\r\n".to_vec();
                prefixed.append(&mut input);
                input = prefixed;
            }
            let split = (next() as usize) % (input.len() + 1);
            let expected = whole(&input);
            assert_eq!(byte_by_byte(&input), expected, "{input:?}");
            assert_eq!(
                feed(&[&input[..split], &input[split..]]),
                expected,
                "{input:?} split at {split}"
            );
        }
    }
}
