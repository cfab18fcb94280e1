//! Validation results shared by every API.
//!
//! Validators produce [`InvalidParameter`]s naming the field, the rule it broke and why; each
//! wire format (Konnect problem+json, Kong Admin API errors) renders them its own way in one place.

use serde::Serialize;
use std::collections::BTreeMap;

/// One field that failed validation (Konnect's `invalid_parameters` item).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvalidParameter {
    /// The field's path, e.g. `name` or `labels.env`.
    pub field: String,
    /// The rule that failed (`required`, `is_string`, `unknown_property`, `min`, `enum`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
    /// Where the field came from (`body`, `query`, `path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// A sentence for humans.
    pub reason: String,
    /// Lower bound, for `min`/`min_length`/`min_items` rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
    /// Upper bound, for `max`/`max_length`/`max_items` rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<i64>,
    /// Allowed values, for `enum` rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
}

impl InvalidParameter {
    /// A body field that broke `rule` for `reason`.
    pub fn new(field: impl Into<String>, rule: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: Some(rule),
            source: Some("body"),
            reason: reason.into(),
            minimum: None,
            maximum: None,
            choices: None,
        }
    }

    /// The same error, attributed to the query string.
    pub fn in_query(mut self) -> Self {
        self.source = Some("query");
        self
    }

    /// A missing required field.
    pub fn required(field: impl Into<String>) -> Self {
        Self::new(field, "required", "is a required field")
    }

    /// A field that is not part of the entity.
    pub fn unknown(field: impl Into<String>) -> Self {
        Self::new(field, "unknown_property", "is not a known property")
    }

    /// A value that must be one of `choices`.
    pub fn choices(field: impl Into<String>, choices: &[&str]) -> Self {
        let mut p = Self::new(
            field,
            "enum",
            format!("must be one of: {}", choices.join(", ")),
        );
        p.choices = Some(choices.iter().map(|c| (*c).to_owned()).collect());
        p
    }

    /// A number below `min`.
    pub fn min(field: impl Into<String>, min: i64) -> Self {
        let mut p = Self::new(
            field,
            "min",
            format!("must be greater than or equal to {min}"),
        );
        p.minimum = Some(min);
        p
    }

    /// A number above `max`.
    pub fn max(field: impl Into<String>, max: i64) -> Self {
        let mut p = Self::new(field, "max", format!("must be less than or equal to {max}"));
        p.maximum = Some(max);
        p
    }

    /// A string shorter than `min` characters.
    pub fn min_length(field: impl Into<String>, min: i64) -> Self {
        let mut p = Self::new(
            field,
            "min_length",
            format!("must have at least {min} characters"),
        );
        p.minimum = Some(min);
        p
    }

    /// A string longer than `max` characters.
    pub fn max_length(field: impl Into<String>, max: i64) -> Self {
        let mut p = Self::new(
            field,
            "max_length",
            format!("must have at most {max} characters"),
        );
        p.maximum = Some(max);
        p
    }
}

/// A non-empty list of invalid parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("validation failed: {}", .0.iter().map(|p| format!("{} {}", p.field, p.reason)).collect::<Vec<_>>().join("; "))]
pub struct ValidationError(pub Vec<InvalidParameter>);

impl ValidationError {
    /// A single invalid parameter.
    pub fn one(p: InvalidParameter) -> Self {
        Self(vec![p])
    }
}

impl From<InvalidParameter> for ValidationError {
    fn from(p: InvalidParameter) -> Self {
        Self::one(p)
    }
}

/// Collects invalid parameters while a body is checked, so a user sees every problem at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<InvalidParameter>);

impl Problems {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem.
    pub fn push(&mut self, p: InvalidParameter) {
        self.0.push(p);
    }

    /// Records the problem of a check that failed.
    pub fn check(&mut self, r: Result<(), InvalidParameter>) {
        if let Err(p) = r {
            self.0.push(p);
        }
    }

    /// `Ok` when nothing was recorded.
    pub fn finish(self) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationError(self.0))
        }
    }
}

/// Konnect labels: ≤50 keys; keys 1–63 chars not starting with a reserved prefix; values 1–63
/// chars of `[a-zA-Z0-9]([a-zA-Z0-9-._]*[a-zA-Z0-9])?`.
pub type Labels = BTreeMap<String, String>;

/// Reserved label-key prefixes.
const RESERVED_LABEL_PREFIXES: [&str; 5] = ["kong", "konnect", "mesh", "kic", "_"];

