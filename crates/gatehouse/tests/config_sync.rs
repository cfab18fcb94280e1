//! `gatehouse config diff|sync|dump|reset` against a real node: what `sync` writes is what
//! the proxy serves, `diff` shows decK's lines and summary, `dump` round-trips with an empty
//! diff, select tags leave untagged entities alone, a file with a problem changes nothing,
//! and a sync killed halfway is completed by the next one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ADMIN_TOKEN, Node, Scratch, admin, get_status, serve_with_echo};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::{Output, Stdio};
use tokio::io::{AsyncBufReadExt, BufReader};

fn command(node: &Node, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.arg("config").args(args).args(["--addr", &node.admin]);
    cmd.env("GATEHOUSE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("DECK_KONG_ADDR")
        .env_remove("DECK_UPSTREAM");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

async fn config(node: &Node, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(node, args, env).output().await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(o)
}

fn summary(created: usize, updated: usize, deleted: usize) -> String {
    format!("Summary:\n  Created: {created}\n  Updated: {updated}\n  Deleted: {deleted}\n")
}

const TEAM_A: &str = r#"_format_version: "3.0"
_info:
  select_tags: [team-a]
services:
  - name: svc-a
    url: http://${{ env "DECK_UPSTREAM" }}/anything
    routes:
      - name: route-a
        paths: ["/a"]
      - name: route-t
        paths: ["/t"]
        plugins:
          - name: request-termination
            config: {status_code: 418, message: teapot}
consumers:
  - username: alice
    custom_id: client-1
"#;

#[tokio::test]
async fn sync_serves_the_file_diff_shows_changes_and_dump_round_trips() {
    let (upstream, node, http) = serve_with_echo().await;
    let dir = Scratch::new();
    let up = upstream.addr.to_string();
    let env = [("DECK_UPSTREAM", up.as_str())];

    // Made by hand, untagged: select tags must leave it alone.
    node.create_all(
        &http,
        &[
            (
                "/services",
                json!({"name": "hand-made", "url": format!("http://{up}/anything")}),
            ),
            (
                "/services/hand-made/routes",
                json!({"name": "hand", "paths": ["/hand"]}),
            ),
        ],
    )
    .await;
    assert_eq!(get_status(&http, format!("{}/hand", node.proxy)).await, 200);
    assert_eq!(get_status(&http, format!("{}/a", node.proxy)).await, 404);

    let file = dir.file("kong.yaml", TEAM_A);
    let out = config(&node, &["diff", "-s", &file], &env).await;
    assert_eq!(
        ok(&out),
        format!(
            "creating service svc-a\ncreating route route-a\ncreating route route-t\n\
             creating consumer alice\ncreating plugin request-termination for route route-t\n{}",
            summary(5, 0, 0)
        )
    );
    let out = config(&node, &["diff", "-s", &file, "--non-zero-exit-code"], &env).await;
    assert_eq!(out.status.code(), Some(2), "changes pending");
    // A diff changes nothing.
    assert_eq!(get_status(&http, format!("{}/a", node.proxy)).await, 404);

    let out = config(&node, &["sync", "-s", &file], &env).await;
    assert!(ok(&out).ends_with(&summary(5, 0, 0)), "{}", stdout(&out));
    let r = http
        .get(format!("{}/a/x", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["url"], format!("http://{up}/anything/x"));
    assert_eq!(get_status(&http, format!("{}/t", node.proxy)).await, 418);
    assert_eq!(get_status(&http, format!("{}/hand", node.proxy)).await, 200);
    // The file's entities carry its select tag; the hand-made ones stay untagged.
    let (_, svc) = admin(
        &http,
        Method::GET,
        format!("{}/services/svc-a", node.admin),
        None,
    )
    .await;
    assert_eq!(svc["tags"], json!(["team-a"]));
    let (_, hand) = admin(
        &http,
        Method::GET,
        format!("{}/services/hand-made", node.admin),
        None,
    )
    .await;
    assert_eq!(hand["tags"], Value::Null);

    let out = config(&node, &["diff", "-s", &file, "--non-zero-exit-code"], &env).await;
    assert_eq!(ok(&out), summary(0, 0, 0));

    // A changed plugin and a consumer gone: one update, one delete.
    let edited = TEAM_A.replace("418", "419").replace(
        "consumers:\n  - username: alice\n    custom_id: client-1\n",
        "",
    );
    let file = dir.file("kong.yaml", &edited);
    let diff = ok(&config(&node, &["diff", "-s", &file], &env).await);
    assert!(
        diff.starts_with(
            "deleting consumer alice\nupdating plugin request-termination for route route-t  {\n"
        ),
        "{diff}"
    );
    assert!(
        diff.contains("\n-     \"status_code\": 418,\n+     \"status_code\": 419,\n"),
        "{diff}"
    );
    assert!(
        diff.ends_with(&format!(" }}\n{}", summary(0, 1, 1))),
        "{diff}"
    );
    ok(&config(&node, &["sync", "-s", &file], &env).await);
    assert_eq!(get_status(&http, format!("{}/t", node.proxy)).await, 419);
    let (s, _) = admin(
        &http,
        Method::GET,
        format!("{}/consumers/alice", node.admin),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // A dump of the tagged part validates and syncs back with an empty diff, through the
    // control plane's Konnect paths too.
    let dumped = dir.path("dump.yaml");
    ok(&config(
        &node,
        &[
            "dump",
            "--select-tag",
            "team-a",
            "--control-plane",
            "default",
            "-o",
            &dumped,
        ],
        &[],
    )
    .await);
    let text = std::fs::read_to_string(&dumped).unwrap();
    assert!(text.contains("control_plane_name: default"), "{text}");
    assert!(text.contains("select_tags:"), "{text}");
    assert!(!text.contains("hand-made"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["config", "validate", "-s", &dumped])
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(
        ok(&config(&node, &["diff", "-s", &dumped], &[]).await),
        summary(0, 0, 0)
    );
    // Writing over a file takes --yes; a whole dump holds the hand-made service too.
    let out = config(&node, &["dump", "-o", &dumped], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let whole = ok(&config(&node, &["dump", "-o", "-", "--format", "json"], &[]).await);
    let whole: Value = serde_json::from_str(&whole).unwrap();
    let names: Vec<&str> = whole["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hand-made", "svc-a"]);

    // Another team's file routes to team A's service, kept on the node, through
    // default_lookup_tags; its sync leaves team A's entities alone.
    let team_b = dir.file(
        "team-b.yaml",
        "_format_version: \"3.0\"\n_info:\n  select_tags: [team-b]\n  default_lookup_tags:\n    services: [team-a]\nroutes:\n  - name: route-b\n    paths: [\"/b\"]\n    service: {name: svc-a}\n",
    );
    assert_eq!(get_status(&http, format!("{}/b", node.proxy)).await, 404);
    let out = ok(&config(&node, &["sync", "-s", &team_b], &[]).await);
    assert_eq!(out, format!("creating route route-b\n{}", summary(1, 0, 0)));
    assert_eq!(get_status(&http, format!("{}/b", node.proxy)).await, 200);
    let out = config(&node, &["diff", "-s", &file, "--non-zero-exit-code"], &env).await;
    assert_eq!(ok(&out), summary(0, 0, 0));
    let out = config(&node, &["reset", "--select-tag", "team-b", "--force"], &[]).await;
    assert!(ok(&out).ends_with(&summary(0, 0, 1)), "{}", stdout(&out));

    // reset wants --force; with a select tag it deletes only the tagged entities.
    let out = config(&node, &["reset", "--select-tag", "team-a"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(get_status(&http, format!("{}/a", node.proxy)).await, 200);
    let out = config(&node, &["reset", "--select-tag", "team-a", "--force"], &[]).await;
    assert!(ok(&out).ends_with(&summary(0, 0, 4)), "{}", stdout(&out));
    assert_eq!(get_status(&http, format!("{}/a", node.proxy)).await, 404);
    assert_eq!(get_status(&http, format!("{}/hand", node.proxy)).await, 200);
}

/// `n` services, each with a route.
fn many(n: usize, upstream: &str) -> String {
    let mut f = String::from("_format_version: \"3.0\"\nservices:\n");
    for i in 0..n {
        f.push_str(&format!(
            "  - name: s{i}\n    url: http://{upstream}/anything\n    routes:\n      - name: r{i}\n        paths: [\"/s{i}\"]\n"
        ));
    }
    f
}

async fn count(http: &reqwest::Client, node: &Node, kind: &str) -> usize {
    let (s, v) = admin(
        http,
        Method::GET,
        format!("{}/{kind}?size=1000", node.admin),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let mut n = v["data"].as_array().unwrap().len();
    let mut offset = v["offset"].as_str().map(str::to_owned);
    while let Some(o) = offset {
        let (_, v) = admin(
            http,
            Method::GET,
            format!("{}/{kind}?size=1000&offset={o}", node.admin),
            None,
        )
        .await;
        n += v["data"].as_array().unwrap().len();
        offset = v["offset"].as_str().map(str::to_owned);
    }
    n
}

#[tokio::test]
async fn a_bad_file_changes_nothing_and_a_killed_sync_is_completed_by_the_next() {
    let (upstream, node, http) = serve_with_echo().await;
    let dir = Scratch::new();
    let up = upstream.addr.to_string();

    // One bad path among good entities: nothing is written, and the problem is named.
    let bad = many(3, &up).replace("paths: [\"/s2\"]", "paths: [\"s2\"]");
    let file = dir.file("bad.yaml", &bad);
    let out = config(&node, &["sync", "-s", &file], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:16: services[2].routes[0]: paths:"),
        "{err}"
    );
    assert_eq!(count(&http, &node, "services").await, 0);
    // So does an unset variable.
    let file = dir.file("env.yaml", "_format_version: \"3.0\"\nservices:\n  - name: e\n    host: ${{ env \"DECK_UPSTREAM\" }}\n");
    let out = config(&node, &["sync", "-s", &file], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(count(&http, &node, "services").await, 0);

    // A sync killed after some of its calls.
    const N: usize = 1500;
    let file = dir.file("many.yaml", many(N, &up));
    let mut child = command(&node, &["sync", "-s", &file, "--parallelism", "1"], &[])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = 0;
    while seen < 200 {
        let line = lines.next_line().await.unwrap().expect("sync ended early");
        if line.starts_with("creating ") {
            seen += 1;
        }
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let half = count(&http, &node, "services").await;
    assert!((200..N).contains(&half), "{half} services after the kill");

    let out = ok(&config(&node, &["sync", "-s", &file, "--parallelism", "8"], &[]).await);
    let (created, _) = out
        .split_once("Summary:\n  Created: ")
        .unwrap()
        .1
        .split_once('\n')
        .unwrap();
    let created: usize = created.parse().unwrap();
    assert!(
        created >= 2 * N - half - 1 && created <= 2 * N - half,
        "created {created} after {half}"
    );
    assert_eq!(count(&http, &node, "services").await, N);
    assert_eq!(count(&http, &node, "routes").await, N);
    assert_eq!(
        ok(&config(&node, &["diff", "-s", &file], &[]).await),
        summary(0, 0, 0)
    );
    let last = format!("{}/s{}", node.proxy, N - 1);
    assert_eq!(get_status(&http, last).await, 200);
}
