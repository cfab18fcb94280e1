//! A reference reader of a message head's field lines, to check what the proxy's codec
//! (`httparse`, then `http`'s types) made of them.

use http::HeaderMap;

/// One field line as it was on the wire: the name as spelled, the value without the
/// whitespace around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name, in the sender's case.
    pub name: &'a [u8],
    /// The value, without leading or trailing SP/HTAB.
    pub value: &'a [u8],
}

/// The field lines of a complete head that the codec accepted: lines end in CRLF or a bare
/// LF (RFC 9112 §2.2 lets a recipient accept the latter, and `httparse` does), empty lines
/// before the start line are skipped (ibid.), the start line is left out, the name runs to
/// the first colon and the value is trimmed of SP and HTAB (RFC 9112 §5).
///
/// Only meaningful for a head the codec accepted: it does not look for malformed lines.
pub fn read(head: &[u8]) -> Vec<Field<'_>> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .skip_while(|line| line.is_empty());
    let _start_line = lines.next();
    lines
        .take_while(|line| !line.is_empty())
        .map(|line| {
            let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
            let value = line.get(colon + 1..).unwrap_or_default();
            Field {
                name: &line[..colon],
                value: trim_ows(value),
            }
        })
        .collect()
}

/// `value` without leading or trailing SP and HTAB (OWS).
fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Asserts that `map` holds exactly `fields`: the same number of values, each name's values in
/// wire order (a `HeaderMap` groups values by name, so only the order within a name is kept).
pub fn assert_map_holds(map: &HeaderMap, fields: &[Field<'_>]) {
    assert_eq!(
        map.len(),
        fields.len(),
        "the map holds {} values, the head has {} field lines: {fields:?}",
        map.len(),
        fields.len()
    );
    for field in fields {
        let name = String::from_utf8_lossy(field.name).to_ascii_lowercase();
        let in_map: Vec<&[u8]> = map
            .get_all(name.as_str())
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let on_wire: Vec<&[u8]> = fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(field.name))
            .map(|f| f.value)
            .collect();
        assert_eq!(in_map, on_wire, "values of {name:?}");
    }
}
