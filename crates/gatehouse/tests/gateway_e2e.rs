//! End to end: services and routes written through the admin API serve traffic through the
//! real binary's proxy at once — under Konnect paths for the quickstart's control plane, and
//! at Kong's root paths for `default` — with a real echo upstream on an ephemeral port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Node, StartOptions, admin, client};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn quickstart_serves_example_route_and_new_routes_at_once() {
    let dir = std::env::temp_dir().join(format!("gh-qs-{}", uuid::Uuid::new_v4().simple()));
    let opts = || StartOptions {
        data_dir: Some(dir.clone()),
        ..StartOptions::default()
    };
    let node = Node::start_opts("quickstart", None, &[], opts());
    let http = client();
    node.ready(&http).await;
    let echo = node
        .echo
        .clone()
        .expect("the quickstart prints its echo upstream");
    assert!(
        node.banner
            .iter()
            .any(|l| l.starts_with("export KONNECT_PROXY_URL="))
    );

    // example-service / example-route exist and reach the echo upstream.
    let r = http
        .get(format!("{}/anything?x=1", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["args"]["x"], "1");
    assert_eq!(body["url"], format!("{echo}/anything?x=1"));

    // The control plane is found by name, as in the walkthrough.
    let (s, list) = admin(
        &http,
        Method::GET,
        format!(
            "{}/v2/control-planes?filter%5Bname%5D%5Bcontains%5D=quickstart",
            node.admin
        ),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let cp = list["data"][0]["id"].as_str().unwrap().to_owned();
    let base = format!("{}/v2/control-planes/{cp}/core-entities", node.admin);
    let (s, svc) = admin(
        &http,
        Method::POST,
        format!("{base}/services"),
        Some(json!({"name": "second", "url": format!("{echo}/anything/second")})),
    )
    .await;
    assert_eq!(s, 201, "{svc}");
    let (s, _) = admin(
        &http,
        Method::POST,
        format!("{base}/services/second/routes"),
        Some(json!({"name": "second-route", "paths": ["/second"]})),
    )
    .await;
    assert_eq!(s, 201);
    // No restart, no wait: the next request is routed by the new configuration.
    let r = http
        .get(format!("{}/second/x", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["url"], format!("{echo}/anything/second/x"));

    // Running quickstart again, on the same data but with the echo upstream on another
    // port: the quickstart's service follows the echo, and what the user added stays.
    drop(node);
    let node = Node::start_opts("quickstart", None, &[], opts());
    node.ready(&http).await;
    let echo_again = node.echo.clone().unwrap();
    assert_ne!(
        echo_again, echo,
        "the echo upstream got another ephemeral port"
    );
    assert!(
        node.banner
            .iter()
            .any(|l| l.starts_with("example-service: pointed at this run's echo upstream")),
        "{:?}",
        node.banner
    );
    assert!(node.banner.iter().any(|l| l == "example-route: reused"));
    let r = http
        .get(format!("{}/anything?again=1", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["url"], format!("{echo_again}/anything?again=1"));
    let base = format!("{}/v2/control-planes/{cp}/core-entities", node.admin);
    let (s, _) = admin(&http, Method::GET, format!("{base}/services/second"), None).await;
    assert_eq!(s, 200, "the user's own service is kept");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serve_proxies_the_default_control_plane_written_at_kong_paths() {
    let upstream = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let node = Node::start("serve", None, &[]);
    let http = client();
    node.ready(&http).await;
    let r = http
        .get(format!("{}/kong", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (s, _) = admin(
        &http,
        Method::POST,
        format!("{}/services", node.admin),
        Some(json!({"name": "kong-style", "url": format!("{}/anything", upstream.base_url())})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = admin(
        &http,
        Method::POST,
        format!("{}/routes", node.admin),
        Some(json!({"name": "kong-route", "paths": ["/kong"], "service": {"name": "kong-style"}})),
    )
    .await;
    assert_eq!(s, 201);
    let r = http
        .get(format!("{}/kong/path", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["url"],
        format!("{}/anything/path", upstream.base_url())
    );
    let (s, _) = admin(
        &http,
        Method::DELETE,
        format!("{}/routes/kong-route", node.admin),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let r = http
        .get(format!("{}/kong/path", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_proxy_workers_serve_many_connections_at_once() {
    let node = Node::start("quickstart", None, &["--proxy-workers", "3"]);
    let http = client();
    node.ready(&http).await;
    // 48 clients, each on its own connection, 5 requests each: connections land on the
    // workers, and each worker reuses its own upstream connections. The kernel hands each
    // connection to whichever worker accepts first, so one worker may now and then take a
    // whole round: up to five rounds must show more than one worker serving (one worker
    // winning five rounds in a row is a one-in-thousands event; with one worker it is certain).
    let start = node.thread_cpu_ns("gatehouse-proxy");
    assert_eq!(start.len(), 3, "three worker threads: {start:?}");
    let want: Vec<(u16, Value)> = (0..5).map(|n| (200, json!(n.to_string()))).collect();
    let mut busy = 0;
    let mut last = start.clone();
    for _round in 0..5 {
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..48 {
            let url = format!("{}/anything/{i}", node.proxy);
            clients.spawn(async move {
                let own = client();
                let mut seen = Vec::new();
                for n in 0..5 {
                    let r = own.get(format!("{url}?n={n}")).send().await.unwrap();
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap();
                    seen.push((status, body["args"]["n"].clone()));
                }
                seen
            });
        }
        let mut done = 0;
        while let Some(seen) = clients.join_next().await {
            assert_eq!(seen.unwrap(), want);
            done += 1;
        }
        assert_eq!(done, 48);
        // A worker that served spent hundreds of microseconds of CPU (debug build); one that
        // only lost accepts to the others, a few.
        last = node.thread_cpu_ns("gatehouse-proxy");
        busy = last
            .iter()
            .filter(|(tid, ns)| **ns > start.get(tid).copied().unwrap_or(0) + 300_000)
            .count();
        if busy >= 2 {
            break;
        }
    }
    assert!(
        busy >= 2,
        "workers that served: {busy} ({start:?} -> {last:?})"
    );
}

#[tokio::test]
async fn curl_speaks_http2_with_prior_knowledge_to_the_proxy() {
    let node = Node::start("quickstart", None, &["--proxy-workers", "2"]);
    node.ready(&client()).await;
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--noproxy",
                "*",
                "-o",
                "-",
                "-w",
                "\n%{http_version} %{http_code}",
            ])
            .args(args)
            .output()
            .expect("curl is installed (.ci/run installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let url = format!("{}/anything/h2?via=curl", node.proxy);
    let out = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "content-type: text/plain",
        "-d",
        "payload",
        &url,
    ]);
    let (body, tail) = out.rsplit_once('\n').unwrap();
    assert_eq!(tail, "2 200", "{out}");
    let echoed: Value = serde_json::from_str(body).unwrap();
    assert_eq!(echoed["data"], "payload");
    assert_eq!(echoed["args"]["via"], "curl");
    // The same URL without prior knowledge is HTTP/1.1, as before.
    let out = curl(&[&url]);
    assert!(out.ends_with("\n1.1 200"), "{out}");
}
