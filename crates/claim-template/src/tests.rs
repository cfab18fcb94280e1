//! Unit tests: documented examples, syntax, Go semantics, every function
//! family and the abuse limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, FixedOffset, TimeDelta, TimeZone, Utc};
use serde_json::json;

use crate::eval::Env;
use crate::{ParseError, RenderError, Template, Value, golayout, infer_json};

fn fixed() -> DateTime<FixedOffset> {
    Utc.with_ymd_and_hms(2024, 3, 5, 14, 7, 9)
        .unwrap()
        .fixed_offset()
        .checked_add_signed(TimeDelta::nanoseconds(123_456_789))
        .unwrap()
}

fn ctx_with_labels(client_labels: Value) -> Value {
    let t0 = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
    Value::map([
        (
            "AuthServer",
            Value::map([
                ("ID", Value::from("5f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f")),
                ("CreatedAt", Value::from(t0)),
                ("UpdatedAt", Value::from(t0)),
                ("Name", Value::from("main")),
                ("Description", Value::from("Main server")),
                ("Audience", Value::from("https://api.example.com")),
                ("SigningAlgorithm", Value::from("RS256")),
                ("Labels", Value::map([("team", "core")])),
            ]),
        ),
        (
            "Client",
            Value::map([
                ("ID", Value::from("client-123")),
                ("CreatedAt", Value::from(t0)),
                ("UpdatedAt", Value::from(t0)),
                ("Name", Value::from("Billing App")),
                ("Labels", client_labels),
                ("GrantTypes", Value::list(["client_credentials"])),
                (
                    "RedirectURIs",
                    Value::list(["https://a.example/cb", "https://b.example/cb"]),
                ),
                ("LoginURI", Value::from("https://login.example")),
                ("ResponseTypes", Value::list(["code", "token"])),
                ("AllowAllScopes", Value::from(true)),
            ]),
        ),
    ])
}

fn ctx() -> Value {
    ctx_with_labels(Value::map([("tier", "gold")]))
}

fn env() -> Env {
    Env::new(Some(fixed()))
}

/// Render with the fixed clock and type inference.
fn r(src: &str) -> serde_json::Value {
    Template::parse(src)
        .unwrap_or_else(|e| panic!("parse {src:?}: {e}"))
        .render_with(&ctx(), &mut env())
        .unwrap_or_else(|e| panic!("render {src:?}: {e}"))
}

/// Render to text with the fixed clock.
fn t(src: &str) -> String {
    Template::parse(src)
        .unwrap_or_else(|e| panic!("parse {src:?}: {e}"))
        .render_text_with(&ctx(), &mut env())
        .unwrap_or_else(|e| panic!("render {src:?}: {e}"))
}

/// Evaluate a single action to its raw value.
fn ev(src: &str) -> Value {
    Template::parse(src)
        .unwrap_or_else(|e| panic!("parse {src:?}: {e}"))
        .eval_single(&ctx(), &mut env())
        .unwrap_or_else(|e| panic!("render {src:?}: {e}"))
}

fn perr(src: &str) -> ParseError {
    match Template::parse(src) {
        Ok(_) => panic!("expected a parse error for {src:?}"),
        Err(e) => e,
    }
}

fn rerr(src: &str) -> RenderError {
    let tpl = Template::parse(src).unwrap_or_else(|e| panic!("parse {src:?}: {e}"));
    match tpl.render_with(&ctx(), &mut env()) {
        Ok(v) => panic!("expected a render error for {src:?}, got {v}"),
        Err(e) => e,
    }
}

fn strs(v: &[&str]) -> Value {
    Value::list(v.iter().copied())
}

fn ints(v: &[i64]) -> Value {
    Value::list(v.iter().copied())
}

// ---------------------------------------------------------------- examples

#[test]
fn example_uuidv4() {
    let v = r("${ uuidv4 }");
    let s = v.as_str().unwrap();
    let u = uuid::Uuid::parse_str(s).unwrap();
    assert_eq!(u.get_version_num(), 4);
    assert_eq!(s.len(), 36);
    // Fresh every render.
    assert_ne!(r("${ uuidv4 }"), r("${ uuidv4 }"));
}

#[test]
fn example_client_name() {
    assert_eq!(r("${ .Client.Name }"), json!("Billing App"));
}

