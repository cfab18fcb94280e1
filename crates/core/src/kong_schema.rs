//! Validation in the Kong Admin API's terms: field errors keyed by field name (nested for
//! records such as a plugin's `config`), with Kong's own messages, and a reader that pulls typed
//! fields out of a JSON object while collecting every error instead of stopping at the first.
//!
//! The admin layer turns [`FieldErrors`] into Kong's `{code: 2, name: "schema violation",
//! message, fields}` body; plugin schemas use the same reader so their errors nest under
//! `fields.config`.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Field errors in Kong's shape: each field maps to a message, or to nested errors for records;
/// entity-level checks go under `@entity` as a list of messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldErrors(BTreeMap<String, Value>);

impl FieldErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` for `field` (the first message for a field wins, as in Kong).
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_insert_with(|| Value::String(message.into()));
    }

    /// Records an entity-level error (a rule about several fields).
    pub fn entity(&mut self, message: impl Into<String>) {
        let slot = self
            .0
            .entry("@entity".to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = slot {
            list.push(Value::String(message.into()));
        }
    }

    /// Records the errors of a nested record under `field`.
    pub fn nest(&mut self, field: &str, nested: FieldErrors) {
        if !nested.is_empty() {
            self.0.insert(field.to_owned(), nested.into_value());
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `field` has an error.
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn result(self) -> Result<(), FieldErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// The errors as Kong's `fields` object.
    pub fn into_value(self) -> Value {
        Value::Object(self.0.into_iter().collect())
    }

    /// One `field.subfield: message` line per error (`@entity: message` for rules about
    /// several fields), in field order.
    pub fn leaves(&self) -> Vec<String> {
        let mut leaves = Vec::new();
        flatten(
            "",
            &Value::Object(self.0.clone().into_iter().collect()),
            &mut leaves,
        );
        leaves
    }

    /// Kong's summary line: `2 schema violations (host: required field missing; path: …)`.
    pub fn summary(&self) -> String {
        let leaves = self.leaves();
        let n = leaves.len();
        let noun = if n == 1 {
            "schema violation"
        } else {
            "schema violations"
        };
        let head = if n == 1 {
            noun.to_owned()
        } else {
            format!("{n} {noun}")
        };
        format!("{head} ({})", leaves.join("; "))
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                flatten(prefix, item, out);
            }
        }
        Value::String(s) => out.push(format!("{prefix}: {s}")),
        other => out.push(format!("{prefix}: {other}")),
    }
}

/// Kong's name for a JSON value's type, for "expected a …" messages.
fn expected(kind: &str) -> String {
    format!("expected {kind}")
}

/// Pulls typed fields out of a JSON object, recording Kong-style errors. Every getter removes
/// the field; [`KongReader::finish`] reports what is left as `unknown field`. `null` reads as
/// absent, which is how Kong treats it on create and how PUT resets a field to its default.
pub struct KongReader {
    obj: Map<String, Value>,
    /// The errors so far.
    pub errors: FieldErrors,
}

impl KongReader {
    /// A reader over `value`, which must be a JSON object.
    pub fn new(value: Value) -> Result<Self, FieldErrors> {
        match value {
            Value::Object(obj) => Ok(Self {
                obj,
                errors: FieldErrors::new(),
            }),
            _ => {
                let mut e = FieldErrors::new();
                e.entity("expected a record");
                Err(e)
            }
        }
    }

    /// Removes and returns a field; `null` counts as absent.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        match self.obj.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Whether the field is present and not null.
    pub fn has(&self, key: &str) -> bool {
        self.obj.get(key).is_some_and(|v| !v.is_null())
    }

    /// Drops a field the caller handles elsewhere (read-only fields, for instance).
    pub fn ignore(&mut self, key: &str) {
        self.obj.remove(key);
    }

    /// An optional string.
    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.take(key)? {
            Value::String(s) => Some(s),
            _ => {
                self.errors.add(key, expected("a string"));
                None
            }
        }
    }

    /// A required string: absent records `required field missing`.
    pub fn required_string(&mut self, key: &str) -> Option<String> {
        if !self.has(key) {
            self.obj.remove(key);
            self.errors.add(key, "required field missing");
            return None;
        }
        self.string(key)
    }

    /// A string that must be one of `choices`; absent gives `default`.
    pub fn one_of(&mut self, key: &str, choices: &[&str], default: &str) -> String {
        match self.string(key) {
            Some(s) if choices.contains(&s.as_str()) => s,
            Some(_) => {
                self.errors
                    .add(key, format!("expected one of: {}", choices.join(", ")));
                default.to_owned()
            }
            None => default.to_owned(),
        }
    }

    /// An optional boolean.
    pub fn bool(&mut self, key: &str) -> Option<bool> {
        match self.take(key)? {
            Value::Bool(b) => Some(b),
            _ => {
                self.errors.add(key, expected("a boolean"));
                None
            }
        }
    }

    /// An optional integer within `min..=max`.
    pub fn int(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.take(key)?;
        let n = match &v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.errors
                    .add(key, format!("value should be between {min} and {max}"));
                None
            }
            None => {
                self.errors.add(key, expected("an integer"));
                None
            }
        }
    }

    /// An optional number (integer or float) within `min..=max`.
    pub fn number(&mut self, key: &str, min: f64, max: f64) -> Option<f64> {
        match self.take(key)? {
            Value::Number(n) => match n.as_f64() {
                Some(f) if f >= min && f <= max => Some(f),
                _ => {
                    self.errors
                        .add(key, format!("value should be between {min} and {max}"));
                    None
                }
            },
            _ => {
                self.errors.add(key, expected("a number"));
                None
            }
        }
    }

    /// An optional array of strings; `set` removes duplicates keeping the first occurrence.
    /// Element errors name the offending value.
    pub fn strings(&mut self, key: &str, set: bool) -> Option<Vec<String>> {
        let v = self.take(key)?;
        let Value::Array(items) = v else {
            self.errors
                .add(key, expected(if set { "a set" } else { "an array" }));
            return None;
        };
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::String(s) => {
                    if !(set && out.contains(&s)) {
                        out.push(s);
                    }
                }
                _ => {
                    self.errors.add(key, expected("a string"));
                    return None;
                }
            }
        }
        Some(out)
    }

    /// An optional map of string to string.
    pub fn string_map(&mut self, key: &str) -> Option<BTreeMap<String, String>> {
        let v = self.take(key)?;
        let Value::Object(m) = v else {
            self.errors.add(key, expected("a map"));
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, v) in m {
            match v {
                Value::String(s) => {
                    out.insert(k, s);
                }
                _ => {
                    self.errors.add(key, expected("a string"));
                    return None;
                }
            }
        }
        Some(out)
    }

    /// A foreign reference `{"id": "<uuid>"}`; `Some(None)` when explicitly absent or null.
    pub fn foreign(&mut self, key: &str) -> Option<Uuid> {
        let v = self.take(key)?;
        let Value::Object(mut m) = v else {
            self.errors.add(key, expected("a record"));
            return None;
        };
        let id = m.remove("id");
        if let Some((extra, _)) = m.into_iter().next() {
            let mut nested = FieldErrors::new();
            nested.add(&extra, "unknown field");
            self.errors.nest(key, nested);
            return None;
        }
        match id {
            Some(Value::String(s)) => match Uuid::parse_str(&s) {
                Ok(u) => Some(u),
                Err(_) => {
                    let mut nested = FieldErrors::new();
                    nested.add("id", "expected a valid UUID");
                    self.errors.nest(key, nested);
                    None
                }
            },
            _ => {
                let mut nested = FieldErrors::new();
                nested.add("id", "required field missing");
                self.errors.nest(key, nested);
                None
            }
        }
    }

    /// Tags: a set of strings, each printable without spaces, `,` or `/`.
    pub fn tags(&mut self) -> Option<Vec<String>> {
        let tags = self.strings("tags", true)?;
        for t in &tags {
            if t.chars().count() > MAX_NAME_CHARS {
                self.errors
                    .add("tags", format!("length must be at most {MAX_NAME_CHARS}"));
                return None;
            }
            if !valid_tag(t) {
                self.errors.add(
                    "tags",
                    format!(
                        "invalid tag '{t}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
                    ),
                );
                return None;
            }
        }
        Some(tags)
    }

    /// Records `unknown field` for every field no getter took; returns all errors.
    pub fn finish(mut self) -> Result<(), FieldErrors> {
        let left: Vec<String> = self.obj.keys().cloned().collect();
        for k in left {
            self.errors.add(&k, "unknown field");
        }
        self.errors.result()
    }
}

/// The longest entity name (and tag) accepted. Kong sets none; without one a single entity
/// with a megabyte name rides along in every list (docs/compatibility.md).
pub const MAX_NAME_CHARS: usize = 512;

/// Kong's `utf8_name`: ASCII limited to alphanumerics and `. - _ ~`; other UTF-8 allowed.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            !c.is_ascii() || c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~')
        })
}

/// The message Kong gives for a name that fails [`valid_name`].
pub fn invalid_name_message(s: &str) -> String {
    format!(
        "invalid value '{s}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
    )
}

/// Kong's tag rule: printable, no spaces, no `,` or `/`.
pub fn valid_tag(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            if c.is_ascii() {
                c.is_ascii_graphic() && c != ',' && c != '/'
            } else {
                !c.is_control() && !c.is_whitespace()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reader_collects_every_error_with_kong_messages() {
        let mut r = KongReader::new(json!({
            "name": 5, "port": 70000, "enabled": "yes", "protocol": "ftp", "extra": 1,
            "tags": ["ok", "bad tag"]
        }))
        .unwrap();
        assert_eq!(r.string("name"), None);
        assert_eq!(r.int("port", 0, 65535), None);
        assert_eq!(r.bool("enabled"), None);
        assert_eq!(r.one_of("protocol", &["http", "https"], "http"), "http");
        assert_eq!(r.required_string("host"), None);
        assert_eq!(r.tags(), None);
        let e = r.finish().unwrap_err().into_value();
        assert_eq!(e["name"], "expected a string");
        assert_eq!(e["port"], "value should be between 0 and 65535");
        assert_eq!(e["enabled"], "expected a boolean");
        assert_eq!(e["protocol"], "expected one of: http, https");
        assert_eq!(e["host"], "required field missing");
        assert_eq!(e["extra"], "unknown field");
        assert!(
            e["tags"]
                .as_str()
                .unwrap()
                .starts_with("invalid tag 'bad tag'")
        );
    }

    #[test]
    fn summary_counts_nested_leaves() {
        let mut e = FieldErrors::new();
        e.add("host", "required field missing");
        let mut config = FieldErrors::new();
        config.add("introspection_url", "required field missing");
        e.nest("config", config);
        assert_eq!(
            e.summary(),
            "2 schema violations (config.introspection_url: required field missing; host: required field missing)"
        );
        let mut one = FieldErrors::new();
        one.entity(
            "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'",
        );
        assert!(
            one.summary()
                .starts_with("schema violation (@entity: must set")
        );
    }

    #[test]
    fn foreign_references_take_an_id_record() {
        let id = Uuid::new_v4();
        let mut r = KongReader::new(json!({"service": {"id": id}, "route": {"id": "x"},
                                          "consumer": "c"}))
        .unwrap();
        assert_eq!(r.foreign("service"), Some(id));
        assert_eq!(r.foreign("route"), None);
        assert_eq!(r.foreign("consumer"), None);
        let e = r.finish().unwrap_err().into_value();
        assert_eq!(e["route"]["id"], "expected a valid UUID");
        assert_eq!(e["consumer"], "expected a record");
    }

    #[test]
    fn names_and_tags() {
        assert!(valid_name("example-service"));
        assert!(valid_name("ünïcode~1.0"));
        assert!(!valid_name("has space"));
        assert!(!valid_name("a/b"));
        assert!(valid_tag("team:payments"));
        assert!(!valid_tag("a,b"));
        assert!(!valid_tag(""));
    }
}
