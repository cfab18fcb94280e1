//! Control bytes: the first few bytes of an input steer the target, the rest is the message.
//!
//! Keeping the controls in front (instead of deriving them from a hash of the input) lets
//! libFuzzer learn them like any other byte, and keeps a saved crash readable: the message
//! starts at a fixed offset.

/// Splits `data` into `N` control bytes (zero-padded when the input is shorter) and the rest.
pub fn take<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut control = [0u8; N];
    let n = data.len().min(N);
    control[..n].copy_from_slice(&data[..n]);
    (control, &data[n..])
}

/// Cut points in `0..=len` chosen by `control` (two bytes each), sorted and without
/// duplicates; `len` itself is always the last, so the pieces cover the whole input.
pub fn cuts(control: &[u8], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = control
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (len + 1))
        .collect();
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// The pieces of `input` between consecutive `cuts` (the first starts at 0).
pub fn pieces<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut start = 0;
    cuts.iter()
        .map(|&end| {
            let piece = &input[start..end];
            start = end;
            piece
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_input() {
        let input = b"abcdef";
        let cuts = cuts(&[2, 0, 4, 0, 2, 0], input.len());
        assert_eq!(cuts, [2, 4, 6]);
        assert_eq!(pieces(input, &cuts), [&b"ab"[..], b"cd", b"ef"]);
        assert_eq!(take::<3>(b"x"), ([b'x', 0, 0], &b""[..]));
    }
}