#[test]
fn example_now_date_fixed_clock() {
    assert_eq!(
        r(r#"${ now | date "2006-01-02T15:04:05Z07:00" }"#),
        json!("2024-03-05T14:07:09Z")
    );
}

#[test]
fn example_now_date_wall_clock() {
    let tpl = Template::parse(r#"${ now | date "2006-01-02T15:04:05Z07:00" }"#).unwrap();
    let before = Utc::now().timestamp();
    let v = tpl.render(&ctx()).unwrap();
    let parsed = DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(v.as_str().unwrap().ends_with('Z'));
    assert!((parsed.timestamp() - before).abs() <= 2);
}

#[test]
fn example_audience_dash_client_id() {
    assert_eq!(
        r("${ .AuthServer.Audience }-${ .Client.ID }"),
        json!("https://api.example.com-client-123")
    );
}

#[test]
fn example_label_default() {
    let src = r#"${ .Client.Labels.environment | default "production" }"#;
    assert_eq!(r(src), json!("production"));
    let tpl = Template::parse(src).unwrap();
    let c = ctx_with_labels(Value::map([("environment", "staging")]));
    assert_eq!(tpl.render(&c).unwrap(), json!("staging"));
    // Empty label value is "empty" too.
    let c = ctx_with_labels(Value::map([("environment", "")]));
    assert_eq!(tpl.render(&c).unwrap(), json!("production"));
    // No Labels map at all.
    let c = ctx_with_labels(Value::Nil);
    assert_eq!(tpl.render(&c).unwrap(), json!("production"));
}

#[test]
fn example_upper() {
    assert_eq!(r("${ upper .Client.Name }"), json!("BILLING APP"));
}

#[test]
fn example_rand_alpha_num() {
    let s = t("${ randAlphaNum 16 }");
    assert_eq!(s.len(), 16);
    assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
}

#[test]
fn example_uuid_parse_and_validate() {
    assert_eq!(
        r(r#"${ uuidParse "F47AC10B-58CC-4372-A567-0E02B2C3D479" }"#),
        json!("f47ac10b-58cc-4372-a567-0e02b2c3d479")
    );
    assert_eq!(
        r(r#"${ uuidParse "urn:uuid:f47ac10b-58cc-4372-a567-0e02b2c3d479" }"#),
        json!("f47ac10b-58cc-4372-a567-0e02b2c3d479")
    );
    assert_eq!(r("${ uuidValidate .AuthServer.ID }"), json!(true));
    assert_eq!(r(r#"${ uuidValidate "nope" }"#), json!(false));
    assert_eq!(r("${ uuidv4 | uuidValidate }"), json!(true));
    assert!(
        rerr(r#"${ uuidParse "nope" }"#)
            .message()
            .contains("invalid UUID")
    );
}

// ---------------------------------------------------------- static values

#[test]
fn static_values_are_inferred_once() {
    for (src, want) in [
        ("42", json!(42)),
        ("-7", json!(-7)),
        ("1.5", json!(1.5)),
        ("true", json!(true)),
        ("false", json!(false)),
        (r#"{"a":1}"#, json!({"a": 1})),
        ("[1,\"x\"]", json!([1, "x"])),
        ("test", json!("test")),
        ("null", json!("null")),
        ("1e400", json!("1e400")),
        (" 42", json!(" 42")),
        ("007", json!("007")),
        ("99999999999999999999", json!("99999999999999999999")),
        ("{not json", json!("{not json")),
        ("", json!("")),
    ] {
        let tpl = Template::parse(src).unwrap();
        assert!(tpl.is_static(), "{src}");
        assert_eq!(tpl.render(&Value::Nil).unwrap(), want, "{src}");
        assert_eq!(tpl.render_text(&Value::Nil).unwrap(), src);
    }
    assert!(!Template::parse("${ 1 }").unwrap().is_static());
    assert!(
        !Template::parse("${/* only a comment */}")
            .unwrap()
            .is_static()
    );
}

#[test]
fn infer_json_rules() {
    assert_eq!(infer_json("0"), json!(0));
    assert_eq!(infer_json("-0.5"), json!(-0.5));
    assert_eq!(infer_json("1e3"), json!(1000.0));
    assert_eq!(infer_json("+5"), json!("+5"));
    assert_eq!(infer_json(".5"), json!(".5"));
    assert_eq!(infer_json("NaN"), json!("NaN"));
    assert_eq!(infer_json("True"), json!("True"));
    assert_eq!(infer_json("42 "), json!("42 "));
    assert_eq!(infer_json("9223372036854775807"), json!(i64::MAX));
    assert_eq!(
        infer_json("9223372036854775808"),
        json!("9223372036854775808")
    );
    assert_eq!(infer_json("[]"), json!([]));
    assert_eq!(
        infer_json("{\"b\":1,\"a\":2}").to_string(),
        "{\"b\":1,\"a\":2}"
    );
}

#[test]
fn rendered_text_is_inferred() {
    assert_eq!(r("${ add 40 2 }"), json!(42));
    assert_eq!(r("${ .Client.AllowAllScopes }"), json!(true));
    assert_eq!(r(r#"${ "{\"a\":1}" }"#), json!({"a": 1}));
    assert_eq!(r("${ 2.5 }"), json!(2.5));
    assert_eq!(r("x${ 1 }"), json!("x1"));
    assert_eq!(r("${ 1 }${ 2 }"), json!(12));
    assert_eq!(r("${ .Nope }"), json!(""));
}

#[test]
fn whole_value_structures_become_json() {
    assert_eq!(r("${ .Client.GrantTypes }"), json!(["client_credentials"]));
    assert_eq!(r("${ .Client.Labels }"), json!({"tier": "gold"}));
    assert_eq!(r(r#"${ list 1 "a" 2.5 true }"#), json!([1, "a", 2.5, true]));
    assert_eq!(
        r(r#"${ dict "b" 2 "a" (list 1) }"#),
        json!({"a": [1], "b": 2})
    );
    // Not the whole value: Go %v text.
    assert_eq!(r(r#"x ${ list 1 "a" 2.5 }"#), json!("x [1 a 2.5]"));
    assert_eq!(r(r#"${ dict "b" 2 "a" 1 } "#), json!("map[a:1 b:2] "));
    assert_eq!(t("${ .Client.GrantTypes }"), "[client_credentials]");
    // Times inside a structure are RFC 3339.
    assert_eq!(
        r("${ list now }"),
        json!(["2024-03-05T14:07:09.123456789Z"])
    );
}

// ------------------------------------------------------------------ syntax

#[test]
fn syntax_literals() {
    assert_eq!(ev(r#"${ "a\tb\u00e9\x41\"" }"#), Value::from("a\tbéA\""));
    assert_eq!(ev("${ `raw \\n }` }"), Value::from("raw \\n }"));
    assert_eq!(ev("${ 'a' }"), Value::Int(97));
    assert_eq!(ev(r"${ '\n' }"), Value::Int(10));
    assert_eq!(ev("${ 42 }"), Value::Int(42));
    assert_eq!(ev("${ -42 }"), Value::Int(-42));
    assert_eq!(ev("${ 0x1F }"), Value::Int(31));
    assert_eq!(ev("${ 0o17 }"), Value::Int(15));
    assert_eq!(ev("${ 017 }"), Value::Int(15));
    assert_eq!(ev("${ 0b101 }"), Value::Int(5));
    assert_eq!(ev("${ 1_000 }"), Value::Int(1000));
    assert_eq!(ev("${ 1.5 }"), Value::Float(1.5));
    assert_eq!(ev("${ 1e3 }"), Value::Float(1000.0));
    assert_eq!(ev("${ .5 }"), Value::Float(0.5));
    assert_eq!(ev("${ true }"), Value::Bool(true));
    assert_eq!(ev("${ false }"), Value::Bool(false));
    assert_eq!(ev("${ default nil 1 }"), Value::Int(1));
}

#[test]
fn syntax_brace_inside_string_does_not_close() {
    assert_eq!(r(r#"${ "a}b" }"#), json!("a}b"));
    assert_eq!(r(r#"${ "}" | printf "%s{" }"#), json!("}{"));
    assert_eq!(r(r#"x}${ "${" }"#), json!("x}${"));
}

#[test]
fn syntax_whitespace_insignificant() {
    assert_eq!(r("${.Client.Name}"), json!("Billing App"));
    assert_eq!(r("${   upper\t.Client.Name \n }"), json!("BILLING APP"));
    assert_eq!(r("${.Client.Name|upper}"), json!("BILLING APP"));
}

#[test]
fn syntax_trim_markers_and_comments() {
    assert_eq!(r(r#"a  ${- "b" -}   c"#), json!("abc"));
    assert_eq!(r("a${/* note */}b"), json!("ab"));
    assert_eq!(r("a ${- /* note */ -} b"), json!("ab"));
    assert!(perr("${/* unclosed }").message().contains("comment"));
}

#[test]
fn syntax_root_and_fields() {
    assert_eq!(r("${ $.Client.Name }"), json!("Billing App"));
    assert_eq!(r("${ .AuthServer.Labels.team }"), json!("core"));
    assert_eq!(r(r#"${ (dict "a" (dict "b" "c")).a.b }"#), json!("c"));
    assert_eq!(r("${ (.Client).Name }"), json!("Billing App"));
    assert_eq!(
        t("${ .Nope }|${ .Nope.Deeper }|${ .Client.Labels.none }"),
        "||"
    );
    assert!(
        rerr("${ .Client.Name.Foo }")
            .message()
            .contains("can't evaluate field Foo in type string")
    );
}

#[test]
fn pipelines_pass_value_last() {
    assert_eq!(r(r#"${ "b" | printf "%s-%s" "a" }"#), json!("a-b"));
    assert_eq!(
        r(r#"${ .Client.Name | replace " " "_" | lower }"#),
        json!("billing_app")
    );
    assert_eq!(r(r#"${ "hello world" | trunc 5 | upper }"#), json!("HELLO"));
    assert_eq!(r("${ 3 | sub 10 }"), json!(7));
    assert_eq!(
        r(r#"${ (upper .Client.Name) | printf "<%s>" }"#),
        json!("<BILLING APP>")
    );
    assert_eq!(
        r("${ upper (lower (upper .Client.Name)) }"),
        json!("BILLING APP")
    );
}

#[test]
fn parse_errors() {
    let e = perr("${ .Client.Name");
    assert!(e.message().contains("unclosed action"), "{e}");
    assert_eq!(e.position(), 0);
    let e = perr("abc ${ nosuchfunc }");
    assert!(e.message().contains("\"nosuchfunc\" not defined"), "{e}");
    assert_eq!(e.position(), 7);
    assert!(
        perr("${ upper }")
            .message()
            .contains("wrong number of args for upper: want 1 got 0")
    );
    assert!(
        perr(r#"${ upper "a" "b" }"#)
            .message()
            .contains("want 1 got 2")
    );
    assert!(
        perr(r#"${ .Client.Name | upper "x" }"#)
            .message()
            .contains("want 1 got 2")
    );
    assert!(perr(r#"${ default }"#).message().contains("want 1 to 2"));
    assert!(
        perr("${ $x := 1 }")
            .message()
            .contains("variables are not supported")
    );
    assert!(
        perr("${ $x }")
            .message()
            .contains("variables are not supported")
    );
    assert!(
        perr("${ if .A }x${ end }")
            .message()
            .contains("control structures")
    );
    assert!(
        perr("${ range .A }")
            .message()
            .contains("control structures")
    );
    assert!(
        perr("${ with .A }")
            .message()
            .contains("control structures")
    );
    assert!(perr("${ }").message().contains("missing value"));
    assert!(perr(r#"${ "abc }"#).message().contains("unterminated"));
    assert!(perr("${ `abc }").message().contains("unterminated"));
    assert!(perr("${ nil }").message().contains("nil is not a command"));
    assert!(perr(r#"${ "a" "b" }"#).message().contains("non-function"));
    assert!(perr(r#"${ "a" | "b" }"#).message().contains("non-function"));
    assert!(perr("${ 1x }").message().contains("bad number"));
    assert!(
        perr("${ 99999999999999999999 }")
            .message()
            .contains("out of range")
    );
    assert!(
        perr("${ (upper .Client.Name }")
            .message()
            .contains("unclosed left paren")
    );
    assert!(
        perr("${ upper .Client.Name) }")
            .message()
            .contains("unexpected")
    );
    assert!(perr("${ .A | }").message().contains("missing value"));
    assert!(perr(r#"${ "\q" }"#).message().contains("escape"));
    assert!(perr("${ # }").message().contains("unexpected"));
    assert!(
        perr("${ upper.Client }")
            .message()
            .contains("function name")
    );
    // Unknown function used as an argument (a niladic call) is caught too.
    assert!(perr("${ upper nosuch }").message().contains("not defined"));
    // Arity of a niladic argument.
    assert!(
        perr("${ upper date }")
            .message()
            .contains("wrong number of args for date")
    );
    // Display includes the position.
    assert!(perr("${ nosuch }").to_string().contains("offset 3"));
}

#[test]
fn parse_nesting_limit() {
    let ok = format!("${{ {}1{} }}", "(".repeat(64), ")".repeat(64));
    assert_eq!(r(&ok), json!(1));
    let bad = format!("${{ {}1{} }}", "(".repeat(65), ")".repeat(65));
    assert!(perr(&bad).message().contains("nesting"));
    let huge = format!("${{ {}", "(".repeat(100_000));
    assert!(Template::parse(&huge).is_err());
}

#[test]
fn render_errors() {
    assert!(rerr("${ div 1 0 }").message().contains("divide by zero"));
    assert!(rerr("${ mod 1 0 }").message().contains("divide by zero"));
    assert!(
        rerr(r#"${ mustToDate "2006-01-02" "x" }"#)
            .message()
            .starts_with("error calling mustToDate")
    );
    assert!(
        rerr("${ first 1 }")
            .message()
            .contains("Cannot find first on type int")
    );
    assert!(
        rerr(r#"${ mustFromJson "{" }"#)
            .message()
            .contains("mustFromJson")
    );
}

#[test]
fn limits() {
    assert!(
        rerr(r#"${ repeat 100000 "a" }"#)
            .message()
            .contains("limit")
    );
    assert!(
        rerr(r#"${ repeat 10000 "abcdefghij" }"#)
            .message()
            .contains("limit")
    );
    assert!(rerr("${ until 100000 }").message().contains("limit"));
    assert!(
        rerr("${ untilStep 0 1000000 1 }")
            .message()
            .contains("limit")
    );
    assert!(rerr("${ seq 100000 }").message().contains("limit"));
    assert!(rerr("${ randAlphaNum 20000 }").message().contains("limit"));
    assert!(rerr(r#"${ indent 20000 "a" }"#).message().contains("limit"));
    assert!(
        rerr(r#"${ replace "a" (repeat 1000 "b") (repeat 1000 "a") }"#)
            .message()
            .contains("limit")
    );
    assert!(
        rerr(r#"${ repeat 10000 "abcdef" | b64enc | b64enc }"#)
            .message()
            .contains("limit")
    );
    assert!(
        rerr(r#"${ printf "%99999999d" 1 }"#)
            .message()
            .contains("too large")
    );
    // The cumulative budget: many large values in one render.
    let many = vec![r#"${ repeat 6000 "0123456789" }"#; 100].join("");
    assert!(Template::parse(&many).unwrap().render(&ctx()).is_err());
    // Big-but-allowed values still work.
    assert_eq!(t(r#"${ repeat 6000 "0123456789" }"#).len(), 60000);
    assert!(Template::parse(&"x".repeat(70_000)).is_err());
}

// ------------------------------------------------------------------- dates

#[test]
fn go_layout_tokens() {
    let cases = [
        ("2006-01-02", "2024-03-05"),
        ("Mon Jan _2 15:04:05 2006", "Tue Mar  5 14:07:09 2024"),
        (
            "Monday, January 2, 2006 3:04:05 PM",
            "Tuesday, March 5, 2024 2:07:09 PM",
        ),
        ("06/1/2 03:4:5 pm", "24/3/5 02:7:9 pm"),
        ("2006-01-02T15:04:05.000Z07:00", "2024-03-05T14:07:09.123Z"),
        ("05.000000", "09.123456"),
        ("05.000000000", "09.123456789"),
        ("05.999", "09.123"),
        ("05,000", "09,123"),
        ("15:04 MST", "14:07 UTC"),
        (
            "-0700|-07:00|-07|Z0700|Z07:00|Z07",
            "+0000|+00:00|+00|Z|Z|Z",
        ),
        ("002 __2", "065  65"),
        ("Jan January Mon Monday", "Mar March Tue Tuesday"),
        ("_2006", "_2024"),
        ("literal: Janx", "literal: Janx"),
    ];
    for (layout, want) in cases {
        assert_eq!(golayout::format(&fixed(), layout), want, "{layout}");
    }
    let t = FixedOffset::east_opt(-(5 * 3600 + 30 * 60))
        .unwrap()
        .with_ymd_and_hms(2024, 12, 31, 0, 5, 0)
        .unwrap();
    assert_eq!(
        golayout::format(&t, "2006-01-02T15:04:05.999Z07:00 -0700 MST 3PM"),
        "2024-12-31T00:05:00-05:30 -0530 -0530 12AM"
    );
    assert_eq!(
        golayout::format(&fixed(), golayout::RFC3339_NANO),
        "2024-03-05T14:07:09.123456789Z"
    );
    let tenth = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .unwrap()
        .fixed_offset()
        + TimeDelta::milliseconds(100);
    assert_eq!(golayout::format(&tenth, "05.999"), "00.1");
    assert_eq!(golayout::format(&tenth, "05.000"), "00.100");
    let whole = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .unwrap()
        .fixed_offset();
    assert_eq!(golayout::format(&whole, "05.999"), "00");
}

#[test]
fn go_layout_parse() {
    let utc = FixedOffset::east_opt(0).unwrap();
    let p = |l: &str, v: &str| golayout::parse(l, v, utc);
    let t = p("2006-01-02T15:04:05Z07:00", "2024-01-02T03:04:05+02:00").unwrap();
    assert_eq!(t.to_rfc3339(), "2024-01-02T03:04:05+02:00");
    let t = p("2006-01-02T15:04:05Z07:00", "2024-01-02T03:04:05Z").unwrap();
    assert_eq!(t.to_rfc3339(), "2024-01-02T03:04:05+00:00");
    let t = p("2006-01-02 15:04:05", "2024-01-02 03:04:05.5").unwrap();
    assert_eq!(t.timestamp_subsec_millis(), 500);
    let t = p("Jan _2 2006 3:04PM", "Feb  9 2023 3:04PM").unwrap();
    assert_eq!(t.to_rfc3339(), "2023-02-09T15:04:00+00:00");
    let t = p("January 2, 06", "march 7, 99").unwrap();
    assert_eq!(t.to_rfc3339(), "1999-03-07T00:00:00+00:00");
    let t = p(
        "Mon, 02 Jan 2006 15:04:05 MST",
        "Tue, 05 Mar 2024 14:07:09 PST",
    )
    .unwrap();
    assert_eq!(t.to_rfc3339(), "2024-03-05T14:07:09+00:00");
    let t = p(
        "2006-01-02 15:04:05.000 -0700",
        "2024-03-05 14:07:09.250 -0330",
    )
    .unwrap();
    assert_eq!(t.to_rfc3339(), "2024-03-05T14:07:09.250-03:30");
    let t = p("15:04", "23:59").unwrap();
    assert_eq!(t.to_rfc3339(), "0000-01-01T23:59:00+00:00");
    assert!(p("2006-01-02", "2024-02-30").is_err());
    assert!(p("2006-01-02", "2024-13-01").is_err());
    assert!(p("2006-01-02", "2024-01-02x").is_err());
    assert!(p("2006-01-02", "24-01-02").is_err());
}

#[test]
fn go_durations() {
    let f = |ns: i64| golayout::format_duration(TimeDelta::nanoseconds(ns));
    assert_eq!(f(0), "0s");
    assert_eq!(f(1), "1ns");
    assert_eq!(f(1_500), "1.5µs");
    assert_eq!(f(1_500_000), "1.5ms");
    assert_eq!(f(100_000_000), "100ms");
    assert_eq!(f(1_500_000_000), "1.5s");
    assert_eq!(f(3_600_000_000_000), "1h0m0s");
    assert_eq!(f(3_723_500_000_000), "1h2m3.5s");
    assert_eq!(f(-90_000_000_000), "-1m30s");
    let p = |s: &str| golayout::parse_duration(s).map(|d| d.num_nanoseconds().unwrap());
    assert_eq!(p("1h30m"), Ok(5_400_000_000_000));
    assert_eq!(p("-1.5h"), Ok(-5_400_000_000_000));
    assert_eq!(p("300ms"), Ok(300_000_000));
    assert_eq!(p("2h45m10.5s"), Ok(9_910_500_000_000));
    assert_eq!(p("1µs"), Ok(1_000));
    assert_eq!(p("1us"), Ok(1_000));
    assert_eq!(p("0"), Ok(0));
    assert!(p("").is_err());
    assert!(p("1x").is_err());
    assert!(p("10").is_err());
    assert!(p("h").is_err());
}

#[test]
fn date_functions() {
    assert_eq!(ev("${ now }"), Value::Time(fixed()));
    assert_eq!(t("${ now }"), "2024-03-05 14:07:09.123456789 +0000 UTC");
    assert_eq!(r(r#"${ date "2006-01-02" now }"#), json!("2024-03-05"));
    assert_eq!(r(r#"${ date "2006-01-02" 0 }"#), json!("1970-01-01"));
    // A non-time falls back to now (sprig).
    assert_eq!(r(r#"${ date "2006" "garbage" }"#), json!(2024));
    assert_eq!(
        r(r#"${ dateInZone "2006-01-02 15:04 -07:00 MST" now "+05:30" }"#),
        json!("2024-03-05 19:37 +05:30 +0530")
    );
    assert_eq!(
        r(r#"${ dateInZone "15:04" now "Etc/GMT+5" }"#),
        json!("09:07")
    );
    assert_eq!(
        r(r#"${ dateInZone "15:04 MST" now "UTC" }"#),
        json!("14:07 UTC")
    );
    assert!(
        rerr(r#"${ dateInZone "15:04" now "Mars/Base" }"#)
            .message()
            .contains("unknown time zone")
    );
    assert_eq!(r("${ htmlDate now }"), json!("2024-03-05"));
    assert_eq!(
        r(r#"${ htmlDateInZone now "+10:00" }"#),
        json!("2024-03-06")
    );
    assert_eq!(
        r(r#"${ toDate "2006-01-02" "2024-02-29" | date "Jan 2, 2006" }"#),
        json!("Feb 29, 2024")
    );
    assert_eq!(
        r(r#"${ toDate "2006-01-02" "bad" | date "2006-01-02" }"#),
        json!("0001-01-01")
    );
    assert_eq!(
        r(
            r#"${ mustToDate "2006-01-02T15:04:05Z07:00" "2024-01-02T03:04:05+02:00" | date "2006-01-02T15:04:05Z07:00" }"#
        ),
        json!("2024-01-02T01:04:05Z")
    );
    assert!(
        rerr(r#"${ mustToDate "2006-01-02" "bad" }"#)
            .message()
            .contains("cannot parse")
    );
    assert_eq!(
        r(r#"${ dateModify "1h30m" now | date "15:04" }"#),
        json!("15:37")
    );
    assert_eq!(
        r(r#"${ now | dateModify "-24h" | htmlDate }"#),
        json!("2024-03-04")
    );
    assert_eq!(
        r(r#"${ now | date_modify "-1.5h" | date "15:04" }"#),
        json!("12:37")
    );
    assert_eq!(
        r(r#"${ dateModify "nonsense" now | date "15:04" }"#),
        json!("14:07")
    );
    assert!(
        rerr(r#"${ mustDateModify "nonsense" now }"#)
            .message()
            .contains("invalid duration")
    );
    assert!(
        rerr(r#"${ dateModify "1h" "not a time" }"#)
            .message()
            .contains("time.Time")
    );
    assert_eq!(
        r(r#"${ toDate "2006-01-02T15:04:05Z07:00" "2024-03-05T12:37:09Z" | ago }"#),
        json!("1h30m0s")
    );
    assert_eq!(r("${ ago now }"), json!("0s"));
    assert_eq!(r("${ duration 95 }"), json!("1m35s"));
    assert_eq!(r(r#"${ duration "3600" }"#), json!("1h0m0s"));
    assert_eq!(r("${ duration 0 }"), json!("0s"));
    assert_eq!(r(r#"${ durationRound "2h10m" }"#), json!("2h"));
    assert_eq!(r(r#"${ durationRound "400h" }"#), json!("16d"));
    assert_eq!(r(r#"${ durationRound "800h" }"#), json!("1mo"));
    assert_eq!(r(r#"${ durationRound "9000h" }"#), json!("1y"));
    assert_eq!(r(r#"${ durationRound "61s" }"#), json!("1m"));
    assert_eq!(r(r#"${ durationRound "1s" }"#), json!("0s"));
    assert_eq!(r("${ durationRound 3600000000001 }"), json!("1h"));
    assert_eq!(
        r(r#"${ toDate "2006-01-02" "2024-03-01" | durationRound }"#),
        json!("4d")
    );
    assert_eq!(r("${ unixEpoch now }"), json!(1_709_647_629));
    assert_eq!(
        r("${ .Client.CreatedAt | unixEpoch }"),
        json!(1_704_164_645)
    );
    assert_eq!(
        r(r#"${ .Client.CreatedAt | date "2006-01-02T15:04:05Z07:00" }"#),
        json!("2024-01-02T03:04:05Z")
    );
}

// ----------------------------------------------------------------- strings

#[test]
fn string_functions() {
    assert_eq!(r(r#"${ abbrev 5 "hello world" }"#), json!("he..."));
    assert_eq!(r(r#"${ abbrev 20 "hello world" }"#), json!("hello world"));
    assert_eq!(
        r(r#"${ abbrevboth 5 10 "1234 5678 9123" }"#),
        json!("...5678...")
    );
    assert_eq!(r(r#"${ trunc 5 "hello world" }"#), json!("hello"));
    assert_eq!(r(r#"${ trunc -5 "hello world" }"#), json!("world"));
    assert_eq!(r(r#"${ trunc 50 "hi" }"#), json!("hi"));
    assert_eq!(r(r#"${ trim "   hello    " }"#), json!("hello"));
    assert_eq!(r(r#"${ upper "hello" }"#), json!("HELLO"));
    assert_eq!(r(r#"${ lower "HELLO" }"#), json!("hello"));
    assert_eq!(
        r(r#"${ title "hello world-wide web_x" }"#),
        json!("Hello World-Wide Web_x")
    );
    assert_eq!(r(r#"${ untitle "Hello World" }"#), json!("hello world"));
    assert_eq!(r(r#"${ substr 0 5 "hello world" }"#), json!("hello"));
    assert_eq!(r(r#"${ substr 6 -1 "hello world" }"#), json!("world"));
    assert_eq!(r(r#"${ substr -1 5 "hello world" }"#), json!("hello"));
    assert!(
        rerr(r#"${ substr 5 2 "hello" }"#)
            .message()
            .contains("out of range")
    );
    assert_eq!(r(r#"${ repeat 3 "hello" }"#), json!("hellohellohello"));
    assert_eq!(r(r#"${ repeat -1 "x" }"#), json!(""));
    assert_eq!(t(r#"${ trimAll "$" "$5.00$" }"#), "5.00");
    assert_eq!(r(r#"${ trimSuffix "-" "hello-" }"#), json!("hello"));
    assert_eq!(r(r#"${ trimPrefix "-" "-hello" }"#), json!("hello"));
    assert_eq!(r(r#"${ nospace "hello w o r l d" }"#), json!("helloworld"));
    assert_eq!(r(r#"${ initials "First Try" }"#), json!("FT"));
    assert_eq!(
        r(r#"${ swapcase "This Is A.Test" }"#),
        json!("tHIS iS a.tEST")
    );
    let mut sh: Vec<char> = t(r#"${ shuffle "hello" }"#).chars().collect();
    sh.sort_unstable();
    assert_eq!(sh.into_iter().collect::<String>(), "ehllo");
    assert_eq!(r(r#"${ snakecase "FirstName" }"#), json!("first_name"));
    assert_eq!(r(r#"${ snakecase "HTTPServer" }"#), json!("http_server"));
    assert_eq!(r(r#"${ snakecase "NoHTTPS" }"#), json!("no_https"));
    assert_eq!(r(r#"${ snakecase "GO-PATH here" }"#), json!("go_path_here"));
    assert_eq!(r(r#"${ kebabcase "FirstName" }"#), json!("first-name"));
    assert_eq!(r(r#"${ camelcase "http_server" }"#), json!("HttpServer"));
    assert_eq!(
        r(r#"${ camelcase "_complex__case_" }"#),
        json!("_ComplexCase_")
    );
    assert_eq!(r(r#"${ wrap 5 "Hello World" }"#), json!("Hello\nWorld"));
    assert_eq!(
        r(r#"${ wrap 12 "aa bb cc dd ee" }"#),
        json!("aa bb cc dd\nee")
    );
    assert_eq!(
        r(r#"${ wrapWith 5 "\t" "Hello World" }"#),
        json!("Hello\tWorld")
    );
    assert_eq!(r(r#"${ wrapWith 3 "|" "abcdefg" }"#), json!("abc|def|g"));
    assert_eq!(r(r#"${ contains "cat" "catch" }"#), json!(true));
    assert_eq!(r(r#"${ contains "dog" "catch" }"#), json!(false));
    assert_eq!(r(r#"${ hasPrefix "cat" "catch" }"#), json!(true));
    assert_eq!(r(r#"${ hasSuffix "ch" "catch" }"#), json!(true));
    assert_eq!(
        r(r#"${ quote "hi \"x\"" 1 nil }"#),
        json!(r#""hi \"x\"" "1""#)
    );
    assert_eq!(r(r#"${ squote "hi" 2 }"#), json!("'hi' '2'"));
    assert_eq!(
        r(r#"${ cat "hello" "beautiful" nil "world" 1 }"#),
        json!("hello beautiful world 1")
    );
    assert_eq!(r(r#"${ indent 4 "a\nb" }"#), json!("    a\n    b"));
    assert_eq!(r(r#"${ nindent 2 "a\nb" }"#), json!("\n  a\n  b"));
    assert_eq!(
        r(r#"${ "I Am Henry VIII" | replace " " "-" }"#),
        json!("I-Am-Henry-VIII")
    );
    assert_eq!(
        r(r#"${ plural "one anchovy" "many anchovies" 1 }"#),
        json!("one anchovy")
    );
    assert_eq!(
        r(r#"${ plural "one anchovy" "many anchovies" 2 }"#),
        json!("many anchovies")
    );
}

#[test]
fn random_strings() {
    let s = t("${ randAlpha 32 }");
    assert_eq!(s.len(), 32);
    assert!(s.chars().all(|c| c.is_ascii_alphabetic()));
    let s = t("${ randNumeric 32 }");
    assert_eq!(s.len(), 32);
    assert!(s.chars().all(|c| c.is_ascii_digit()));
    let s = t("${ randAscii 64 }");
    assert_eq!(s.len(), 64);
    assert!(s.bytes().all(|c| (32..=126).contains(&c)));
    assert_eq!(t("${ randAlphaNum 0 }"), "");
}

#[test]
fn hashes() {
    assert_eq!(
        r(r#"${ sha1sum "Hello world!" }"#),
        json!("d3486ae9136e7856bc42212385ea797094475802")
    );
    assert_eq!(
        r(r#"${ sha256sum "Hello world!" }"#),
        json!("c0535e4be2b79ffd93291305436bf889314e4a3faec05ecffcbb7df31ad9e51a")
    );
    assert_eq!(r(r#"${ adler32sum "Hello world!" }"#), json!(487_130_206));
    assert_eq!(
        ev(r#"${ adler32sum "Hello world!" }"#),
        Value::from("487130206")
    );
}

#[test]
fn conversions() {
    assert_eq!(ev("${ toString 5 }"), Value::from("5"));
    assert_eq!(ev("${ toString 1.5 }"), Value::from("1.5"));
    assert_eq!(ev("${ toString nil }"), Value::from(""));
    assert_eq!(ev(r#"${ atoi "42" }"#), Value::Int(42));
    assert_eq!(ev(r#"${ atoi "-42" }"#), Value::Int(-42));
    assert_eq!(ev(r#"${ atoi "garbage" }"#), Value::Int(0));
    assert_eq!(ev(r#"${ atoi "0x10" }"#), Value::Int(0));
    assert_eq!(ev(r#"${ int64 "0x10" }"#), Value::Int(16));
    assert_eq!(ev(r#"${ int "3.0" }"#), Value::Int(3));
    assert_eq!(ev("${ int 3.9 }"), Value::Int(3));
    assert_eq!(ev("${ int true }"), Value::Int(1));
    assert_eq!(ev(r#"${ int "x" }"#), Value::Int(0));
    assert_eq!(ev(r#"${ float64 "1.5" }"#), Value::Float(1.5));
    assert_eq!(ev("${ float64 2 }"), Value::Float(2.0));
    assert_eq!(ev(r#"${ toDecimal "0777" }"#), Value::Int(511));
    assert_eq!(ev(r#"${ toDecimal "9" }"#), Value::Int(0));
    assert_eq!(
        ev("${ toStrings (list 1 2 nil 3) }"),
        strs(&["1", "2", "3"])
    );
    assert_eq!(ev("${ toStrings 7 }"), strs(&["7"]));
}

#[test]
fn seq_until() {
    assert_eq!(t("${ seq 5 }"), "1 2 3 4 5");
    assert_eq!(t("${ seq -3 }"), "1 0 -1 -2 -3");
    assert_eq!(t("${ seq 0 2 }"), "0 1 2");
    assert_eq!(t("${ seq 2 -2 }"), "2 1 0 -1 -2");
    assert_eq!(t("${ seq 0 2 10 }"), "0 2 4 6 8 10");
    assert_eq!(t("${ seq 0 -2 -5 }"), "0 -2 -4");
    assert_eq!(t("${ seq 5 1 0 }"), "");
    assert_eq!(t("${ seq }"), "");
    assert_eq!(ev("${ until 5 }"), ints(&[0, 1, 2, 3, 4]));
    assert_eq!(ev("${ until -3 }"), ints(&[0, -1, -2]));
    assert_eq!(ev("${ until 0 }"), ints(&[]));
    assert_eq!(ev("${ untilStep 3 6 2 }"), ints(&[3, 5]));
    assert_eq!(ev("${ untilStep 10 0 -3 }"), ints(&[10, 7, 4, 1]));
    assert_eq!(ev("${ untilStep 0 10 0 }"), ints(&[]));
    assert_eq!(r("${ until 3 }"), json!([0, 1, 2]));
}

#[test]
fn split_join() {
    let m = ev(r#"${ split "$" "foo$bar$baz" }"#);
    assert_eq!(m, Value::map([("_0", "foo"), ("_1", "bar"), ("_2", "baz")]));
    assert_eq!(r(r#"${ (split "$" "foo$bar$baz")._1 }"#), json!("bar"));
    assert_eq!(r(r#"${ split "." "a.b" }"#), json!({"_0": "a", "_1": "b"}));
    assert_eq!(
        ev(r#"${ splitList "$" "foo$bar$baz" }"#),
        strs(&["foo", "bar", "baz"])
    );
    assert_eq!(ev(r#"${ splitList "" "abc" }"#), strs(&["a", "b", "c"]));
    assert_eq!(
        ev(r#"${ splitn "$" 2 "foo$bar$baz" }"#),
        Value::map([("_0", "foo"), ("_1", "bar$baz")])
    );
    assert_eq!(r(r#"${ join "-" (list "a" "b" 3) }"#), json!("a-b-3"));
    assert_eq!(
        r(r#"${ .Client.ResponseTypes | join " " }"#),
        json!("code token")
    );
    assert_eq!(r(r#"${ join "," "solo" }"#), json!("solo"));
    assert_eq!(
        ev(r#"${ sortAlpha (list "c" "a" "b" 10) }"#),
        strs(&["10", "a", "b", "c"])
    );
}

// -------------------------------------------------------------------- math

#[test]
fn math_functions() {
    assert_eq!(ev("${ add1 3 }"), Value::Int(4));
    assert_eq!(ev("${ add 1 2 3 }"), Value::Int(6));
    assert_eq!(ev(r#"${ add "2" 2.9 }"#), Value::Int(4));
    assert_eq!(ev("${ sub 5 2 }"), Value::Int(3));
    assert_eq!(ev("${ div 7 2 }"), Value::Int(3));
    assert_eq!(ev("${ mod 7 2 }"), Value::Int(1));
    assert_eq!(ev("${ mul 2 3 4 }"), Value::Int(24));
    for _ in 0..20 {
        let Value::Int(n) = ev("${ randInt 1 5 }") else {
            panic!("randInt")
        };
        assert!((1..5).contains(&n));
    }
    assert!(rerr("${ randInt 5 5 }").message().contains("invalid range"));
    assert_eq!(ev("${ add1f 1.5 }"), Value::Float(2.5));
    assert_eq!(ev("${ addf 0.1 0.2 }"), Value::Float(0.3));
    assert_eq!(ev("${ addf 1.5 2 1 }"), Value::Float(4.5));
    assert_eq!(ev("${ subf 1.5 0.5 }"), Value::Float(1.0));
    assert_eq!(ev("${ subf 0.3 0.1 }"), Value::Float(0.2));
    assert_eq!(ev("${ mulf 1.1 1.1 }"), Value::Float(1.21));
    assert_eq!(ev("${ divf 1 3 }"), Value::Float(0.3333333333333333));
    assert_eq!(ev("${ divf 10 4 }"), Value::Float(2.5));
    assert!(rerr("${ divf 1 0 }").message().contains("division by 0"));
    assert_eq!(ev("${ biggest 1 5 3 }"), Value::Int(5));
    assert_eq!(ev("${ max 1 5 3 }"), Value::Int(5));
    assert_eq!(ev("${ min 3 1 2 }"), Value::Int(1));
    assert_eq!(ev("${ maxf 1.5 2.5 0 }"), Value::Float(2.5));
    assert_eq!(ev("${ minf 1.5 2.5 -1 }"), Value::Float(-1.0));
    assert_eq!(ev("${ ceil 1.1 }"), Value::Float(2.0));
    assert_eq!(ev("${ floor 1.9 }"), Value::Float(1.0));
    assert_eq!(ev("${ round 1.23456 2 }"), Value::Float(1.23));
    assert_eq!(ev("${ round 1.25 1 }"), Value::Float(1.3));
    assert_eq!(ev("${ round 2.5 0 }"), Value::Float(3.0));
    assert_eq!(ev("${ round 1.24 1 0.4 }"), Value::Float(1.3));
    assert_eq!(r("${ ceil 1.1 }"), json!(2));
    assert_eq!(t("${ 1000000.0 }"), "1e+06");
    assert_eq!(t("${ 123456.0 }"), "123456");
    assert_eq!(t("${ 0.00001 }"), "1e-05");
    assert_eq!(t("${ 0.0001 }"), "0.0001");
    assert_eq!(t("${ divf 1 3 }"), "0.3333333333333333");
}

// --------------------------------------------------------- defaults / JSON

#[test]
fn default_and_empty() {
    assert_eq!(r(r#"${ default "foo" .Nope }"#), json!("foo"));
    assert_eq!(r(r#"${ default "foo" "bar" }"#), json!("bar"));
    assert_eq!(r(r#"${ default "foo" "" }"#), json!("foo"));
    assert_eq!(r(r#"${ 0 | default 7 }"#), json!(7));
    assert_eq!(r(r#"${ false | default "f" }"#), json!("f"));
    assert_eq!(r(r#"${ list | default "none" }"#), json!("none"));
    assert_eq!(r(r#"${ dict | default "none" }"#), json!("none"));
    assert_eq!(r(r#"${ default "only" }"#), json!("only"));
    assert_eq!(
        r(r#"${ .Client.AllowAllScopes | default "x" }"#),
        json!(true)
    );
    assert_eq!(ev("${ empty .Nope }"), Value::Bool(true));
    assert_eq!(ev(r#"${ empty "" }"#), Value::Bool(true));
    assert_eq!(ev("${ empty 0 }"), Value::Bool(true));
    assert_eq!(ev("${ empty 0.0 }"), Value::Bool(true));
    assert_eq!(ev("${ empty (list) }"), Value::Bool(true));
    assert_eq!(ev("${ empty .Client.Name }"), Value::Bool(false));
    assert_eq!(ev("${ empty now }"), Value::Bool(false));
    assert_eq!(
        r(r#"${ coalesce .Nope "" 0 "first" "second" }"#),
        json!("first")
    );
    assert_eq!(ev("${ coalesce .Nope 0 }"), Value::Nil);
    assert_eq!(ev(r#"${ all 1 "a" true }"#), Value::Bool(true));
    assert_eq!(ev(r#"${ all 1 "" true }"#), Value::Bool(false));
    assert_eq!(ev(r#"${ any 0 "" "x" }"#), Value::Bool(true));
    assert_eq!(ev(r#"${ any 0 "" nil }"#), Value::Bool(false));
    assert_eq!(
        r(r#"${ compact (list 1 "" nil 0 "a" false) }"#),
        json!([1, "a"])
    );
    assert!(
        rerr("${ mustCompact 1 }")
            .message()
            .contains("Cannot compact")
    );
    assert_eq!(r(r#"${ ternary "yes" "no" true }"#), json!("yes"));
    assert_eq!(r(r#"${ false | ternary "yes" "no" }"#), json!("no"));
    assert_eq!(r(r#"${ deepCopy (dict "a" 1) }"#), json!({"a": 1}));
    assert_eq!(r(r#"${ mustDeepCopy (list 1) }"#), json!([1]));
    assert!(
        rerr("${ mustDeepCopy nil }")
            .message()
            .contains("Invalid value")
    );
}

#[test]
fn json_functions() {
    assert_eq!(
        t(r#"${ toJson (dict "b" "<x>&" "a" 1.5 "c" (list 1 true nil) "d" 3.0) }"#),
        r#"{"a":1.5,"b":"\u003cx\u003e\u0026","c":[1,true,null],"d":3}"#
    );
    assert_eq!(t(r#"${ toRawJson (dict "b" "<x>") }"#), r#"{"b":"<x>"}"#);
    assert_eq!(t(r#"${ mustToRawJson "a\nb" }"#), r#""a\nb""#);
    assert_eq!(t(r#"${ mustToJson (list) }"#), "[]");
    assert_eq!(
        t(r#"${ toPrettyJson (dict "a" 1 "b" (list 1 2) "c" (dict)) }"#),
        "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ],\n  \"c\": {}\n}"
    );
    assert_eq!(t(r#"${ mustToPrettyJson "x" }"#), "\"x\"");
    assert_eq!(t("${ toJson .Client.Labels }"), r#"{"tier":"gold"}"#);
    // A whole-value toJson string is parsed back into JSON by inference.
    assert_eq!(r("${ toJson .Client.Labels }"), json!({"tier": "gold"}));
    assert_eq!(t("${ toJson 1e21 }"), "1e+21");
    assert_eq!(t("${ toJson 0.000001 }"), "0.000001");
    assert_eq!(t("${ toJson now }"), "\"2024-03-05T14:07:09.123456789Z\"");
    assert_eq!(
        t("${ toJson (divf 1.0 0.0000000000000000000000000000001) }"),
        "1e+31"
    );
    assert_eq!(
        ev(r#"${ fromJson "{\"a\":[1,2.5,\"x\"],\"b\":null}" }"#),
        Value::map([
            (
                "a",
                Value::list([Value::Int(1), Value::Float(2.5), Value::from("x")]),
            ),
            ("b", Value::Nil),
        ])
    );
    assert_eq!(r(r#"${ (fromJson "{\"a\":{\"b\":7}}").a.b }"#), json!(7));
    assert_eq!(ev(r#"${ fromJson "{bad" }"#), Value::Nil);
    assert_eq!(ev(r#"${ mustFromJson "[1]" }"#), ints(&[1]));
    assert!(
        rerr(r#"${ mustFromJson "{bad" }"#)
            .message()
            .contains("key must be a string")
    );
}

// ------------------------------------------------------------------- paths

#[test]
fn path_functions() {
    assert_eq!(r(r#"${ base "foo/bar/baz" }"#), json!("baz"));
    assert_eq!(r(r#"${ base "/foo/bar/" }"#), json!("bar"));
    assert_eq!(r(r#"${ base "" }"#), json!("."));
    assert_eq!(r(r#"${ base "///" }"#), json!("/"));
    assert_eq!(r(r#"${ dir "foo/bar/baz" }"#), json!("foo/bar"));
    assert_eq!(r(r#"${ dir "baz" }"#), json!("."));
    assert_eq!(r(r#"${ dir "/baz" }"#), json!("/"));
    assert_eq!(r(r#"${ clean "foo/bar/../baz" }"#), json!("foo/baz"));
    assert_eq!(r(r#"${ clean "/../a//b/./c/" }"#), json!("/a/b/c"));
    assert_eq!(r(r#"${ clean "../../a" }"#), json!("../../a"));
    assert_eq!(r(r#"${ clean "" }"#), json!("."));
    assert_eq!(r(r#"${ ext "foo.bar" }"#), json!(".bar"));
    assert_eq!(r(r#"${ ext "a.b/c" }"#), json!(""));
    assert_eq!(r(r#"${ isAbs "/foo" }"#), json!(true));
    assert_eq!(r(r#"${ isAbs "foo" }"#), json!(false));
}

// ---------------------------------------------------------------- encoding

#[test]
fn encoding_functions() {
    assert_eq!(r(r#"${ b64enc "hello" }"#), json!("aGVsbG8="));
    assert_eq!(r(r#"${ b64dec "aGVsbG8=" }"#), json!("hello"));
    assert_eq!(
        r(r#"${ b64dec "!!" }"#),
        json!("illegal base64 data at input byte 0")
    );
    assert_eq!(r(r#"${ b32enc "hello" }"#), json!("NBSWY3DP"));
    assert_eq!(r(r#"${ b32enc "a" }"#), json!("ME======"));
    assert_eq!(r(r#"${ b32enc "abcdefgh" }"#), json!("MFRGGZDFMZTWQ==="));
    assert_eq!(r(r#"${ b32dec "NBSWY3DP" }"#), json!("hello"));
    assert_eq!(r(r#"${ b32dec "MFRGGZDFMZTWQ===" }"#), json!("abcdefgh"));
    assert_eq!(r(r#"${ b32dec "ME======" }"#), json!("a"));
    assert_eq!(
        r(r#"${ b32dec "M1======" }"#),
        json!("illegal base32 data at input byte 1")
    );
    assert_eq!(
        r(r#"${ .Client.Name | b64enc | b64dec }"#),
        json!("Billing App")
    );
}

// ------------------------------------------------------- data structures

#[test]
fn list_functions() {
    assert_eq!(r(r#"${ list 1 2 3 }"#), json!([1, 2, 3]));
    assert_eq!(r(r#"${ tuple "a" 1 }"#), json!(["a", 1]));
    assert_eq!(r("${ append (list 1 2) 3 }"), json!([1, 2, 3]));
    assert_eq!(r("${ mustAppend (list 1 2) 3 }").to_string(), "[1,2,3]");
    // Go rule: the piped list becomes the *last* argument, so this is wrong.
    assert!(
        rerr("${ list 1 2 | mustAppend 3 }")
            .message()
            .contains("Cannot push on type int")
    );
    assert_eq!(r("${ push (list 1) 2 }"), json!([1, 2]));
    assert_eq!(r("${ prepend (list 1 2) 0 }"), json!([0, 1, 2]));
    assert_eq!(r("${ mustPrepend (list) 0 }"), json!([0]));
    assert_eq!(r("${ first (list 1 2 3) }"), json!(1));
    assert_eq!(ev("${ first (list) }"), Value::Nil);
    assert_eq!(r("${ mustFirst (list 1 2 3) }"), json!(1));
    assert_eq!(r("${ rest (list 1 2 3) }"), json!([2, 3]));
    assert_eq!(r("${ mustRest (list 1) }"), json!([]));
    assert_eq!(r("${ last (list 1 2 3) }"), json!(3));
    assert_eq!(r("${ mustLast (list 1 2 3) }"), json!(3));
    assert_eq!(r("${ initial (list 1 2 3) }"), json!([1, 2]));
    assert_eq!(r("${ mustInitial (list 1 2 3) }"), json!([1, 2]));
    assert_eq!(r("${ reverse (list 1 2 3) }"), json!([3, 2, 1]));
    assert_eq!(r("${ mustReverse (list) }"), json!([]));
    assert_eq!(r(r#"${ uniq (list 1 1 "1" 2 1) }"#), json!([1, "1", 2]));
    assert_eq!(r("${ mustUniq (list 1 1) }"), json!([1]));
    // Items equal in depth are one item, whatever their order in the list; an int and a
    // float are never equal (Go's DeepEqual compares types first).
    assert_eq!(
        r(
            r#"${ uniq (list (dict "a" (list 1 2)) 1.5 (dict "a" (list 1 2)) (dict "a" (list 2 1)) 1.5 1 1.0 (list nil) (list nil)) }"#
        ),
        json!([{"a": [1, 2]}, 1.5, {"a": [2, 1]}, 1, 1.0, [null]])
    );
    assert_eq!(
        r("${ uniq (concat (until 3000) (until 3000) (list 2999)) | len }"),
        json!(3000)
    );
    assert_eq!(
        r("${ uniq (concat (until 3000) (until 3000)) | last }"),
        json!(2999)
    );
    assert_eq!(r("${ without (list 1 2 3 4) 1 3 }"), json!([2, 4]));
    assert_eq!(r("${ mustWithout (list 1 2) 5 }"), json!([1, 2]));
    assert_eq!(r("${ has 4 (list 1 2 3 4) }"), json!(true));
    assert_eq!(r(r#"${ has "x" (list 1 2) }"#), json!(false));
    assert_eq!(
        r(r#"${ .Client.GrantTypes | has "client_credentials" }"#),
        json!(true)
    );
    assert_eq!(r("${ mustHas 1 nil }"), json!(false));
    assert_eq!(r("${ slice (list 1 2 3 4) 1 3 }"), json!([2, 3]));
    assert_eq!(r("${ slice (list 1 2 3 4) 2 }"), json!([3, 4]));
    assert_eq!(r("${ slice (list 1 2 3 4) }"), json!([1, 2, 3, 4]));
    assert!(
        rerr("${ mustSlice (list 1 2) 1 5 }")
            .message()
            .contains("out of range")
    );
    assert_eq!(
        r("${ concat (list 1 2) (list 3) (list) }"),
        json!([1, 2, 3])
    );
    assert_eq!(
        r("${ chunk 2 (list 1 2 3 4 5) }"),
        json!([[1, 2], [3, 4], [5]])
    );
    assert_eq!(r("${ mustChunk 3 (list 1 2) }"), json!([[1, 2]]));
    assert!(rerr("${ chunk 0 (list 1) }").message().contains("positive"));
    for f in [
        "mustAppend 1 2",
        "mustPrepend 1 2",
        "mustFirst 1",
        "mustRest 1",
        "mustLast 1",
        "mustInitial 1",
        "mustReverse 1",
        "mustUniq 1",
        "mustWithout 1 2",
        "mustHas 1 2",
        "mustSlice 1",
        "concat 1",
        "mustChunk 1 2",
    ] {
        let e = rerr(&format!("${{ {f} }}"));
        assert!(e.message().contains("on type int"), "{f}: {e}");
    }
    assert_eq!(
        t("${ list 1 (list 2 3) (dict \"k\" nil) }"),
        "[1 [2 3] map[k:<nil>]]"
    );
}

#[test]
fn dict_functions() {
    assert_eq!(
        r(r#"${ dict "a" 1 "b" "two" }"#),
        json!({"a": 1, "b": "two"})
    );
    assert_eq!(r(r#"${ dict "a" 1 "odd" }"#), json!({"a": 1, "odd": ""}));
    assert_eq!(r(r#"${ dict 1 2 }"#), json!({"1": 2}));
    assert_eq!(r(r#"${ get (dict "a" 1) "a" }"#), json!(1));
    assert_eq!(r(r#"${ get (dict "a" 1) "zz" }"#), json!(""));
    assert_eq!(r(r#"${ set (dict "a" 1) "b" 2 }"#), json!({"a": 1, "b": 2}));
    assert_eq!(r(r#"${ unset (dict "a" 1 "b" 2) "a" }"#), json!({"b": 2}));
    assert_eq!(r(r#"${ hasKey (dict "a" 1) "a" }"#), json!(true));
    assert_eq!(
        r(r#"${ hasKey .Client.Labels "environment" }"#),
        json!(false)
    );
    assert_eq!(
        r(r#"${ pluck "name" (dict "name" "a") (dict "x" 1) (dict "name" "b") }"#),
        json!(["a", "b"])
    );
    assert_eq!(
        r(r#"${ keys (dict "b" 1 "a" 2) (dict "c" 3) }"#),
        json!(["a", "b", "c"])
    );
    assert_eq!(
        r(r#"${ keys .Client.Labels | sortAlpha }"#),
        json!(["tier"])
    );
    assert_eq!(r(r#"${ values (dict "b" 1 "a" 2) }"#), json!([2, 1]));
    assert_eq!(
        r(r#"${ pick (dict "a" 1 "b" 2 "c" 3) "a" "c" }"#),
        json!({"a": 1, "c": 3})
    );
    assert_eq!(
        r(r#"${ omit (dict "a" 1 "b" 2 "c" 3) "a" "c" }"#),
        json!({"b": 2})
    );
    let dst = r#"(dict "a" 1 "e" "" "n" (dict "x" 1))"#;
    let src = r#"(dict "a" 2 "b" 3 "e" "filled" "n" (dict "x" 9 "y" 2))"#;
    assert_eq!(
        r(&format!("${{ merge {dst} {src} }}")),
        json!({"a": 1, "b": 3, "e": "filled", "n": {"x": 1, "y": 2}})
    );
    assert_eq!(
        r(&format!("${{ mustMerge {dst} {src} }}")),
        json!({"a": 1, "b": 3, "e": "filled", "n": {"x": 1, "y": 2}})
    );
    assert_eq!(
        r(&format!("${{ mergeOverwrite {dst} {src} }}")),
        json!({"a": 2, "b": 3, "e": "filled", "n": {"x": 9, "y": 2}})
    );
    assert_eq!(
        r(&format!("${{ mustMergeOverwrite {dst} (dict \"a\" 0) }}")),
        json!({"a": 1, "e": "", "n": {"x": 1}})
    );
    assert!(
        rerr(r#"${ mustMerge (dict) 1 }"#)
            .message()
            .contains("expected a dict")
    );
    let nested = r#"(dict "a" (dict "b" (dict "c" "found")))"#;
    assert_eq!(
        r(&format!(r#"${{ dig "a" "b" "c" "dflt" {nested} }}"#)),
        json!("found")
    );
    assert_eq!(
        r(&format!(r#"${{ dig "a" "x" "c" "dflt" {nested} }}"#)),
        json!("dflt")
    );
    assert_eq!(
        r(&format!(r#"${{ {nested} | dig "a" "b" "dflt" }}"#)),
        json!({"c": "found"})
    );
    assert_eq!(r(r#"${ dig "tier" "none" .Client.Labels }"#), json!("gold"));
}

// ---------------------------------------------------------------- URLs

#[test]
fn url_functions() {
    let parsed = r(r#"${ urlParse "proto://auth@host:80/path?query#fragment" }"#);
    assert_eq!(
        parsed,
        json!({
            "fragment": "fragment", "host": "host:80", "hostname": "host", "opaque": "",
            "path": "/path", "query": "query", "scheme": "proto", "userinfo": "auth"
        })
    );
    assert_eq!(
        r(r#"${ (urlParse .AuthServer.Audience).hostname }"#),
        json!("api.example.com")
    );
    assert_eq!(
        r(r#"${ (urlParse "mailto:a@b.c").opaque }"#),
        json!("a@b.c")
    );
    assert_eq!(r(r#"${ (urlParse "/rel/p%20x").path }"#), json!("/rel/p x"));
    assert_eq!(
        r(r#"${ (urlParse "http://[::1]:8080/").hostname }"#),
        json!("::1")
    );
    assert!(
        rerr(r#"${ urlParse ":nope" }"#)
            .message()
            .contains("missing protocol scheme")
    );
    assert_eq!(
        r(
            r#"${ urlJoin (dict "fragment" "fragment" "host" "host:80" "path" "/path" "query" "query" "scheme" "http") }"#
        ),
        json!("http://host:80/path?query#fragment")
    );
    assert_eq!(
        r(r#"${ urlJoin (dict "scheme" "https" "host" "x.io" "path" "a b" "userinfo" "u:p") }"#),
        json!("https://u:p@x.io/a%20b")
    );
    assert_eq!(
        r(r#"${ urlParse "https://u@x.io/p?q=1#f" | urlJoin }"#),
        json!("https://u@x.io/p?q=1#f")
    );
}

// ---------------------------------------------------------- Go builtins

#[test]
fn go_builtins() {
    assert_eq!(ev(r#"${ and 1 "a" 0 }"#), Value::Int(0));
    assert_eq!(ev(r#"${ and 1 "a" }"#), Value::from("a"));
    assert_eq!(ev(r#"${ or 0 "" "x" }"#), Value::from("x"));
    assert_eq!(
        ev(r#"${ or .Client.Labels.env "dflt" }"#),
        Value::from("dflt")
    );
    assert_eq!(ev("${ not 0 }"), Value::Bool(true));
    assert_eq!(ev(r#"${ len "héllo" }"#), Value::Int(6));
    assert_eq!(ev("${ len .Client.RedirectURIs }"), Value::Int(2));
    assert!(rerr("${ len 3 }").message().contains("len of type int"));
    assert_eq!(
        ev(r#"${ index .Client.RedirectURIs 1 }"#),
        Value::from("https://b.example/cb")
    );
    assert_eq!(
        ev(r#"${ index .Client.Labels "tier" }"#),
        Value::from("gold")
    );
    assert_eq!(ev(r#"${ index .Client.Labels "zz" }"#), Value::Nil);
    assert!(
        rerr(r#"${ index .Client.RedirectURIs 5 }"#)
            .message()
            .contains("out of range")
    );
    assert_eq!(t(r#"${ print "a" 1 2 "b" }"#), "a1 2b");
    assert_eq!(t(r#"${ println "a" 1 }"#), "a 1\n");
    assert_eq!(
        t(
            r#"${ printf "%s=%d %05.2f|%-4s|%4s|%x|%q|%v|%t|%%|%c" "k" 42 3.14159 "ab" "cd" 255 "q" (list 1) true 65 }"#
        ),
        "k=42 03.14|ab  |  cd|ff|\"q\"|[1]|true|%|A"
    );
    assert_eq!(t(r#"${ printf "%d %s" 1 }"#), "1 %!s(MISSING)");
    assert_eq!(t(r#"${ printf "%d" 1 2 }"#), "1%!(EXTRA int=2)");
    assert_eq!(t(r#"${ printf "%d" "x" }"#), "%!d(string=x)");
    assert_eq!(t(r#"${ printf "%e" 1234.5 }"#), "1.234500e+03");
    assert!(perr("${ eq 1 }").message().contains("want at least 2"));
    assert_eq!(ev("${ eq 1 1 }"), Value::Bool(true));
    assert_eq!(ev("${ eq 1 2 3 1 }"), Value::Bool(true));
    assert_eq!(ev("${ eq 1 1.0 }"), Value::Bool(true));
    assert_eq!(
        ev(r#"${ eq .Client.Name "Billing App" }"#),
        Value::Bool(true)
    );
    assert_eq!(ev(r#"${ ne "a" "b" }"#), Value::Bool(true));
    assert_eq!(ev("${ lt 1 2 }"), Value::Bool(true));
    assert_eq!(ev("${ le 2 2 }"), Value::Bool(true));
    assert_eq!(ev(r#"${ gt "b" "a" }"#), Value::Bool(true));
    assert_eq!(ev("${ ge 1 2 }"), Value::Bool(false));
    assert!(rerr(r#"${ lt 1 "a" }"#).message().contains("incompatible"));
    assert_eq!(t(r#"${ urlquery "a b&c=d/é" }"#), "a+b%26c%3Dd%2F%C3%A9");
    assert_eq!(
        t(r#"${ html "<a href='x'>&</a>" }"#),
        "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
    );
    assert_eq!(t(r#"${ js "it's <b>" }"#), "it\\'s \\u003Cb\\u003E");
}

#[test]
fn go_value_printing() {
    assert_eq!(
        t("${ 1.5 }|${ -0.25 }|${ 3.0 }|${ 1e21 }"),
        "1.5|-0.25|3|1e+21"
    );
    assert_eq!(t("${ true }|${ 42 }"), "true|42");
    assert_eq!(
        t(r#"${ dict "z" (list) "a" (dict "n" 1.5) }"#),
        "map[a:map[n:1.5] z:[]]"
    );
    assert_eq!(
        t(r#"${ toDate "2006-01-02 -07:00" "2024-01-02 +02:00" }"#),
        "2024-01-02 00:00:00 +0200 +0200"
    );
}

#[test]
fn every_documented_function_exists() {
    let names = crate::funcs::all_names();
    let documented = "ago date dateInZone dateModify duration durationRound htmlDate htmlDateInZone \
        mustDateModify mustToDate now toDate unixEpoch abbrev abbrevboth trunc trim upper lower \
        title untitle substr repeat trimAll trimSuffix trimPrefix nospace initials randAlphaNum \
        randAlpha randAscii randNumeric swapcase shuffle snakecase camelcase kebabcase wrap \
        wrapWith contains hasPrefix hasSuffix quote squote cat indent nindent replace plural \
        sha1sum sha256sum adler32sum toString atoi int64 int float64 seq toDecimal split \
        splitList splitn toStrings until untilStep join sortAlpha add1 add sub div mod mul \
        randInt add1f addf subf divf mulf biggest max min maxf minf ceil floor round default \
        empty coalesce all any compact mustCompact fromJson toJson toPrettyJson toRawJson \
        mustFromJson mustToJson mustToPrettyJson mustToRawJson ternary deepCopy mustDeepCopy \
        base dir clean ext isAbs b64enc b64dec b32enc b32dec tuple list dict get set unset \
        hasKey pluck keys pick omit merge mergeOverwrite mustMerge mustMergeOverwrite values \
        append mustAppend prepend mustPrepend first mustFirst rest mustRest last mustLast \
        initial mustInitial reverse mustReverse uniq mustUniq without mustWithout has mustHas \
        slice mustSlice concat dig chunk mustChunk uuidv4 uuidParse uuidValidate urlParse urlJoin";
    for name in documented.split_whitespace() {
        assert!(names.contains(&name), "missing function {name}");
    }
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicate function names");
}

#[test]
fn template_is_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Template>();
    check::<Value>();
    check::<ParseError>();
    check::<RenderError>();
}

#[test]
fn render_api_shapes() {
    let tpl = Template::parse("${ .Client.ID }").unwrap();
    assert_eq!(tpl.render_text(&ctx()).unwrap(), "client-123");
    // Context built from serde_json.
    let json_ctx = Value::from(json!({"Client": {"ID": 7, "Labels": {}}}));
    assert_eq!(tpl.render(&json_ctx).unwrap(), json!(7));
    let collected: Value = vec![("a", Value::Int(1))].into_iter().collect();
    assert_eq!(collected, Value::map([("a", 1i64)]));
    // Rendering is repeatable.
    let tpl = Template::parse("${ add1 1 }-x").unwrap();
    for _ in 0..3 {
        assert_eq!(tpl.render(&Value::Nil).unwrap(), json!("2-x"));
    }
    // Errors implement std::error::Error.
    let e: Box<dyn std::error::Error> = Box::new(perr("${"));
    assert!(e.to_string().contains("parse error"));
}

// ------------------------------------------------------------- robustness

/// Random inputs must never panic: parse errors and render errors only.
#[test]
fn fuzz_no_panics() {
    use rand::Rng;
    let pieces = [
        "${", "}", " ", "-", "(", ")", "|", "\"", "`", "'", ".", "$", "é", "😀", "\\", "x",
        ".Client", ".Name", "upper", "default", "1", "-2", "0x", "1.5e", "nil", "true", "/*", "*/",
        ":=", ",", "printf", "\"%s\"", "dict", "list", "split", "date", "toDate", "\"2006\"",
        "repeat", "b64dec", "urlParse", "substr", "trunc", "dig",
    ];
    // Seeded, and the seed printed (shown when the test fails): CLAIM_FUZZ_SEED=<n> replays it.
    let seed: u64 = std::env::var("CLAIM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fuzz_no_panics seed: {seed} (replay with CLAIM_FUZZ_SEED={seed})");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    for _ in 0..20_000 {
        let n = rng.random_range(0..14);
        let src: String = (0..n)
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect::<Vec<_>>()
            .join(if rng.random_bool(0.5) { " " } else { "" });
        if let Ok(tpl) = Template::parse(&src) {
            let _ = tpl.render_with(&ctx(), &mut env());
        }
    }
    let layout_bits = [
        "2006", "01", "1", "Jan", "January", "02", "_2", "2", "15", "3", "03", "04", "05", ".000",
        ".999", ",000", "PM", "MST", "-07:00", "Z0700", "Mon", "é", " ", "-", ":",
    ];
    let value_bits = [
        "2024", "1", "12", "Feb", "é", " ", "-", ":", ".5", ".12é", "Z", "+02:00", "PM", "UTC",
        "99", "0", "Tue", "😀", ",1",
    ];
    let utc = FixedOffset::east_opt(0).unwrap();
    for _ in 0..20_000 {
        let layout: String = (0..rng.random_range(0..6))
            .map(|_| layout_bits[rng.random_range(0..layout_bits.len())])
            .collect();
        let value: String = (0..rng.random_range(0..6))
            .map(|_| value_bits[rng.random_range(0..value_bits.len())])
            .collect();
        let _ = golayout::parse(&layout, &value, utc);
        let _ = golayout::format(&fixed(), &layout);
        let _ = golayout::parse_duration(&value);
    }
}

/// Every function with every small combination of awkward arguments:
/// results or errors, never a panic.
#[test]
fn functions_never_panic() {
    let pool = vec![
        Value::Nil,
        Value::Bool(true),
        Value::Int(0),
        Value::Int(-3),
        Value::Int(2),
        Value::Int(i64::MAX),
        Value::Int(i64::MIN),
        Value::Float(-1.5),
        Value::Float(f64::NAN),
        Value::Float(1e300),
        Value::from(""),
        Value::from("héllo wörld 😀"),
        Value::from("2006-01-02"),
        Value::from("-1h"),
        Value::from("a.b/c"),
        Value::from("%zz"),
        Value::Time(fixed()),
        Value::Duration(TimeDelta::seconds(-5)),
        ints(&[3, 1, 2]),
        Value::List(vec![]),
        Value::map([("a", Value::Int(1)), ("b", Value::map([("c", 2i64)]))]),
    ];
    for name in crate::funcs::all_names() {
        let f = crate::funcs::lookup(name).unwrap();
        for n in f.min..=f.max.min(3) {
            let mut idx = vec![0usize; n];
            loop {
                let args: Vec<Value> = idx.iter().map(|i| pool[*i].clone()).collect();
                let _ = (f.f)(&mut env(), args);
                // Next combination (odometer); cap the work for 3-arg functions.
                let mut k = 0;
                loop {
                    if k == n {
                        break;
                    }
                    idx[k] += if n == 3 { 2 } else { 1 };
                    if idx[k] < pool.len() {
                        break;
                    }
                    idx[k] = 0;
                    k += 1;
                }
                if k == n {
                    break;
                }
            }
        }
    }
}
