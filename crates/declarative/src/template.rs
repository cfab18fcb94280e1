//! decK's templating of state files: `${{ env "DECK_NAME" }}` is replaced by the variable's
//! value before the file is parsed, optionally through `| toBool`, `| toInt` or `| toFloat`,
//! which check the value's type. As in decK, only variables with the `DECK_` prefix may be
//! read, so a file cannot pull arbitrary secrets out of the environment.

use std::fmt;

/// The prefix every variable a state file reads must have (decK's default).
pub const ENV_PREFIX: &str = "DECK_";

const OPEN: &str = "${{";
const CLOSE: &str = "}}";

/// A template action that cannot be rendered, with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Line of the action.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Renders every `${{ … }}` action of `text`, reading variables through `env`.
pub fn render(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed = 0;
    while let Some(start) = rest.find(OPEN) {
        let line = 1 + text[..consumed + start].matches('\n').count();
        let fail = |message: String| TemplateError { line, message };
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find(CLOSE) else {
            return Err(fail(format!("unclosed '{OPEN}': expected '{CLOSE}'")));
        };
        out.push_str(&action(after[..end].trim(), env).map_err(fail)?);
        let taken = start + OPEN.len() + end + CLOSE.len();
        consumed += taken;
        rest = &rest[taken..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders one action: `env "NAME"`, then at most one conversion.
fn action(body: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut stages = body.split('|').map(str::trim);
    let first = stages.next().unwrap_or_default();
    let Some(quoted) = first.strip_prefix("env").map(str::trim) else {
        return Err(format!(
            "unsupported template action '{body}': expected env \"{ENV_PREFIX}NAME\""
        ));
    };
    let name = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .filter(|n| !n.is_empty() && !n.contains('"'))
        .ok_or_else(|| format!("env takes one quoted variable name, got '{quoted}'"))?;
    let convert = stages.next();
    if let Some(extra) = stages.next() {
        return Err(format!("unsupported template action '| {extra}'"));
    }
    if let Some(c) = convert
        && !matches!(c, "toBool" | "toInt" | "toFloat")
    {
        return Err(format!(
            "unknown function '{c}': expected toBool, toInt or toFloat"
        ));
    }
    if !name.starts_with(ENV_PREFIX) {
        return Err(format!(
            "environment variables in the state file must be prefixed with '{ENV_PREFIX}', found: '{name}'"
        ));
    }
    let value = env(name).ok_or_else(|| {
        format!("environment variable '{name}' present in state file but not set")
    })?;
    match convert {
        None => Ok(value),
        Some("toBool") => parse_bool(&value)
            .map(|b| b.to_string())
            .ok_or_else(|| format!("{name}: '{value}' is not a boolean")),
        Some("toInt") => value
            .parse::<i64>()
            .map(|i| i.to_string())
            .map_err(|_| format!("{name}: '{value}' is not an integer")),
        Some(_) => value
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| f.to_string())
            .ok_or_else(|| format!("{name}: '{value}' is not a number")),
    }
}

/// Go's `strconv.ParseBool`, which decK's `toBool` uses.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "DECK_HOST" => Some("api.example.com".into()),
            "DECK_ON" => Some("T".into()),
            "DECK_PORT" => Some("8080".into()),
            "SECRET" => Some("never".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_deck_variables_and_converts() {
        let text = "host: ${{ env \"DECK_HOST\" }}\nport: ${{env \"DECK_PORT\" | toInt}}\non: ${{ env \"DECK_ON\" | toBool }}\n";
        assert_eq!(
            render(text, &env).unwrap(),
            "host: api.example.com\nport: 8080\non: true\n"
        );
        assert_eq!(render("no actions", &env).unwrap(), "no actions");
    }

    #[test]
    fn refuses_other_prefixes_unset_variables_and_bad_values_with_their_line() {
        let e = render("a: 1\nb: ${{ env \"SECRET\" }}", &env).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("prefixed with 'DECK_'"), "{e}");
        let e = render("\n\nx: ${{ env \"DECK_MISSING\" }}", &env).unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(
            e.message,
            "environment variable 'DECK_MISSING' present in state file but not set"
        );
        let e = render("${{ env \"DECK_HOST\" | toInt }}", &env).unwrap_err();
        assert!(e.message.contains("not an integer"), "{e}");
        for bad in [
            "${{ env \"DECK_HOST\"",
            "${{ exec \"rm\" }}",
            "${{ env DECK_HOST }}",
            "${{ env \"DECK_HOST\" | upper }}",
            "${{ env \"DECK_ON\" | toBool | toInt }}",
        ] {
            assert!(render(bad, &env).is_err(), "{bad}");
        }
    }
}
