use super::*;
use serde_json::json;

struct Schemas;

impl PluginSchemas for Schemas {
    fn validate_config(&self, name: &str, config: Value) -> Option<Result<Value, FieldErrors>> {
        (name == "demo").then(|| {
            let mut r = KongReader::new(config)?;
            let url = r.required_string("url");
            let ttl = r.number("ttl", 0.0, 1e9).unwrap_or(30.0);
            r.finish()?;
            Ok(json!({"url": url, "ttl": ttl}))
        })
    }
    fn protocols(&self, _: &str) -> Vec<String> {
        vec!["http".into(), "https".into()]
    }
    fn allows_consumer(&self, name: &str) -> bool {
        name != "demo"
    }
}

fn id() -> Uuid {
    Uuid::new_v4()
}

#[test]
fn service_defaults_and_url_shorthand() {
    let s = Service::from_input(
        id(),
        json!({"name": "example-service", "url": "http://httpbin.konghq.com/anything"}),
        1,
        2,
    )
    .unwrap();
    assert_eq!(
        (
            s.protocol.as_str(),
            s.host.as_str(),
            s.port,
            s.path.as_deref()
        ),
        ("http", "httpbin.konghq.com", 80, Some("/anything"))
    );
    assert_eq!(
        (s.retries, s.connect_timeout, s.read_timeout),
        (5, 60000, 60000)
    );
    assert!(s.enabled);
    let body = serde_json::to_value(&s).unwrap();
    assert!(body.get("url").is_none(), "url is write-only");
    assert_eq!(body["created_at"], 1);
    assert_eq!(body["updated_at"], 2);
    let with_port =
        Service::from_input(id(), json!({"url": "http://127.0.0.1:8080"}), 0, 0).unwrap();
    assert_eq!((with_port.port, with_port.path), (8080, None));
}

#[test]
fn service_errors_name_every_field() {
    let e = Service::from_input(
        id(),
        json!({"port": 70000, "path": "nope", "retries": -1, "connect_timeout": 0,
               "protocol": "gopher", "bogus": true, "name": "bad name"}),
        0,
        0,
    )
    .unwrap_err()
    .into_value();
    assert_eq!(e["host"], "required field missing");
    assert_eq!(e["port"], "value should be between 0 and 65535");
    assert_eq!(e["path"], "should start with: /");
    assert_eq!(e["retries"], "value should be between 0 and 32767");
    assert_eq!(
        e["connect_timeout"],
        "value should be between 1 and 2147483646"
    );
    assert!(
        e["protocol"]
            .as_str()
            .unwrap()
            .starts_with("expected one of:")
    );
    assert_eq!(e["bogus"], "unknown field");
    assert!(e["name"].as_str().unwrap().contains("accepted ascii"));
    let host_port = Service::from_input(id(), json!({"host": "a.test:80"}), 0, 0).unwrap_err();
    assert_eq!(host_port.into_value()["host"], "must not have a port");
    let scheme = Service::from_input(id(), json!({"url": "localhost"}), 0, 0).unwrap_err();
    assert_eq!(scheme.into_value()["url"], "missing scheme in url");
}

#[test]
fn route_defaults_and_matcher_rule() {
    let r = Route::from_input(
        id(),
        json!({"name": "example-route", "paths": ["/anything"]}),
        0,
        0,
    )
    .unwrap();
    assert_eq!(r.protocols, ["http", "https"]);
    assert!(r.strip_path && !r.preserve_host);
    assert_eq!(
        (r.path_handling.as_str(), r.https_redirect_status_code),
        ("v0", 426)
    );
    let e = Route::from_input(id(), json!({"name": "x"}), 0, 0)
        .unwrap_err()
        .into_value();
    assert_eq!(
        e["@entity"][0],
        "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
    );
    let e = Route::from_input(id(), json!({"protocols": ["http"]}), 0, 0)
        .unwrap_err()
        .into_value();
    assert_eq!(
        e["@entity"][0],
        "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"
    );
}

#[test]
fn route_field_errors() {
    let e = Route::from_input(
        id(),
        json!({"paths": ["~/(unclosed"], "methods": ["get"], "hosts": ["*.*.x"],
               "headers": {"host": ["a"]}, "https_redirect_status_code": 303,
               "path_handling": "v2", "protocols": ["tcp"], "service": {"id": "nope"}}),
        0,
        0,
    )
    .unwrap_err()
    .into_value();
    for f in [
        "paths",
        "methods",
        "hosts",
        "headers",
        "https_redirect_status_code",
        "path_handling",
        "protocols",
        "service",
    ] {
        assert!(e.get(f).is_some(), "{f} missing from {e}");
    }
}

