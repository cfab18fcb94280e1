//! The fault matrix's end-to-end rows (docs/faults.md): a full disk during admin writes, a
//! database locked by another process, PostgreSQL stopped and started again, and kill -9
//! while tokens are issued and revoked — each against the real binary, each with what must
//! hold afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Node, PrivatePg, StartOptions, admin, client};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn fresh_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gatehouse-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted and removed on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = fresh_dir("tmpfs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the test machines run as root)"
        );
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fills the file system of `dir` with one file until it is full; the file's path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.flush();
    path
}

async fn create_service(http: &reqwest::Client, node: &Node, name: &str) -> (u16, Value) {
    admin(
        http,
        Method::POST,
        format!("{}/services", node.admin),
        Some(json!({"name": name, "url": "http://127.0.0.1:9/"})),
    )
    .await
}

#[tokio::test]
async fn a_full_disk_fails_admin_writes_cleanly_and_recovers() {
    let disk = SmallDisk::mount("16m");
    let data = disk.0.join("data");
    let node = Node::start_opts(
        "serve",
        None,
        &[],
        StartOptions {
            data_dir: Some(data.clone()),
            ..StartOptions::default()
        },
    );
    let http = client();
    node.ready(&http).await;
    assert_eq!(create_service(&http, &node, "before").await.0, 201);

    let filler = fill(&disk.0);
    // Writes fail in Kong's format within a bounded time, and nothing hangs; reads go on.
    let mut failed = 0;
    for i in 0..20 {
        let started = Instant::now();
        let (status, body) = create_service(&http, &node, &format!("during-{i}")).await;
        assert!(started.elapsed() < Duration::from_secs(15), "a write hung");
        if status == 201 {
            continue; // a page the database still had free
        }
        assert_eq!(status, 500, "{body}");
        assert_eq!(body, json!({"message": "An unexpected error occurred"}));
        failed += 1;
    }
    assert!(failed > 0, "the disk never ran out");
    let (status, list) = admin(&http, Method::GET, format!("{}/services", node.admin), None).await;
    assert_eq!(status, 200);
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "before")
    );

    // Space again: writes work, and what was written before is intact.
    std::fs::remove_file(filler).unwrap();
    let (status, body) = create_service(&http, &node, "after").await;
    assert_eq!(status, 201, "{body}");
    let (status, s) = admin(
        &http,
        Method::GET,
        format!("{}/services/before", node.admin),
        None,
    )
    .await;
    assert_eq!((status, s["name"].clone()), (200, json!("before")));
    drop(node);
}

