//! Spawning a whole Gatehouse node (the real binary) on ephemeral ports for end-to-end tests,
//! and reading the URLs it prints.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin token every test node accepts.
pub const ADMIN_TOKEN: &str = "walkthrough-admin-token";

/// A running node; killed and its data directory removed on drop.
pub struct Node {
    child: Child,
    /// The admin listener's URL.
    pub admin: String,
    /// The proxy listener's URL.
    pub proxy: String,
    /// The proxy's TLS listener's URL (`https://`).
    pub proxy_tls: Option<String>,
    /// The echo upstream's URL (quickstart only).
    pub echo: Option<String>,
    /// The identity listener's URL.
    pub identity: String,
    /// The lines printed before the node was ready.
    pub banner: Vec<String>,
    /// The data directory.
    pub dir: std::path::PathBuf,
    /// Whether the node made its data directory (and removes it when dropped).
    owns_dir: bool,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// How [`Node::start_opts`] starts a node beyond its command and flags.
#[derive(Default)]
pub struct StartOptions {
    /// The process's open-descriptor limit (a shell's `ulimit -n` that then `exec`s).
    pub fd_limit: Option<u64>,
    /// A data directory the caller owns (kept when the node is dropped); default a fresh one.
    pub data_dir: Option<std::path::PathBuf>,
    /// `GATEHOUSE_MASTER_KEY` (64 hex digits): nodes sharing a database must share it.
    pub master_key: Option<String>,
}

/// A fresh private PostgreSQL schema for one run, and the URL that selects it.
pub struct PgSchema {
    /// `--database` URL whose connections use the schema.
    pub url: String,
    base: String,
    name: String,
}

impl PgSchema {
    /// Creates the schema.
    pub async fn create() -> PgSchema {
        let base = std::env::var("GATEHOUSE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(&base)
            .await
            .expect("PostgreSQL must be reachable for the end-to-end suite");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&pool)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        PgSchema {
            url: format!("{base}{sep}options=-c%20search_path%3D{name}"),
            base,
            name,
        }
    }

    /// Drops the schema (call after the node using it stopped).
    pub async fn drop(self) {
        let pool = sqlx::PgPool::connect(&self.base).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&pool)
            .await
            .unwrap();
    }
}

impl Node {
    /// Starts `gatehouse <command>` (`serve` or `quickstart`) with every listener on an
    /// ephemeral loopback port.
    pub fn start(command: &str, database: Option<&str>, extra: &[&str]) -> Node {
        Node::start_opts(command, database, extra, StartOptions::default())
    }

