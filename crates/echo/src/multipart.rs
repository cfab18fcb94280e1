//! A small, careful `multipart/form-data` parser (RFC 7578 over RFC 2046), and
//! the header-parameter parser it shares with `Content-Type`.
//!
//! A full multipart crate would be streaming and async; the echo has the
//! whole (capped) body in memory already, so a slice-based parser of a few
//! dozen lines is enough. It never panics and never copies part contents:
//! parts borrow from the body. Anything malformed makes [`parse`] return
//! `None`, and the caller reports the raw body instead.

use memchr::memmem;

/// The longest boundary accepted. RFC 2046 allows 70 characters; a little
/// slack tolerates sloppy clients without letting a huge boundary make the
/// search expensive.
const MAX_BOUNDARY: usize = 200;

/// One part of a multipart body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part<'a> {
    /// The `name` parameter of its `Content-Disposition`.
    pub name: String,
    /// The `filename` parameter, if any: its presence makes the part a file.
    pub filename: Option<String>,
    /// Its `Content-Type`, if given.
    pub content_type: Option<String>,
    /// Its content.
    pub data: &'a [u8],
}

/// Parses `body` as multipart with `boundary`; `None` if it is malformed.
///
/// Parts without a `Content-Disposition` name are skipped, as form parsers do.
pub(crate) fn parse<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<Part<'a>>> {
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return None;
    }
    // Every delimiter but the first is "CRLF--boundary"; the first may also
    // open the body with no CRLF (there is usually no preamble).
    let delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(delimiter.as_bytes());
    let dash_boundary = &delimiter.as_bytes()[2..];
    let mut pos = if body.starts_with(dash_boundary) {
        dash_boundary.len()
    } else {
        finder.find(body)? + delimiter.len()
    };

    let mut parts = Vec::new();
    loop {
        let rest = body.get(pos..)?;
        if rest.starts_with(b"--") {
            // The close delimiter; the epilogue is ignored.
            return Some(parts);
        }
        // Transport padding (linear white space) may follow a delimiter.
        let padding = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        let rest = rest.get(padding..)?.strip_prefix(b"\r\n")?;
        let end = finder.find(rest)?;
        let part = &rest[..end];
        // Headers end at an empty line; a part may have no headers at all.
        let (headers, data) = match part.strip_prefix(b"\r\n") {
            Some(data) => (&part[..0], data),
            None => {
                let blank = memmem::find(part, b"\r\n\r\n")?;
                (&part[..blank], &part[blank + 4..])
            }
        };
        if let Some(part) = read_part(headers, data) {
            parts.push(part);
        }
        // `rest` starts `padding + 2` bytes after `pos`.
        pos += padding + 2 + end + delimiter.len();
    }
}

/// Builds a [`Part`] from its raw headers and content.
fn read_part<'a>(headers: &[u8], data: &'a [u8]) -> Option<Part<'a>> {
    let mut disposition = None;
    let mut content_type = None;
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Browsers send raw UTF-8 in names and file names.
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_owned());
        }
    }
    let disposition = disposition?;
    let (kind, params) = split_header(&disposition);
    if !kind.eq_ignore_ascii_case("form-data") {
        return None;
    }
    let mut name = None;
    let mut filename = None;
    for (key, value) in params {
        match key.as_str() {
            "name" => name = Some(value),
            // RFC 7578 forbids `filename*`, but some clients send it; it still
            // marks a file, and a plain `filename` wins when both are present.
            "filename" => filename = Some(value),
            "filename*" if filename.is_none() => filename = Some(value),
            _ => {}
        }
    }
    Some(Part {
        name: name?,
        filename,
        content_type,
        data,
    })
}

