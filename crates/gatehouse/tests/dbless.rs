//! DB-less mode against the real binary: `serve --declarative-config` serves its file, core
//! entity writes answer Kong's 405, `GET /config` returns the configuration, a bad
//! `POST /config` answers 400 with `flattened_errors` and changes nothing, and good ones swap
//! the whole configuration under load without one failed request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ADMIN_TOKEN, Node, admin, client, get_status};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn config(upstream: &str, extra_route: &str, status: u16) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: s1
    url: http://{upstream}/anything
    routes:
      - name: steady
        paths: ["/a"]
      - name: {extra_route}
        paths: ["/{extra_route}"]
      - name: teapot
        paths: ["/t"]
        plugins:
          - name: request-termination
            config: {{status_code: {status}}}
"#
    )
}

async fn post_config(
    http: &reqwest::Client,
    node: &Node,
    body: String,
    json: bool,
) -> (u16, Value) {
    let r = http
        .post(format!("{}/config", node.admin))
        .bearer_auth(ADMIN_TOKEN)
        .header(
            "content-type",
            if json {
                "application/json"
            } else {
                "text/yaml"
            },
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn dbless_serves_its_file_refuses_writes_and_swaps_configs_under_load() {
    let upstream = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let up = upstream.addr.to_string();
    let dir = std::env::temp_dir().join(format!("gatehouse-dbless-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kong.yaml");
    std::fs::write(&file, config(&up, "b", 418)).unwrap();
    let node = Node::start(
        "serve",
        None,
        &["--declarative-config", file.to_str().unwrap()],
    );
    let http = client();
    node.ready(&http).await;

    // The file is served.
    assert_eq!(get_status(&http, format!("{}/a", node.proxy)).await, 200);
    assert_eq!(get_status(&http, format!("{}/b", node.proxy)).await, 200);
    assert_eq!(get_status(&http, format!("{}/t", node.proxy)).await, 418);
    assert_eq!(get_status(&http, format!("{}/c", node.proxy)).await, 404);

    // Writes other than POST /config are Kong's 405.
    let (s, body) = admin(
        &http,
        Method::POST,
        format!("{}/services", node.admin),
        Some(json!({"name": "x", "host": "x"})),
    )
    .await;
    assert_eq!(s, 405, "{body}");
    assert_eq!(
        body["message"],
        "cannot create 'services' entities when not using a database"
    );
    assert_eq!(body["code"], 12);
    let (s, _) = admin(
        &http,
        Method::PATCH,
        format!("{}/routes/steady", node.admin),
        Some(json!({"paths": ["/z"]})),
    )
    .await;
    assert_eq!(s, 405);
    let (s, _) = admin(
        &http,
        Method::DELETE,
        format!("{}/routes/steady", node.admin),
        None,
    )
    .await;
    assert_eq!(s, 405);
    let (s, body) = admin(
        &http,
        Method::GET,
        format!("{}/routes/steady", node.admin),
        None,
    )
    .await;
    assert_eq!((s, &body["paths"]), (200, &json!(["/a"])));

    // GET /config returns the configuration as a state file.
    let (s, body) = admin(&http, Method::GET, format!("{}/config", node.admin), None).await;
    assert_eq!(s, 200);
    let text = body["config"].as_str().unwrap();
    assert!(
        text.contains("name: steady") && text.contains("_format_version"),
        "{text}"
    );

    // A bad configuration is refused whole: Kong's code 14 and flattened_errors.
    let bad = config(&up, "c", 419).replace("paths: [\"/c\"]", "paths: [\"c\"]");
    let (s, body) = post_config(&http, &node, bad, false).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["name"], "invalid declarative configuration");
    let f = &body["flattened_errors"][0];
    assert_eq!(f["entity_type"], "route", "{body}");
    assert_eq!(f["entity_name"], "c");
    assert_eq!(f["errors"][0]["field"], "paths");
    assert_eq!(get_status(&http, format!("{}/t", node.proxy)).await, 418);
    assert_eq!(get_status(&http, format!("{}/b", node.proxy)).await, 200);
    let (s, body) = post_config(&http, &node, "services: [".into(), false).await;
    assert_eq!((s, &body["code"]), (400, &json!(14)), "{body}");

    // Swaps under load: /a never fails while the rest changes with each swap.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (http, url, stop, served) = (
            http.clone(),
            format!("{}/a", node.proxy),
            stop.clone(),
            served.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            failed
        }));
    }
    for i in 0..10 {
        let (extra, code) = if i % 2 == 0 { ("c", 419) } else { ("b", 418) };
        let text = config(&up, extra, code);
        // Kong's JSON shape, {"config": "<the file>"}, half the time.
        let (s, body) = if i % 3 == 0 {
            post_config(&http, &node, json!({"config": text}).to_string(), true).await
        } else {
            post_config(&http, &node, text, false).await
        };
        assert_eq!(s, 201, "{body}");
        assert_eq!(body["created"], 1, "{body}");
        assert_eq!(body["deleted"], 1, "{body}");
        assert_eq!(
            get_status(&http, format!("{}/{extra}", node.proxy)).await,
            200
        );
        let gone = if extra == "b" { "c" } else { "b" };
        assert_eq!(
            get_status(&http, format!("{}/{gone}", node.proxy)).await,
            404
        );
        assert_eq!(get_status(&http, format!("{}/t", node.proxy)).await, code);
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let failed = task.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during swaps: {failed:?}"
        );
    }
    let served = served.load(Ordering::Relaxed);
    eprintln!("{served} requests served during the swaps");
    assert!(served > 100, "the load really ran");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn with_a_database_post_config_replaces_a_named_control_plane() {
    let upstream = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let up = upstream.addr.to_string();
    let node = Node::start("serve", None, &["--control-plane", "edge"]);
    let http = client();
    node.ready(&http).await;
    let (s, list) = admin(
        &http,
        Method::GET,
        format!("{}/v2/control-planes?filter[name][eq]=edge", node.admin),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let cp = list["data"][0]["id"].as_str().unwrap().to_owned();
    let base = format!("{}/v2/control-planes/{cp}/core-entities", node.admin);
    // Made through the API: POST /config replaces it, as it replaces everything.
    node.create_all(
        &http,
        &[
            (
                &format!("/v2/control-planes/{cp}/core-entities/services"),
                json!({"name": "old", "url": format!("http://{up}")}),
            ),
            (
                &format!("/v2/control-planes/{cp}/core-entities/services/old/routes"),
                json!({"paths": ["/old"]}),
            ),
        ],
    )
    .await;
    assert_eq!(get_status(&http, format!("{}/old", node.proxy)).await, 200);

    let r = http
        .post(format!("{base}/config"))
        .bearer_auth(ADMIN_TOKEN)
        .body(config(&up, "b", 418))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"created": 5, "updated": 0, "deleted": 2}));
    assert_eq!(get_status(&http, format!("{}/old", node.proxy)).await, 404);
    assert_eq!(get_status(&http, format!("{}/b", node.proxy)).await, 200);
    assert_eq!(get_status(&http, format!("{}/t", node.proxy)).await, 418);
    // The default control plane (the Kong paths') is another one, untouched.
    let (s, body) = admin(&http, Method::GET, format!("{}/services", node.admin), None).await;
    assert_eq!((s, body["data"].as_array().unwrap().len()), (200, 0));
    // With a database, single writes still work.
    let (s, _) = admin(
        &http,
        Method::PATCH,
        format!("{base}/routes/steady"),
        Some(json!({"paths": ["/z"]})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(get_status(&http, format!("{}/z", node.proxy)).await, 200);
}