/// Checks labels against Konnect's rules, reporting each bad key.
pub fn validate_labels(field: &str, labels: &Labels, problems: &mut Problems) {
    if labels.len() > 50 {
        let mut p = InvalidParameter::new(field, "max_items", "must have at most 50 labels");
        p.maximum = Some(50);
        problems.push(p);
    }
    for (k, v) in labels {
        let f = format!("{field}.{k}");
        if k.is_empty() || k.chars().count() > 63 {
            problems.push(InvalidParameter::new(
                f.clone(),
                "is_label",
                "label keys must be 1 to 63 characters",
            ));
        } else if RESERVED_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)) {
            problems.push(InvalidParameter::new(
                f.clone(),
                "is_label",
                "label keys must not start with kong, konnect, mesh, kic or _",
            ));
        }
        if !is_label_value(v) {
            problems.push(InvalidParameter::new(
                f,
                "is_label",
                "label values must be 1 to 63 characters: letters and digits, with - . _ inside",
            ));
        }
    }
}

fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return false;
    }
    let edge_ok = |c: u8| c.is_ascii_alphanumeric();
    let inner_ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_');
    edge_ok(b[0]) && edge_ok(b[b.len() - 1]) && b.iter().all(|c| inner_ok(*c))
}

/// Reads a JSON object field by field, recording type errors and, at the end, unknown fields.
///
/// Every management API body goes through one of these so that a user gets every problem of a
/// body in one answer, with Konnect's rule names.
pub struct ObjectReader {
    map: serde_json::Map<String, serde_json::Value>,
    seen: Vec<String>,
    prefix: String,
    /// Problems found so far.
    pub problems: Problems,
}

impl ObjectReader {
    /// Starts reading `value`, which must be a JSON object.
    pub fn new(value: serde_json::Value) -> Result<Self, ValidationError> {
        match value {
            serde_json::Value::Object(map) => Ok(Self {
                map,
                seen: Vec::new(),
                prefix: String::new(),
                problems: Problems::new(),
            }),
            _ => Err(ValidationError::one(InvalidParameter::new(
                "body",
                "is_object",
                "the request body must be a JSON object",
            ))),
        }
    }

    fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The raw value of a field the typed getters cannot read (nested records); it counts as
    /// read. `null` reads as absent.
    pub fn raw(&mut self, key: &str) -> Option<serde_json::Value> {
        self.take(key).filter(|v| !v.is_null())
    }

    /// Records a problem found while reading a [`ObjectReader::raw`] field.
    pub fn problem(&mut self, p: InvalidParameter) {
        self.problems.push(p);
    }

    fn take(&mut self, key: &str) -> Option<serde_json::Value> {
        self.seen.push(key.to_owned());
        self.map.get(key).cloned()
    }

    /// Whether the body has `key` (even as `null`).
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Marks `key` as known without reading it (read-only fields that clients echo back).
    pub fn ignore(&mut self, key: &str) {
        self.seen.push(key.to_owned());
    }

