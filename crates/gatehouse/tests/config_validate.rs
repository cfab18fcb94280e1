//! `gatehouse config validate` against the real binary: a valid decK file passes silently,
//! a broken one lists every problem with its file and path and exits 1, `${{ env "DECK_…" }}`
//! reads the environment, `-` reads standard input, and an oversized file is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Scratch;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn validate(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.arg("config").arg("validate").args(args);
    cmd.env_remove("DECK_UPSTREAM_HOST");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

const GOOD: &str = r#"_format_version: "3.0"
services:
  - name: example-service
    url: http://${{ env "DECK_UPSTREAM_HOST" }}/anything
    routes:
      - name: example-route
        paths: ["/anything"]
        plugins:
          - name: oauth2-introspection
            config:
              introspection_url: https://issuer.example.com/auth/introspect
              authorization_value: Basic Y2xpZW50OnNlY3JldA==
              consumer_by: client_id
              ttl: 300
"#;

#[test]
fn a_valid_file_passes_and_a_broken_one_lists_its_problems() {
    let dir = Scratch::new();
    let good = dir.file("kong.yaml", GOOD.as_bytes());
    let out = validate(
        &["-s", &good],
        &[("DECK_UPSTREAM_HOST", "httpbin.example.com")],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same file without its variable: refused, naming the variable and the line.
    let out = validate(&["-s", &good], &[], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{good}:4: environment variable 'DECK_UPSTREAM_HOST' present in state file but not set"
        )),
        "{err}"
    );

    // Several problems in two files: each on its line, then the count.
    let broken = dir.file(
        "broken.yaml",
        br#"_format_version: "3.0"
services:
  - name: svc
    host: example.com
    routes:
      - paths: ["relative"]
        plugins:
          - name: no-such-plugin
"#,
    );
    let other = dir.file(
        "other.yaml",
        br#"_format_version: "3.0"
routes:
  - name: lost
    paths: ["/lost"]
    service: {name: missing}
"#,
    );
    let out = validate(&["-s", &broken, "-s", &other], &[], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [
        format!(
            "{broken}:6: services[0].routes[0]: paths: should start with: / (fixed path) or ~/ (regex path)"
        ),
        format!(
            "{broken}:8: services[0].routes[0].plugins[0]: name: plugin 'no-such-plugin' not enabled; add it to the 'plugins' configuration property"
        ),
        format!("{other}:5: routes[0].service: no service 'missing' in the files"),
        "gatehouse: 3 problems in the state files".to_owned(),
    ] {
        assert!(
            err.lines().any(|l| l == line),
            "missing {line:?} in:\n{err}"
        );
    }
}

#[test]
fn standard_input_syntax_errors_and_oversized_files() {
    let out = validate(
        &["-s", "-"],
        &[("DECK_UPSTREAM_HOST", "httpbin.example.com")],
        Some(GOOD.as_bytes()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = validate(
        &["-s", "-"],
        &[],
        Some(b"_format_version: \"3.0\"\nservices:\n - name: a\n  host: b\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("-:4: invalid YAML or JSON"), "{err}");

    let dir = Scratch::new();
    let mut big = b"_format_version: \"3.0\"\n".to_vec();
    big.resize(33 << 20, b'\n');
    let big = dir.file("big.yaml", &big);
    let out = validate(&["-s", &big], &[], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the file is larger than 32 MiB"), "{err}");

    let out = validate(&["-s", "/nonexistent/kong.yaml"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/kong.yaml"));
}

#[test]
fn a_directory_reads_its_state_files_recursively() {
    let dir = Scratch::new();
    std::fs::create_dir_all(dir.0.join("config/teams")).unwrap();
    dir.file(
        "config/services.yaml",
        b"_format_version: \"3.0\"\nservices:\n  - name: svc\n    host: example.com\n",
    );
    dir.file(
        "config/teams/routes.json",
        br#"{"_format_version": "3.0", "routes": [{"name": "r", "paths": ["/r"], "service": {"name": "svc"}}]}"#,
    );
    // Not a state file: skipped.
    dir.file("config/README.md", b"# not YAML: {{{");
    let config = dir.0.join("config");
    let out = validate(&["-s", config.to_str().unwrap()], &[], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The route's file alone does not find its service: the directory really merged both.
    let routes = dir.0.join("config/teams/routes.json");
    let out = validate(&["-s", routes.to_str().unwrap()], &[], None);
    assert_eq!(out.status.code(), Some(1));
    // A directory without state files is an error, not an empty configuration.
    std::fs::create_dir_all(dir.0.join("empty")).unwrap();
    let out = validate(&["-s", dir.0.join("empty").to_str().unwrap()], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no .yaml, .yml or .json files"));
}