/// Splits a header value like `form-data; name="a"; filename="b"` into its
/// first item (trimmed) and its parameters (names lower-cased; quoted values
/// unquoted, with backslash escapes honoured).
pub(crate) fn split_header(value: &str) -> (&str, Vec<(String, String)>) {
    let (first, mut rest) = match value.split_once(';') {
        Some((first, rest)) => (first.trim(), rest),
        None => return (value.trim(), Vec::new()),
    };
    let mut params = Vec::new();
    loop {
        // At the start of a parameter.
        let Some((key, after_key)) = rest.split_once('=') else {
            return (first, params);
        };
        if let Some(semicolon) = key.find(';') {
            // A parameter without a value: skip it.
            rest = &rest[semicolon + 1..];
            continue;
        }
        let key = key.trim().to_ascii_lowercase();
        let after_key = after_key.trim_start();
        let (val, after_value) = match after_key.strip_prefix('"') {
            Some(quoted) => read_quoted(quoted),
            None => match after_key.split_once(';') {
                Some((val, after)) => (val.trim().to_owned(), Some(after)),
                None => (after_key.trim().to_owned(), None),
            },
        };
        params.push((key, val));
        match after_value {
            Some(after) => rest = after,
            None => return (first, params),
        }
    }
}

/// Reads a quoted string whose opening quote was consumed; returns its value
/// and what follows the next `;` after it (`None` at the end).
fn read_quoted(s: &str) -> (String, Option<&str>) {
    let mut value = String::new();
    let mut chars = s.char_indices();
    let mut end = s.len();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => {
                end = i + 1;
                break;
            }
            c => value.push(c),
        }
    }
    let after = s[end..].split_once(';').map(|(_, after)| after);
    (value, after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part<'a>(name: &str, filename: Option<&str>, ct: Option<&str>, data: &'a [u8]) -> Part<'a> {
        Part {
            name: name.into(),
            filename: filename.map(Into::into),
            content_type: ct.map(Into::into),
            data,
        }
    }

    #[test]
    fn parses_fields_and_files() {
        let body = b"--XyZ\r\n\
            Content-Disposition: form-data; name=\"a\"\r\n\r\n\
            1\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"f\"; filename=\"x;y.txt\"\r\n\
            Content-Type: text/plain\r\n\r\n\
            line1\r\nline2\r\n\
            --XyZ\r\n\
            content-disposition: form-data; name=empty\r\n\r\n\
            \r\n\
            --XyZ--\r\nepilogue";
        let parts = parse(body, "XyZ").unwrap();
        assert_eq!(
            parts,
            vec![
                part("a", None, None, b"1"),
                part("f", Some("x;y.txt"), Some("text/plain"), b"line1\r\nline2"),
                part("empty", None, None, b""),
            ]
        );
    }

    #[test]
    fn tolerates_a_preamble_and_padding() {
        let body =
            b"preamble\r\n--b  \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--b--";
        assert_eq!(parse(body, "b").unwrap(), vec![part("a", None, None, b"v")]);
    }

    #[test]
    fn rejects_malformed_bodies() {
        let cases: &[&[u8]] = &[
            b"",
            b"--b",
            b"--b\r\n",
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nno end",
            b"--b\r\nContent-Disposition: form-data; name=a\r\n--b--",
            b"--bX\r\n\r\nv\r\n--b--",
            b"no delimiter at all",
        ];
        for body in cases {
            assert_eq!(
                parse(body, "b"),
                None,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse(b"----\r\n", ""), None);
    }

    #[test]
    fn skips_parts_without_a_name() {
        let body =
            b"--b\r\n\r\nno headers\r\n--b\r\nContent-Disposition: attachment\r\n\r\nx\r\n--b--";
        assert_eq!(parse(body, "b").unwrap(), vec![]);
    }

    #[test]
    fn header_parameters() {
        let (first, params) =
            split_header(r#"multipart/form-data; boundary="a\"b;c" ; charset = utf-8; flag; x=1"#);
        assert_eq!(first, "multipart/form-data");
        assert_eq!(
            params,
            vec![
                ("boundary".into(), "a\"b;c".into()),
                ("charset".into(), "utf-8".into()),
                ("x".into(), "1".into()),
            ]
        );
        assert_eq!(split_header("text/plain"), ("text/plain", vec![]));
        assert_eq!(
            split_header("a; b=\"unterminated"),
            ("a", vec![("b".into(), "unterminated".into())])
        );
        assert_eq!(
            split_header("a; b=\"x\\"),
            ("a", vec![("b".into(), "x".into())])
        );
    }
}