    /// An optional string; `null` counts as absent.
    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.take(key) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => {
                let p = InvalidParameter::new(self.path(key), "is_string", "must be a string");
                self.problems.push(p);
                None
            }
        }
    }

    /// An optional string that, when present, must have `min..=max` characters.
    pub fn string_len(&mut self, key: &str, min: usize, max: usize) -> Option<String> {
        let s = self.string(key)?;
        let n = s.chars().count();
        if n < min {
            self.problems
                .push(InvalidParameter::min_length(self.path(key), min as i64));
            None
        } else if n > max {
            self.problems
                .push(InvalidParameter::max_length(self.path(key), max as i64));
            None
        } else {
            Some(s)
        }
    }

    /// A required string of `min..=max` characters.
    pub fn required_string(&mut self, key: &str, min: usize, max: usize) -> Option<String> {
        if !self.has(key) || self.map.get(key).is_some_and(|v| v.is_null()) {
            self.seen.push(key.to_owned());
            self.problems
                .push(InvalidParameter::required(self.path(key)));
            return None;
        }
        self.string_len(key, min, max)
    }

    /// An optional boolean.
    pub fn bool(&mut self, key: &str) -> Option<bool> {
        match self.take(key) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Bool(b)) => Some(b),
            Some(_) => {
                let p = InvalidParameter::new(self.path(key), "is_boolean", "must be a boolean");
                self.problems.push(p);
                None
            }
        }
    }

    /// An optional integer within `min..=max`.
    pub fn int(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        match self.take(key) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(i) if i < min => {
                    self.problems
                        .push(InvalidParameter::min(self.path(key), min));
                    None
                }
                Some(i) if i > max => {
                    self.problems
                        .push(InvalidParameter::max(self.path(key), max));
                    None
                }
                Some(i) => Some(i),
                None => {
                    let p =
                        InvalidParameter::new(self.path(key), "is_integer", "must be an integer");
                    self.problems.push(p);
                    None
                }
            },
            Some(_) => {
                let p = InvalidParameter::new(self.path(key), "is_integer", "must be an integer");
                self.problems.push(p);
                None
            }
        }
    }

    /// An optional array of strings; with `unique`, duplicates are an error.
    pub fn string_array(&mut self, key: &str, unique: bool) -> Option<Vec<String>> {
        let path = self.path(key);
        match self.take(key) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        serde_json::Value::String(s) => {
                            if unique && out.contains(&s) {
                                self.problems.push(InvalidParameter::new(
                                    format!("{path}[{i}]"),
                                    "unique",
                                    "must not repeat a value",
                                ));
                            } else {
                                out.push(s);
                            }
                        }
                        _ => self.problems.push(InvalidParameter::new(
                            format!("{path}[{i}]"),
                            "is_string",
                            "must be a string",
                        )),
                    }
                }
                Some(out)
            }
            Some(_) => {
                self.problems
                    .push(InvalidParameter::new(path, "is_array", "must be an array"));
                None
            }
        }
    }

    /// An optional array of UUIDs.
    pub fn uuid_array(&mut self, key: &str) -> Option<Vec<uuid::Uuid>> {
        let path = self.path(key);
        let strings = self.string_array(key, true)?;
        let mut out = Vec::with_capacity(strings.len());
        for (i, s) in strings.iter().enumerate() {
            match uuid::Uuid::parse_str(s) {
                Ok(u) => out.push(u),
                Err(_) => self.problems.push(InvalidParameter::new(
                    format!("{path}[{i}]"),
                    "is_uuid",
                    "must be a UUID",
                )),
            }
        }
        Some(out)
    }

    /// Optional labels (object of strings), checked against Konnect's rules. With
    /// `allow_null_values` (PATCH), a `null` value means "remove this label" and is returned as `None`.
    pub fn labels(
        &mut self,
        key: &str,
        allow_null_values: bool,
    ) -> Option<std::collections::BTreeMap<String, Option<String>>> {
        let path = self.path(key);
        match self.take(key) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Object(m)) => {
                let mut out = std::collections::BTreeMap::new();
                let mut check = Labels::new();
                for (k, v) in m {
                    match v {
                        serde_json::Value::String(s) => {
                            check.insert(k.clone(), s.clone());
                            out.insert(k, Some(s));
                        }
                        serde_json::Value::Null if allow_null_values => {
                            out.insert(k, None);
                        }
                        _ => self.problems.push(InvalidParameter::new(
                            format!("{path}.{k}"),
                            "is_string",
                            "label values must be strings",
                        )),
                    }
                }
                validate_labels(&path, &check, &mut self.problems);
                Some(out)
            }
            Some(_) => {
                self.problems.push(InvalidParameter::new(
                    path,
                    "is_object",
                    "must be an object",
                ));
                None
            }
        }
    }

    /// Records every field that was never read as `unknown_property`, and returns the problems.
    pub fn finish(mut self) -> Result<(), ValidationError> {
        let unknown: Vec<String> = self
            .map
            .keys()
            .filter(|k| !self.seen.iter().any(|s| s == *k))
            .cloned()
            .collect();
        for k in unknown {
            let p = InvalidParameter::unknown(self.path(&k));
            self.problems.push(p);
        }
        self.problems.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_konnect_rules() {
        let mut ok = Labels::new();
        ok.insert("env".into(), "prod-1.a_b".into());
        ok.insert("x".into(), "A".into());
        let mut p = Problems::new();
        validate_labels("labels", &ok, &mut p);
        assert!(p.finish().is_ok());

        let mut bad = Labels::new();
        bad.insert("kong-x".into(), "v".into());
        bad.insert("env".into(), "-bad".into());
        bad.insert("e2".into(), "".into());
        let mut p = Problems::new();
        validate_labels("labels", &bad, &mut p);
        let err = p.finish().unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["labels.e2", "labels.env", "labels.kong-x"]);
    }
}