/// Another process holds SQLite's write lock: admin writes wait at most the busy timeout and
/// then fail cleanly (503 in the API's format), the proxy keeps serving from its snapshot, and
/// writes work again once the lock is gone.
#[tokio::test]
async fn a_database_locked_by_another_process_fails_writes_cleanly() {
    let node = Node::start("quickstart", None, &[]);
    let http = client();
    node.ready(&http).await;
    let db = node.dir.join("gatehouse.db");
    let mut locker: Child = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(60)",
        ])
        .arg(&db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(locker.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
    }
    let cp = {
        let (_, list) = admin(
            &http,
            Method::GET,
            format!("{}/v2/control-planes", node.admin),
            None,
        )
        .await;
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "quickstart")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let started = Instant::now();
    let (status, body) = admin(
        &http,
        Method::POST,
        format!(
            "{}/v2/control-planes/{cp}/core-entities/services",
            node.admin
        ),
        Some(json!({"name": "locked-out", "url": "http://127.0.0.1:9/"})),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        json!({"message": "The database is unavailable; try again later"})
    );
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    // The proxy does not read the database.
    let r = http
        .get(format!("{}/anything", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let _ = locker.kill();
    let _ = locker.wait();
    let (status, body) = admin(
        &http,
        Method::POST,
        format!(
            "{}/v2/control-planes/{cp}/core-entities/services",
            node.admin
        ),
        Some(json!({"name": "locked-out", "url": "http://127.0.0.1:9/"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Tokens are issued and revoked from several tasks when the node is killed with SIGKILL.
/// After a restart on the same data directory every token whose response was sent introspects
/// active, and every revocation that was acknowledged holds.
#[tokio::test]
async fn kill_9_during_issuance_loses_no_acknowledged_token_or_revocation() {
    let dir = fresh_dir("kill9");
    // The issuer URL must survive the restart (the listener's ephemeral port does not).
    let start = || {
        Node::start_opts(
            "serve",
            None,
            &["--identity-public-url", "http://issuer.kill9.test"],
            StartOptions {
                data_dir: Some(dir.clone()),
                ..StartOptions::default()
            },
        )
    };
    let mut node = start();
    let http = client();
    node.ready(&http).await;
    let (server, (id, secret)) = common::auth_server_with_client(&http, &node.admin, "kill9").await;
    let slug = server["issuer"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();

    let issued = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, bool)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (http, issued, stop) = (http.clone(), issued.clone(), stop.clone());
        let issuer = format!("{}/{slug}", node.identity);
        let (id, secret) = (id.clone(), secret.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(r) = http
                    .post(format!("{issuer}/oauth/token"))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", &id),
                        ("client_secret", &secret),
                    ])
                    .send()
                    .await
                else {
                    break;
                };
                let Ok(body) = r.json::<Value>().await else {
                    break;
                };
                let Some(token) = body["access_token"].as_str().map(str::to_owned) else {
                    continue;
                };
                // Every third token of a task is revoked; kept only if the revocation was
                // acknowledged.
                n += 1;
                let mut revoked = false;
                if (n + w).is_multiple_of(3) {
                    // A revocation cut by the kill may or may not have been recorded: such a
                    // token is not checked.
                    match http
                        .post(format!("{issuer}/revoke"))
                        .basic_auth(&id, Some(&secret))
                        .form(&[("token", token.as_str())])
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => revoked = true,
                        _ => break,
                    }
                }
                issued.lock().unwrap().push((token, revoked));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let issued = issued.lock().unwrap().clone();
    assert!(
        issued.len() >= 20,
        "only {} tokens were issued before the kill",
        issued.len()
    );
    assert!(
        issued.iter().any(|(_, r)| *r),
        "no revocation was acknowledged"
    );

    let node = start();
    node.ready(&http).await;
    let issuer = format!("{}/{slug}", node.identity);
    for (token, revoked) in &issued {
        let (_, answer) = common::token_call(
            &http,
            &issuer,
            "introspect",
            &(id.clone(), secret.clone()),
            token,
        )
        .await;
        assert_eq!(
            answer["active"],
            json!(!revoked),
            "revoked: {revoked}; {answer}"
        );
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

/// PostgreSQL stops under a running node: admin writes and the token endpoint answer 503 in
/// their own formats within the acquire timeout (not sqlx's default 30 s), the proxy and
/// introspection go on from memory, and once the database is back the same node writes and
/// issues again without a restart, with what was written before intact.
#[tokio::test]
async fn a_database_outage_answers_503_serves_on_and_recovers() {
    let pg = PrivatePg::start();
    let node = Node::start("quickstart", Some(&pg.url), &[]);
    let http = client();
    node.ready(&http).await;
    let (server, creds) = common::auth_server_with_client(&http, &node.admin, "outage").await;
    let issuer = server["issuer"].as_str().unwrap().to_owned();
    let status = || async {
        let r = http
            .get(format!("{}/status", node.admin))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (s, v) = status().await;
    assert_eq!(s, 200);
    assert_eq!(
        v["database"],
        json!({"backend": "postgres", "reachable": true})
    );
    let (s, t) = common::grant(&http, &issuer, &creds).await;
    assert_eq!(s, 200, "{t}");
    let token = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(create_service(&http, &node, "before").await.0, 201);

    pg.stop();
    // Kong's admin API: 503 in Kong's format, with Retry-After.
    let started = Instant::now();
    let r = http
        .post(format!("{}/services", node.admin))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&json!({"name": "during", "url": "http://127.0.0.1:9/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "The database is unavailable; try again later"})
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Konnect's API: 503 problem+json.
    let started = Instant::now();
    let (s, v) = admin(
        &http,
        Method::POST,
        format!("{}/v1/auth-servers", node.admin),
        Some(json!({"name": "during", "audience": "aud"})),
    )
    .await;
    assert_eq!((s, v["status"].clone()), (503, json!(503)), "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The token endpoint: 503 temporarily_unavailable, nothing handed out.
    let started = Instant::now();
    let (s, v) = common::grant(&http, &issuer, &creds).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"], "temporarily_unavailable");
    assert!(v.get("access_token").is_none());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // What is served from memory goes on: introspection and the proxy.
    let (s, v) = common::token_call(&http, &issuer, "introspect", &creds, &token).await;
    assert_eq!(s, 200);
    assert_eq!(v["active"], true);
    let r = http
        .get(format!("{}/anything", node.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // /status says so, quickly, and the node stays ready: it is serving.
    let started = Instant::now();
    let (s, v) = status().await;
    assert_eq!((s, v["ready"].clone()), (200, json!(true)));
    assert_eq!(v["database"]["reachable"], false);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // The database is back: the same process writes and issues again.
    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = create_service(&http, &node, "after").await;
        if s == 201 {
            break;
        }
        assert_eq!(s, 503, "{v}");
        assert!(Instant::now() < deadline, "writes did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, t) = common::grant(&http, &issuer, &creds).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(status().await.1["database"]["reachable"], true);
    let (s, v) = admin(
        &http,
        Method::GET,
        format!("{}/services/before", node.admin),
        None,
    )
    .await;
    assert_eq!((s, v["name"].clone()), (200, json!("before")));
    drop(node);
}
