//! decK-compatible declarative configuration.
//!
//! A state file is YAML or JSON in decK's format (`_format_version`, `services` with nested
//! `routes` and `plugins`, `consumers`, `plugins`, `certificates` with `snis`,
//! `ca_certificates`). [`load`] renders its `${{ env "DECK_…" }}` actions ([`template`]) and
//! parses it; [`validate`] merges several files and checks every entity with the Admin API's
//! own rules (`gatehouse_core::gateway`), the references between them and the names they must
//! not share, reporting every problem with its file and path
//! (`kong.yaml: services[0].routes[1]: paths: …`).

pub mod dump;
mod lines;
pub mod plan;
pub mod state;
pub mod template;
mod validate;

pub use validate::{Options, Summary, resolve, validate};

use serde_json::Value;
use std::fmt;

/// The largest state file read: a file of 10,000 services, each with a route and a plugin,
/// is about 4 MB.
pub const MAX_FILE_BYTES: usize = 32 << 20;

/// One problem in a state file: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (`-` for standard input).
    pub file: String,
    /// The line it is on (1-based), when known.
    pub line: Option<usize>,
    /// The entity's path (`services[0].routes[1]`) and field; empty for a syntax error or
    /// the file as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `kong.yaml:12: services[0].routes[1]: paths: …`, as compilers name a place.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A state file, read and parsed.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file's name, for messages.
    pub file: String,
    /// Its content.
    pub content: Value,
    /// Its text (rendered), for finding the line of a problem.
    pub text: String,
}

/// Renders and parses one state file's bytes. `env` reads environment variables (only
/// `DECK_`-prefixed ones are asked for).
pub fn load(
    file: &str,
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Document, Problem> {
    let text = text(file, bytes)?;
    let text = template::render(text, env).map_err(|e| Problem {
        file: file.to_owned(),
        line: Some(e.line),
        path: String::new(),
        message: e.message,
    })?;
    parse_text(file, text)
}

/// Parses one state file's bytes as they are, without rendering `${{ … }}` actions (Kong's
/// `POST /config` reads its body so).
pub fn parse(file: &str, bytes: &[u8]) -> Result<Document, Problem> {
    parse_text(file, text(file, bytes)?.to_owned())
}

/// The file's text, if it is within the size limit and UTF-8.
fn text<'b>(file: &str, bytes: &'b [u8]) -> Result<&'b str, Problem> {
    let problem = |message: String| Problem {
        file: file.to_owned(),
        line: None,
        path: String::new(),
        message,
    };
    if bytes.len() > MAX_FILE_BYTES {
        return Err(problem(format!(
            "the file is larger than {} MiB; split it into several files (-s a.yaml -s b.yaml)",
            MAX_FILE_BYTES >> 20
        )));
    }
    std::str::from_utf8(bytes).map_err(|e| problem(format!("not UTF-8 text: {e}")))
}

fn parse_text(file: &str, text: String) -> Result<Document, Problem> {
    // YAML 1.2 is a superset of JSON: one parser reads both.
    let content: Value = yaml_serde::from_str(&text).map_err(|e| Problem {
        file: file.to_owned(),
        line: e.location().map(|l| l.line()),
        path: String::new(),
        message: format!("invalid YAML or JSON: {e}"),
    })?;
    Ok(Document {
        file: file.to_owned(),
        content,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn reads_yaml_and_json_and_names_the_line_of_a_syntax_error() {
        let y = load(
            "a.yaml",
            b"_format_version: \"3.0\"\nservices: []\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(y.content["_format_version"], "3.0");
        let j = load("a.json", br#"{"_format_version": "3.0"}"#, &no_env).unwrap();
        assert_eq!(j.content["_format_version"], "3.0");
        let e = load("bad.yaml", b"services:\n  - name: a\n   host: b\n", &no_env).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("bad.yaml:3: invalid YAML"), "{e}");
        let e = load("t.yaml", b"a: ${{ env \"DECK_X\" }}", &no_env).unwrap_err();
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn refuses_a_file_over_the_limit_and_binary_data() {
        let big = vec![b' '; MAX_FILE_BYTES + 1];
        let e = load("big.yaml", &big, &no_env).unwrap_err();
        assert!(e.message.contains("larger than 32 MiB"), "{e}");
        let e = load("bin", &[0xff, 0xfe, 0x00], &no_env).unwrap_err();
        assert!(e.message.contains("UTF-8"), "{e}");
    }
}
