//! Encoding functions: `b64enc`, `b64dec`, `b32enc`, `b32dec` (standard
//! alphabets with padding). As in sprig, a decoding failure does not fail
//! the render: the result is Go's error message text.

use base64::Engine as _;

use super::{FuncDef, arg, def, s};
use crate::RenderError;
use crate::eval::Env;
use crate::value::Value;

pub(super) const FUNCS: &[FuncDef] = &[
    def("b64enc", 1, 1, b64enc),
    def("b64dec", 1, 1, b64dec),
    def("b32enc", 1, 1, b32enc),
    def("b32dec", 1, 1, b32dec),
];

fn b64enc(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(s(arg(&a, 0))),
    ))
}

fn b64dec(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    let text = s(arg(&a, 0));
    Ok(Value::String(
        match base64::engine::general_purpose::STANDARD.decode(text.as_bytes()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                let at = match e {
                    base64::DecodeError::InvalidByte(i, _)
                    | base64::DecodeError::InvalidLastSymbol(i, _) => i,
                    _ => text.len(),
                };
                format!("illegal base64 data at input byte {at}")
            }
        },
    ))
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 with padding.
pub(crate) fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = buf.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let chars = match chunk.len() {
            1 => 2,
            2 => 4,
            3 => 5,
            4 => 7,
            _ => 8,
        };
        for i in 0..8 {
            if i < chars {
                let idx = ((n >> (35 - 5 * i)) & 31) as usize;
                out.push(char::from(B32[idx]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 4648 base32 decoding (padding required, `\r`/`\n` ignored); the
/// error is the offending byte offset.
pub(crate) fn base32_decode(text: &str) -> Result<Vec<u8>, usize> {
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    if !clean.len().is_multiple_of(8) {
        return Err(clean.len() / 8 * 8);
    }
    let mut out = Vec::with_capacity(clean.len() / 8 * 5);
    for (ci, chunk) in clean.chunks(8).enumerate() {
        let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
        let data_len = 8 - pad;
        let bytes = match data_len {
            8 => 5,
            7 => 4,
            5 => 3,
            4 => 2,
            2 => 1,
            _ => return Err(ci * 8 + data_len),
        };
        if pad > 0 && ci + 1 != clean.len() / 8 {
            return Err(ci * 8 + data_len);
        }
        let mut n = 0u64;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i < data_len {
                B32.iter().position(|x| *x == c).ok_or(ci * 8 + i)? as u64
            } else {
                0
            };
            n = (n << 5) | v;
        }
        for i in 0..bytes {
            out.push(((n >> (32 - 8 * i)) & 0xff) as u8);
        }
    }
    Ok(out)
}

fn b32enc(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::String(base32_encode(s(arg(&a, 0)).as_bytes())))
}

fn b32dec(_: &mut Env, a: Vec<Value>) -> Result<Value, RenderError> {
    Ok(Value::String(match base32_decode(&s(arg(&a, 0))) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(at) => format!("illegal base32 data at input byte {at}"),
    }))
}