    /// [`Node::start`] with [`StartOptions`].
    pub fn start_opts(
        command: &str,
        database: Option<&str>,
        extra: &[&str],
        opts: StartOptions,
    ) -> Node {
        let owns_dir = opts.data_dir.is_none();
        let dir = opts.data_dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("gatehouse-e2e-{}", uuid::Uuid::new_v4().simple()))
        });
        let mut cmd = match opts.fd_limit {
            None => Command::new(env!("CARGO_BIN_EXE_gatehouse")),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args([
                    "-c",
                    &format!("ulimit -n {n} && exec \"$0\" \"$@\""),
                    env!("CARGO_BIN_EXE_gatehouse"),
                ]);
                sh
            }
        };
        cmd.args([
            command,
            "--proxy-listen",
            "127.0.0.1:0",
            "--proxy-listen-tls",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--identity-listen",
            "127.0.0.1:0",
        ]);
        if command == "quickstart" {
            cmd.args(["--echo-listen", "127.0.0.1:0"]);
        }
        cmd.args(extra)
            .arg("--data-dir")
            .arg(&dir)
            .env("GATEHOUSE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("GATEHOUSE_MASTER_KEY")
            .env_remove("GATEHOUSE_DATABASE")
            .env_remove("GATEHOUSE_CONTROL_PLANE")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(db) = database {
            cmd.args(["--database", db]);
        }
        if let Some(key) = &opts.master_key {
            cmd.env("GATEHOUSE_MASTER_KEY", key);
        }
        let mut child = cmd.spawn().expect("the gatehouse binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let (mut admin, mut proxy, mut echo, mut identity) = (None, None, None, None);
        let mut proxy_tls = None;
        let mut banner = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("stdout is readable");
            let url = |prefix: &str| {
                line.strip_prefix(prefix)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
            };
            admin = admin.or(url("admin listening on "));
            proxy = proxy.or(url("proxy listening on "));
            proxy_tls = proxy_tls.or(url("proxy TLS listening on "));
            echo = echo.or(url("echo listening on "));
            identity = identity.or(url("identity listening on "));
            let done = line.starts_with("database: ");
            banner.push(line);
            if done {
                break;
            }
        }
        // Keep reading what follows the database line (the quickstart's exports), then keep
        // draining so the child never blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        if command == "quickstart" {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(l) => {
                        let last = l.starts_with("Data lives in");
                        banner.push(l);
                        if last {
                            break;
                        }
                    }
                    Err(_) => continue,
                }
            }
        }
        Node {
            child,
            admin: admin.expect("the admin address is printed"),
            proxy: proxy.expect("the proxy address is printed"),
            proxy_tls,
            echo,
            identity: identity.expect("the identity address is printed"),
            banner,
            dir,
            owns_dir,
        }
    }

    /// How many TCP connections the node itself has open to `port` on this machine (`ss`):
    /// its outbound calls, not the connections clients made to it.
    pub fn outbound_connections(&self, port: u16) -> usize {
        let out = Command::new("ss")
            .args(["-Htnp", "state", "established"])
            .arg(format!("( dport = :{port} )"))
            .output()
            .expect("ss (iproute2) runs");
        let mark = format!("pid={},", self.child.id());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&mark))
            .count()
    }

    /// CPU time (nanoseconds, `/proc/<pid>/task/<tid>/schedstat`) of each of the node's
    /// threads whose name starts with `prefix`, by thread id.
    pub fn thread_cpu_ns(&self, prefix: &str) -> std::collections::BTreeMap<u32, u64> {
        let mut out = std::collections::BTreeMap::new();
        let tasks = format!("/proc/{}/task", self.child.id());
        for entry in std::fs::read_dir(tasks).unwrap().flatten() {
            let dir = entry.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.trim_end().starts_with(prefix) {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            let ns = stat.split_whitespace().next().and_then(|v| v.parse().ok());
            let tid = entry.file_name().to_string_lossy().parse().ok();
            if let (Some(tid), Some(ns)) = (tid, ns) {
                out.insert(tid, ns);
            }
        }
        out
    }

    /// Kills the process with SIGKILL (no drain, no clean shutdown) and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until `/status` says ready.
    pub async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/status", self.admin)).send().await
                && r.status() == 200
            {
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["ready"], true);
                return;
            }
            assert!(Instant::now() < deadline, "gatehouse did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The proxy's TLS listener as a socket address.
    pub fn proxy_tls_addr(&self) -> std::net::SocketAddr {
        self.proxy_tls
            .as_deref()
            .expect("the node has a TLS listener")
            .strip_prefix("https://")
            .unwrap()
            .replace("localhost", "127.0.0.1")
            .parse()
            .unwrap()
    }

    /// A rustls client configuration (aws-lc-rs, no ALPN) that trusts the node's default
    /// proxy certificate and nothing else.
    pub fn trusting_default_cert(&self) -> rustls::ClientConfig {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(self.dir.join("proxy-default.crt")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap())
            .unwrap();
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// POSTs each `(path, body)` to the admin API in order, asserting a 201 for each.
    pub async fn create_all(&self, http: &reqwest::Client, items: &[(&str, Value)]) {
        for (path, body) in items {
            let (s, v) = admin(
                http,
                reqwest::Method::POST,
                format!("{}{path}", self.admin),
                Some(body.clone()),
            )
            .await;
            assert_eq!(s, 201, "{path}: {v}");
        }
    }
}

/// An HTTP client that ignores proxy environment variables.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// An HTTPS client (rustls, aws-lc-rs) that trusts `roots` (DER) and nothing else, and
/// connects each name in `resolve` to its address instead of looking it up.
pub fn https_client(roots: &[&[u8]], resolve: &[(&str, std::net::SocketAddr)]) -> reqwest::Client {
    let mut store = rustls::RootCertStore::empty();
    for der in roots {
        store
            .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
            .unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(config);
    for (name, addr) in resolve {
        b = b.resolve(name, *addr);
    }
    b.build().unwrap()
}

/// Sends `method uri` with the admin token and an optional JSON body.
pub async fn admin(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A PostgreSQL server of the test's own (`initdb` and `pg_ctl`, as the `postgres` user when
/// running as root) on a free loopback port, for tests that stop and start their database.
/// The machine's shared server is never touched. Stopped and removed on drop.
pub struct PrivatePg {
    /// `--database` URL of its `postgres` database.
    pub url: String,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl PrivatePg {
    /// Creates a cluster in a fresh directory and starts it.
    pub fn start() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries are installed under /usr/lib/postgresql")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max_by_key(|b| {
                b.parent()
                    .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .expect("an initdb under /usr/lib/postgresql/<version>/bin");
        let dir =
            std::env::temp_dir().join(format!("gatehouse-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePg {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            port,
        };
        if Self::as_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pg.dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown of the cluster's directory");
        }
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        pg.start_again();
        pg
    }

    fn as_root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.output(tool, args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn output(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let tool = self.bin.join(tool);
        let mut cmd = if Self::as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        };
        cmd.args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Starts the server (again) on its port, waiting until it accepts connections.
    pub fn start_again(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server (`-m fast`: clients are disconnected, committed work is kept).
    pub fn stop(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if data.join("postmaster.pid").exists() {
            let stop = [
                "-D",
                data.to_str().unwrap_or(""),
                "-m",
                "immediate",
                "-w",
                "stop",
            ];
            let _ = self.output("pg_ctl", &stop);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An auth server and one client_credentials client (allowed every scope) made through the
/// admin API at `admin_url`: the auth server's JSON, and the client's id and secret.
pub async fn auth_server_with_client(
    http: &reqwest::Client,
    admin_url: &str,
    name: &str,
) -> (Value, (String, String)) {
    let (s, server) = admin(
        http,
        reqwest::Method::POST,
        format!("{admin_url}/v1/auth-servers"),
        Some(serde_json::json!({"name": name, "audience": format!("http://{name}.test")})),
    )
    .await;
    assert_eq!(s, 201, "{server}");
    let (s, c) = admin(
        http,
        reqwest::Method::POST,
        format!(
            "{admin_url}/v1/auth-servers/{}/clients",
            server["id"].as_str().unwrap()
        ),
        Some(
            serde_json::json!({"name": "c", "grant_types": ["client_credentials"],
                                "allow_all_scopes": true, "response_types": ["token"]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let creds = (
        c["id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    (server, creds)
}

/// Asks `issuer` for a token as `(client_id, secret)`: the status and the body.
pub async fn grant(
    http: &reqwest::Client,
    issuer: &str,
    client: &(String, String),
) -> (u16, Value) {
    grant_scope(http, issuer, client, None).await
}

/// [`grant`], asking for `scope` when given.
pub async fn grant_scope(
    http: &reqwest::Client,
    issuer: &str,
    client: &(String, String),
    scope: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client.0.as_str()),
        ("client_secret", client.1.as_str()),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let r = http
        .post(format!("{issuer}/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Posts `token` to one of `issuer`'s token endpoints (`introspect`, `revoke`) as the client
/// `(client_id, secret)` with HTTP Basic: the status and the JSON body (null when empty).
pub async fn token_call(
    http: &reqwest::Client,
    issuer: &str,
    endpoint: &str,
    client: &(String, String),
    token: &str,
) -> (u16, Value) {
    let r = http
        .post(format!("{issuer}/{endpoint}"))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A scratch directory, removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    /// A fresh directory under the system's temporary directory.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("gatehouse-scratch-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Writes `name` (parent directories must exist) and returns its path.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// The path of `name` in the directory.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The status of `GET url`.
pub async fn get_status(http: &reqwest::Client, url: String) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

/// An echo upstream and a `serve` node on SQLite, ready.
pub async fn serve_with_echo() -> (gatehouse_echo::EchoServer, Node, reqwest::Client) {
    let upstream = gatehouse_echo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let node = Node::start("serve", None, &[]);
    let http = client();
    node.ready(&http).await;
    (upstream, node, http)
}
