use super::*;
use crate::load;

fn doc(file: &str, text: &str) -> Document {
    load(file, text.as_bytes(), &|_| None).unwrap()
}

fn check(files: &[(&str, &str)]) -> Result<Summary, Vec<String>> {
    let docs: Vec<Document> = files.iter().map(|(f, t)| doc(f, t)).collect();
    validate(&docs, &gatehouse_plugins::registry())
        .map_err(|ps| ps.iter().map(ToString::to_string).collect())
}

/// The seed how-to's gateway side, in decK's shape.
const SEED: &str = r#"
_format_version: "3.0"
services:
  - name: example-service
    url: http://httpbin.konghq.com/anything
    routes:
      - name: example-route
        paths: ["/anything"]
        plugins:
          - name: oauth2-introspection
            config:
              introspection_url: https://example.com/auth/introspect
              authorization_value: Basic Y2xpZW50OnNlY3JldA==
              consumer_by: client_id
              ttl: 300
consumers:
  - username: alice
    custom_id: client-1
"#;

#[test]
fn a_valid_file_is_counted_by_kind() {
    let s = check(&[("kong.yaml", SEED)]).unwrap();
    assert_eq!(
        s,
        Summary {
            services: 1,
            routes: 1,
            consumers: 1,
            plugins: 1,
            ..Summary::default()
        }
    );
}

#[test]
fn every_problem_is_reported_with_its_file_and_path() {
    let bad = r#"
_format_version: "3.0"
services:
  - name: a
    host: example.com
    port: 70000
    routes:
      - name: r
        paths: ["/ok", "no-slash"]
      - name: r
        protocols: ["http", "ws"]
        paths: ["/x"]
        plugins:
          - name: oauth2-introspection
            config: {}
  - name: a
    url: http://example.com
upstreams: []
whatever: 1
"#;
    let errs = check(&[("bad.yaml", bad)]).unwrap_err();
    let want = [
        "bad.yaml:16: services[1].name: 'a' is also the name of services[0]",
        "bad.yaml:4: services[0]: port: value should be between 0 and 65535",
        "bad.yaml:10: services[0].routes[1].name: 'r' is also the name of services[0].routes[0]",
        "bad.yaml:8: services[0].routes[0]: paths: should start with: / (fixed path) or ~/ (regex path)",
        "bad.yaml:10: services[0].routes[1]: protocols: these sets are mutually exclusive: ('http', 'https'), ('ws', 'wss')",
        "bad.yaml:18: upstreams: not supported by Gatehouse yet",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e == w), "missing {w:?} in {errs:#?}");
    }
    assert!(
        errs.iter()
            .any(|e| e.starts_with("bad.yaml:19: whatever: unknown key")),
        "{errs:#?}"
    );
    // The plugin's own schema runs too: its required fields are named under config.
    assert!(
        errs.iter()
            .any(|e| e.starts_with("bad.yaml:14: services[0].routes[1].plugins[0]: config.")),
        "{errs:#?}"
    );
}

#[test]
fn references_resolve_by_name_or_id_within_the_files() {
    let services = r#"
_format_version: "3.0"
services:
  - name: svc
    id: 9748f662-7711-4a90-8186-dc02f10eb0f5
    host: example.com
"#;
    let routes = r#"
_format_version: "3.0"
routes:
  - name: by-name
    paths: ["/a"]
    service: {name: svc}
  - name: by-id
    paths: ["/b"]
    service: {id: 9748f662-7711-4a90-8186-dc02f10eb0f5}
  - name: dangling
    paths: ["/c"]
    service: {name: nowhere}
plugins:
  - name: request-termination
    route: by-name
    config: {status_code: 403}
  - name: request-termination
    route: by-name
    config: {status_code: 404}
  - name: request-termination
    service: svc
    consumer: nobody
"#;
    let errs = check(&[("services.yaml", services), ("routes.yaml", routes)]).unwrap_err();
    assert_eq!(
        errs,
        [
            "routes.yaml:12: routes[2].service: no service 'nowhere' in the files",
            "routes.yaml:17: plugins[1]: plugin 'request-termination' is configured twice on the same service, route and consumer (also plugins[0])",
            "routes.yaml:22: plugins[2].consumer: no consumer 'nobody' in the files",
        ],
        "{errs:#?}"
    );
    // Without the dangling references and the second instance the two files are one valid
    // configuration.
    let fixed = r#"
_format_version: "3.0"
routes:
  - name: by-name
    paths: ["/a"]
    service: {name: svc}
  - name: by-id
    paths: ["/b"]
    service: {id: 9748f662-7711-4a90-8186-dc02f10eb0f5}
plugins:
  - name: request-termination
    route: by-name
    config: {status_code: 403}
  - name: request-termination
    route: by-id
    config: {status_code: 404}
"#;
    let s = check(&[("services.yaml", services), ("routes.yaml", fixed)]).unwrap();
    assert_eq!((s.services, s.routes, s.plugins), (1, 2, 2));
}

#[test]
fn the_file_keys_are_checked_and_defaults_fill_absent_fields() {
    let errs = check(&[("a.yaml", "services: []\n")]).unwrap_err();
    assert_eq!(errs, ["a.yaml: _format_version: required field missing"]);
    let errs = check(&[
        ("a.yaml", "_format_version: \"3.0\"\n"),
        ("b.yaml", "_format_version: \"1.1\"\n_workspace: team\n"),
    ])
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e == "b.yaml:1: _format_version: '1.1' differs from '3.0' in a.yaml"),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("b.yaml:2: _workspace: Gatehouse has control planes")),
        "{errs:#?}"
    );
    // `_info.defaults.service.port` fills a service without a port; its bad value is then
    // the service's problem.
    let with_defaults = r#"
_format_version: "3.0"
_info:
  select_tags: [team-a]
  defaults:
    service: {port: 99999, retries: 1}
services:
  - name: s
    host: example.com
  - name: t
    host: example.com
    port: 8080
"#;
    let errs = check(&[("d.yaml", with_defaults)]).unwrap_err();
    assert_eq!(
        errs,
        ["d.yaml:8: services[0]: port: value should be between 0 and 65535"]
    );
}

#[test]
fn certificates_list_their_snis_as_decks_objects() {
    let key = gatehouse_core_key();
    let file = format!(
        "_format_version: \"3.0\"\ncertificates:\n  - cert: |\n{}    key: |\n{}    snis:\n      - name: a.example.com\n  - cert: |\n{}    key: |\n{}    snis:\n      - name: a.example.com\n",
        indent(&key.0),
        indent(&key.1),
        indent(&key.0),
        indent(&key.1)
    );
    let errs = check(&[("c.yaml", &file)]).unwrap_err();
    assert_eq!(
        errs,
        ["c.yaml:39: certificates[1].snis: 'a.example.com' is also an SNI of certificates[0]"]
    );
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

/// A self-signed certificate and its key, PEM.
fn gatehouse_core_key() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}