#[test]
fn consumer_needs_username_or_custom_id() {
    let e = Consumer::from_input(id(), json!({"tags": ["a"]}), 0, 0)
        .unwrap_err()
        .into_value();
    assert_eq!(
        e["@entity"][0],
        "at least one of these fields must be non-empty: 'custom_id', 'username'"
    );
    let c = Consumer::from_input(id(), json!({"custom_id": "client-1"}), 0, 0).unwrap();
    let stored = c.to_entity(id());
    assert_eq!(stored.alt_key.as_deref(), Some("client-1"));
    assert_eq!(stored.endpoint_key, None);
}

#[test]
fn plugin_config_goes_through_its_schema() {
    let p = Plugin::from_input(
        id(),
        json!({"name": "demo", "config": {"url": "http://x"}}),
        0,
        0,
        &Schemas,
    )
    .unwrap();
    assert_eq!(p.config, json!({"url": "http://x", "ttl": 30.0}));
    assert_eq!(p.protocols, ["http", "https"]);
    let e = Plugin::from_input(
        id(),
        json!({"name": "demo", "config": {"nope": 1}}),
        0,
        0,
        &Schemas,
    )
    .unwrap_err();
    assert_eq!(
        e.summary(),
        "2 schema violations (config.nope: unknown field; config.url: required field missing)"
    );
    let e = Plugin::from_input(id(), json!({"name": "missing"}), 0, 0, &Schemas).unwrap_err();
    assert_eq!(
        e.into_value()["name"],
        "plugin 'missing' not enabled; add it to the 'plugins' configuration property"
    );
    let e = Plugin::from_input(
        id(),
        json!({"name": "demo", "config": {"url": "u"}, "consumer": {"id": id()}}),
        0,
        0,
        &Schemas,
    )
    .unwrap_err();
    assert!(
        e.into_value()["consumer"]
            .as_str()
            .unwrap()
            .contains("cannot be applied")
    );
}

#[test]
fn plugin_scope_key_distinguishes_scopes() {
    let route = id();
    let global = Plugin::from_input(
        id(),
        json!({"name": "demo", "config": {"url": "u"}}),
        0,
        0,
        &Schemas,
    )
    .unwrap();
    let scoped = Plugin::from_input(
        id(),
        json!({"name": "demo", "config": {"url": "u"}, "route": {"id": route}}),
        0,
        0,
        &Schemas,
    )
    .unwrap();
    assert_ne!(global.scope_key(), scoped.scope_key());
    assert_eq!(scoped.to_entity(id()).route_id, Some(route));
}

#[test]
fn patch_merges_plugin_config() {
    let current = json!({"name": "demo", "config": {"url": "a", "ttl": 30}, "enabled": true});
    let merged = merge_patch(&current, json!({"config": {"ttl": 5}, "enabled": false})).unwrap();
    assert_eq!(
        merged,
        json!({"name": "demo", "config": {"url": "a", "ttl": 5}, "enabled": false})
    );
}

#[test]
fn names_usernames_and_tags_have_a_length_limit() {
    let at_limit = "n".repeat(MAX_NAME_CHARS);
    let over = "n".repeat(MAX_NAME_CHARS + 1);
    let svc =
        |name: &str| Service::from_input(id(), json!({"name": name, "url": "http://a.test"}), 0, 0);
    assert!(svc(&at_limit).is_ok());
    let err = svc(&over).unwrap_err().into_value();
    assert_eq!(err["name"], "length must be at most 512");
    // A megabyte name is refused the same way, not stored.
    assert!(svc(&"x".repeat(1 << 20)).is_err());
    let err = Consumer::from_input(id(), json!({"username": over}), 0, 0)
        .unwrap_err()
        .into_value();
    assert_eq!(err["username"], "length must be at most 512");
    assert!(Consumer::from_input(id(), json!({"username": at_limit}), 0, 0).is_ok());
    let err = Service::from_input(id(), json!({"url": "http://a.test", "tags": [over]}), 0, 0)
        .unwrap_err()
        .into_value();
    assert_eq!(err["tags"], "length must be at most 512");
}
