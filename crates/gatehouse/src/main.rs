//! The `gatehouse` binary: command line, wiring of the roles, `serve` and `quickstart`.
//!
//! `serve` opens the store, loads the identity runtime, binds every listener (failing fast with
//! a one-line reason), marks the process ready and serves until SIGINT/SIGTERM, letting
//! requests in flight finish.

use anyhow::{Context, Result, bail};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use gatehouse_admin::auth::{AdminAuth, token_digest_hex};
use gatehouse_admin::{AdminState, GatewayAdmin, router as admin_router};
use gatehouse_core::gateway::ProxyUrl;
use gatehouse_identity::Identity;
use gatehouse_identity::keys::MasterKey;
use gatehouse_listener::gate::ConnectionGate;
use gatehouse_listener::serve::RouterListener;
use gatehouse_listener::{ConnectionBudget, Limits};
use gatehouse_proxy::gateway::Gateway;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

mod config_cmd;
mod local_identity;

/// mimalloc: the proxy allocates and frees many small, short-lived objects per request
/// (header maps, bodies, futures); glibc's malloc spent ~7 % of the proxy's CPU on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Setting under which the generated admin token's digest is stored.
const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Self-hosted API gateway with a built-in machine-to-machine identity server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy, admin (control plane) and identity listeners.
    Serve(ServeArgs),
    /// `serve` for a first try: control plane `quickstart`, an echo upstream, `example-service`
    /// and `example-route`, and the exports the walkthrough uses.
    Quickstart(QuickstartArgs),
    /// Run the httpbin-compatible echo server alone.
    Echo(EchoArgs),
    /// Declarative configuration in decK's file format.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
}

#[derive(Args, Clone)]
struct QuickstartArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Where the built-in echo upstream listens.
    #[arg(long, env = "GATEHOUSE_ECHO_LISTEN", default_value = "127.0.0.1:8080")]
    echo_listen: SocketAddr,
}

#[derive(Args, Clone)]
struct EchoArgs {
    /// Where the echo server listens.
    #[arg(long, env = "GATEHOUSE_ECHO_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Where the SQLite database and the master key file live.
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = "./gatehouse-data")]
    data_dir: PathBuf,
    /// A `postgres://…` URL to use PostgreSQL instead of SQLite in the data directory.
    #[arg(long, env = "GATEHOUSE_DATABASE")]
    database: Option<String>,
    /// The proxy (data plane) listener.
    #[arg(long, env = "GATEHOUSE_PROXY_LISTEN", default_value = "0.0.0.0:8000")]
    proxy_listen: SocketAddr,
    /// The proxy's TLS listener (HTTPS and HTTP/2; certificates by SNI from `certificates`
    /// and `snis`, else the default one in the data directory); `off` turns it off.
    #[arg(
        long,
        env = "GATEHOUSE_PROXY_LISTEN_TLS",
        default_value = "0.0.0.0:8443",
        value_parser = parse_listen
    )]
    proxy_listen_tls: Listen,
    /// How many threads serve the proxy, each with its own connections and upstream pool
    /// [default: one per CPU the process may use].
    #[arg(long, env = "GATEHOUSE_PROXY_WORKERS")]
    proxy_workers: Option<std::num::NonZeroUsize>,
    /// The control plane whose configuration the proxy serves (created when missing)
    /// [default: `default`; `quickstart` for the quickstart].
    #[arg(long, env = "GATEHOUSE_CONTROL_PLANE")]
    control_plane: Option<String>,
    /// The admin (control-plane) listener.
    #[arg(long, env = "GATEHOUSE_ADMIN_LISTEN", default_value = "127.0.0.1:8001")]
    admin_listen: SocketAddr,
    /// The identity (issuer endpoints) listener.
    #[arg(
        long,
        env = "GATEHOUSE_IDENTITY_LISTEN",
        default_value = "0.0.0.0:8002"
    )]
    identity_listen: SocketAddr,
    /// The public base URL of the identity listener, the prefix of every issuer URL
    /// [default: http:// (https:// with --identity-tls-cert) and the identity listener's
    /// address].
    #[arg(long, env = "GATEHOUSE_IDENTITY_PUBLIC_URL")]
    identity_public_url: Option<String>,
    /// How often the node compares its configuration version with the database's, the
    /// safety net under PostgreSQL's change notifications (Kong's `db_update_frequency`).
    #[arg(long, env = "GATEHOUSE_DB_UPDATE_FREQUENCY", default_value = "1s", value_parser = parse_duration)]
    db_update_frequency: Duration,
    /// DB-less mode: serve the gateway configuration of this decK state file (YAML or JSON,
    /// `${{ env "DECK_…" }}` rendered). It replaces the configuration at every start; the
    /// Admin API's core-entity writes answer 405, and `POST /config` replaces it while
    /// running. The identity server keeps its own store in the data directory.
    #[arg(long, env = "GATEHOUSE_DECLARATIVE_CONFIG", conflicts_with_all = ["database", "control_plane"])]
    declarative_config: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

/// TLS on the admin and identity listeners (docs/configuration.md). Each pair is given whole
/// or not at all; without it the listener speaks plain HTTP.
#[derive(Args, Clone)]
struct TlsArgs {
    /// PEM certificate chain of the admin listener (the certificate first): it then serves
    /// HTTPS only.
    #[arg(long, env = "GATEHOUSE_ADMIN_TLS_CERT", requires = "admin_tls_key")]
    admin_tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --admin-tls-cert.
    #[arg(long, env = "GATEHOUSE_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    admin_tls_key: Option<PathBuf>,
    /// PEM certificate chain of the identity listener: it then serves HTTPS only, and issuers
    /// are `https://` URLs.
    #[arg(
        long,
        env = "GATEHOUSE_IDENTITY_TLS_CERT",
        requires = "identity_tls_key"
    )]
    identity_tls_cert: Option<PathBuf>,
    /// PEM private key of --identity-tls-cert.
    #[arg(
        long,
        env = "GATEHOUSE_IDENTITY_TLS_KEY",
        requires = "identity_tls_cert"
    )]
    identity_tls_key: Option<PathBuf>,
}

/// A listener's TLS configuration from its certificate and key files, if given.
fn listener_tls(
    role: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<Option<Arc<gatehouse_listener::tls::ServerConfig>>> {
    match (cert, key) {
        (Some(cert), Some(key)) => gatehouse_listener::tls::server_config(cert, key)
            .map(Some)
            .with_context(|| format!("cannot serve TLS on the {role} listener")),
        _ => Ok(None),
    }
}

/// The edge limits of every listener (docs/security.md explains each).
#[derive(Args, Clone)]
struct LimitArgs {
    /// How long a request head may take from its first byte (admin and identity: from when
    /// the connection is ready for it, keep-alive waits included).
    #[arg(long, env = "GATEHOUSE_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// How long a proxy keep-alive connection may wait idle for its next request.
    #[arg(long, env = "GATEHOUSE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// The time a request body gets before --body-min-rate extends it.
    #[arg(long, env = "GATEHOUSE_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    body_timeout: Duration,
    /// Bytes per second of request body that earn one more second (0: --body-timeout is a
    /// fixed bound on the whole body).
    #[arg(long, env = "GATEHOUSE_BODY_MIN_RATE", default_value_t = 1024)]
    body_min_rate: u64,
    /// How long a write may wait for the client to read.
    #[arg(long, env = "GATEHOUSE_SEND_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    send_timeout: Duration,
    /// Longest request target (path and query), in bytes; longer gets 414.
    #[arg(long, env = "GATEHOUSE_MAX_URI_LENGTH", default_value_t = 8192)]
    max_uri_length: usize,
    /// Connections the proxy listener keeps open at once [default: 3/8 of the descriptor
    /// limit left after a reserve].
    #[arg(long, env = "GATEHOUSE_PROXY_MAX_CONNECTIONS")]
    proxy_max_connections: Option<usize>,
    /// Connections the identity listener keeps open at once [default: 1/8 of it].
    #[arg(long, env = "GATEHOUSE_IDENTITY_MAX_CONNECTIONS")]
    identity_max_connections: Option<usize>,
    /// Connections the admin listener keeps open at once [default: 1/16 of it, at most 256].
    #[arg(long, env = "GATEHOUSE_ADMIN_MAX_CONNECTIONS")]
    admin_max_connections: Option<usize>,
    /// Connections one client address (an IPv6 /64) may hold on one listener; 0 for no limit
    /// [default: a quarter of the listener's maximum].
    #[arg(long, env = "GATEHOUSE_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Failed client authentications an address may make at once at the token,
    /// introspection and revocation endpoints before it is throttled (0: never throttled).
    #[arg(long, env = "GATEHOUSE_AUTH_FAILURE_BURST", default_value_t = 10)]
    auth_failure_burst: u32,
    /// A throttled address may fail once more every this long.
    #[arg(long, env = "GATEHOUSE_AUTH_FAILURE_REFILL", default_value = "1s", value_parser = parse_duration)]
    auth_failure_refill: Duration,
}

impl LimitArgs {
    /// The limits of a listener whose default cap is `default_max` (`max` when given).
    fn listener(&self, max: Option<usize>, default_max: usize) -> Limits {
        let base = Limits::with_connections(max.unwrap_or(default_max));
        Limits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            body_min_rate: self.body_min_rate,
            send_timeout: self.send_timeout,
            max_uri_len: self.max_uri_length,
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(base.max_connections_per_ip),
            ..base
        }
    }
}

/// A listener address, or `off`.
#[derive(Clone, Copy, Debug)]
struct Listen(Option<SocketAddr>);

fn parse_listen(text: &str) -> Result<Listen, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    text.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|e| format!("{e}: expected host:port or off"))
}

/// The proxy's default certificate, `<data-dir>/proxy-default.crt` and `.key`: a self-signed
/// ECDSA P-256 certificate for `localhost`, made on first start as Kong makes its own,
/// served to clients whose server name no `snis` entity covers.
fn default_proxy_certificate(data_dir: &Path) -> Result<gatehouse_proxy::tls::CertPair> {
    let crt = data_dir.join("proxy-default.crt");
    let key = data_dir.join("proxy-default.key");
    if !crt.exists() || !key.exists() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("cannot generate the proxy's default key")?;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .context("cannot make the proxy's default certificate")?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = params
            .self_signed(&pair)
            .context("cannot sign the proxy's default certificate")?;
        write_private(&key, &pair.serialize_pem())
            .with_context(|| format!("cannot create {}", key.display()))?;
        std::fs::write(&crt, cert.pem())
            .with_context(|| format!("cannot create {}", crt.display()))?;
        tracing::info!(path = %crt.display(), "created the proxy's default certificate");
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    gatehouse_proxy::tls::CertPair::from_pem(&read(&crt)?, &read(&key)?)
        .map_err(|e| anyhow::anyhow!("{} and {}: {e}", crt.display(), key.display()))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    gatehouse_listener::parse_duration(text)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: logs piped to files and collectors stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args, None).await,
            Command::Quickstart(args) => {
                let echo = args.echo_listen;
                serve(args.serve, Some(echo)).await
            }
            Command::Echo(args) => echo(args).await,
            Command::Config(command) => config_cmd::run(command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<config_cmd::ExitStatus>().is_some() => {
            let code = e
                .downcast_ref::<config_cmd::ExitStatus>()
                .map_or(1, |s| s.0);
            std::process::ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// DB-less mode's start: the state file replaces the served control plane's configuration
/// (the proxy has it before the listeners announce themselves), or the start fails naming
/// every problem.
async fn load_declarative_config(state: &AdminState, cp: uuid::Uuid, file: &Path) -> Result<()> {
    let name = file.display().to_string();
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {name}"))?;
    let env = |var: &str| std::env::var(var).ok();
    let doc =
        gatehouse_declarative::load(&name, &bytes, &env).map_err(|p| anyhow::anyhow!("{p}"))?;
    match gatehouse_admin::declarative::replace(state, cp, vec![doc]).await {
        Ok(c) => {
            tracing::info!(
                file = %name,
                created = c.created,
                updated = c.updated,
                deleted = c.deleted,
                "DB-less mode: serving the declarative configuration"
            );
            Ok(())
        }
        Err(gatehouse_admin::declarative::ConfigError::Invalid(problems, _)) => {
            for p in &problems {
                eprintln!("{p}");
            }
            bail!("{name}: {} problems; nothing is served", problems.len())
        }
        Err(gatehouse_admin::declarative::ConfigError::Store(e)) => {
            bail!("{name} could not be stored: {}", e.parts().1)
        }
    }
}

/// The master key from `GATEHOUSE_MASTER_KEY`, else the data directory's `master.key`
/// (created 0600 on first start).
fn master_key(data_dir: &Path) -> Result<MasterKey> {
    if let Ok(text) = std::env::var("GATEHOUSE_MASTER_KEY") {
        return MasterKey::parse(&text).context("GATEHOUSE_MASTER_KEY");
    }
    let path = data_dir.join("master.key");
    if !path.exists() {
        let hex = MasterKey::generate_hex()?;
        write_private(&path, &hex).with_context(|| format!("cannot create {}", path.display()))?;
        tracing::info!(path = %path.display(), "created a new master key; back it up, keys encrypted with it are unreadable without it");
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    MasterKey::parse(&text).with_context(|| format!("{} is not a valid master key", path.display()))
}

/// This node's id, kept in the data directory's `node.id` (created on first start), as Kong
/// keeps its node id in its prefix: a restarted node is the same node.
fn node_id(data_dir: &Path) -> Result<uuid::Uuid> {
    let path = data_dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(text) => uuid::Uuid::parse_str(text.trim())
            .with_context(|| format!("{} does not hold a node id", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4();
            write_private(&path, &id.to_string())
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The host's name, for the nodes list.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}

/// Makes `path` readable by its owner only: created empty with mode 0600 when missing (SQLite
/// then gives its WAL and shared-memory files the same mode), tightened when others could
/// read it. The database holds hashed secrets and encrypted keys: nobody else needs them.
fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the database was readable by others; now 0600");
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_private(path, "")?;
            }
            Err(e) => return Err(e),
        }
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            if let Ok(meta) = std::fs::metadata(&side)
                && meta.permissions().mode() & 0o077 != 0
            {
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(format!(
        "gh_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The host a client uses to reach a listener (unspecified addresses via loopback).
fn local_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    }
}

/// Local URL for a listener address.
fn local_url(addr: SocketAddr) -> String {
    scheme_url("http", addr)
}

/// Local URL for a listener address with `scheme`.
fn scheme_url(scheme: &str, addr: SocketAddr) -> String {
    format!("{scheme}://{}:{}", local_host(addr), addr.port())
}

async fn bind(addr: SocketAddr, role: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {role} listener"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down; finishing requests in flight");
}

async fn echo(args: EchoArgs) -> Result<()> {
    let listener = bind(args.listen, "echo").await?;
    println!("echo listening on {}", local_url(listener.local_addr()?));
    gatehouse_echo::serve(listener, shutdown_signal())
        .await
        .context("the echo server failed")
}

/// The tag on the quickstart's own entities: what a later run may re-point.
const QUICKSTART_TAG: &str = "gatehouse-quickstart";

/// The quickstart's `example-service` (→ the echo upstream) and `example-route` (`/anything`),
/// created through the same code as the admin API's. On a later run they are reused, and the
/// service is pointed at this run's echo upstream if it is still the quickstart's own (tagged,
/// or an older run's: a loopback host and the path `/anything`) but the echo moved; a service
/// the user made under that name is left as it is. Says what it did.
async fn quickstart_entities(
    store: &gatehouse_store::SharedStore,
    cp: uuid::Uuid,
    echo: SocketAddr,
) -> Result<()> {
    use gatehouse_core::gateway::{EntityKind, Route, Service};
    let now = gatehouse_core::Timestamp::now().unix_seconds();
    let url = format!("http://{echo}/anything");
    let fresh = |id, created_at| {
        let body = serde_json::json!({"name": "example-service", "url": url,
                                      "tags": [QUICKSTART_TAG]});
        Service::from_input(id, body, created_at, now)
            .map_err(|e| anyhow::anyhow!("example-service: {}", e.summary()))
    };
    let service_id = match store
        .core_entity_by_key(cp, EntityKind::Service, "example-service")
        .await?
    {
        Some(e) => {
            let held: Service = serde_json::from_value(e.body.clone())
                .context("the stored example-service cannot be read")?;
            let ours = held.tags.iter().flatten().any(|t| t == QUICKSTART_TAG)
                || (is_loopback_host(&held.host) && held.path.as_deref() == Some("/anything"));
            let target = (echo.ip().to_string(), echo.port());
            if !ours {
                println!("example-service exists and is not the quickstart's: left as it is");
            } else if (held.host.as_str(), held.port) != (target.0.as_str(), target.1) {
                let svc = fresh(e.id, e.created_at)?;
                store
                    .update_core_entity(&svc.to_entity(cp), &e.body)
                    .await?;
                println!(
                    "example-service: pointed at this run's echo upstream {echo} (was {}:{})",
                    held.host, held.port
                );
            } else {
                println!("example-service: reused");
            }
            e.id
        }
        None => {
            let svc = fresh(uuid::Uuid::new_v4(), now)?;
            store.insert_core_entity(&svc.to_entity(cp)).await?;
            svc.id
        }
    };
    if store
        .core_entity_by_key(cp, EntityKind::Route, "example-route")
        .await?
        .is_none()
    {
        let body = serde_json::json!({"name": "example-route", "paths": ["/anything"],
                                      "service": {"id": service_id}, "tags": [QUICKSTART_TAG]});
        let route = Route::from_input(uuid::Uuid::new_v4(), body, now, now)
            .map_err(|e| anyhow::anyhow!("example-route: {}", e.summary()))?;
        store.insert_core_entity(&route.to_entity(cp)).await?;
    } else {
        println!("example-route: reused");
    }
    Ok(())
}

/// Whether `host` names this machine (`localhost`, a loopback address).
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// For a node that started from its cached configuration: applies the migrations once the
/// database answers (the feed catches up on its own).
fn spawn_migrations_when_reachable(store: gatehouse_store::SharedStore, every: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match store.migrate().await {
                Ok(()) => {
                    tracing::info!("the database is reachable again; catching up with it");
                    break;
                }
                Err(gatehouse_store::StoreError::Unavailable(_)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the database is back but cannot be migrated");
                    break;
                }
            }
        }
    });
}

async fn serve(args: ServeArgs, quickstart_echo: Option<SocketAddr>) -> Result<()> {
    let quickstart = quickstart_echo.is_some();
    if quickstart && args.declarative_config.is_some() {
        bail!("--declarative-config is for `serve`: the quickstart makes its own configuration");
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    if std::fs::read_dir(&args.data_dir).is_err() {
        bail!("cannot read the data directory {}", args.data_dir.display());
    }
    let database = match &args.database {
        Some(url) => url.clone(),
        None => {
            let path = args.data_dir.join("gatehouse.db");
            make_private(&path).with_context(|| format!("cannot secure {}", path.display()))?;
            path.display().to_string()
        }
    };
    // Only PostgreSQL can be out of reach; its nodes keep their last configuration on disk.
    let cache_path = args
        .database
        .is_some()
        .then(|| args.data_dir.join(gatehouse_admin::cache::FILE_NAME));
    let (store, cached) = match gatehouse_store::open(&database).await {
        Ok(store) => (store, None),
        Err(gatehouse_store::StoreError::Unavailable(e)) if cache_path.is_some() => {
            let path = cache_path.as_deref().unwrap_or(Path::new(""));
            match gatehouse_admin::cache::read(path) {
                Ok(Some(cached)) => {
                    tracing::warn!(
                        error = %e,
                        path = %path.display(),
                        version = cached.version,
                        written_at = %cached.written_at.to_rfc3339(),
                        configuration_hash = %cached.configuration_hash,
                        "THE DATABASE IS UNREACHABLE: serving the configuration cached on disk. \
                         Admin writes and token requests answer 503 until it is back; this node \
                         catches up by itself when it is"
                    );
                    (
                        gatehouse_store::open_lazy(&database)
                            .context("cannot open the database")?,
                        Some(cached),
                    )
                }
                Ok(None) => bail!(
                    "cannot open the database ({e}), and there is no cached configuration \
                     ({}) to start from",
                    path.display()
                ),
                Err(ce) => bail!(
                    "cannot open the database ({e}), and the cached configuration {} cannot be \
                     used: {ce}",
                    path.display()
                ),
            }
        }
        Err(e) => return Err(e).context("cannot open the database"),
    };
    let offline = cached.is_some();

    // Bind first: a port in use is a start-up error, not a half-running server.
    let proxy_listener = bind(args.proxy_listen, "proxy").await?;
    let proxy_tls_listener = match args.proxy_listen_tls.0 {
        Some(addr) => Some(bind(addr, "proxy TLS").await?),
        None => None,
    };
    let admin_listener = bind(args.admin_listen, "admin").await?;
    let identity_listener = bind(args.identity_listen, "identity").await?;
    let echo_listener = match quickstart_echo {
        Some(addr) => Some(bind(addr, "echo").await?),
        None => None,
    };
    let proxy_addr = proxy_listener.local_addr()?;
    let proxy_tls_addr = match &proxy_tls_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let proxy_default_cert = match proxy_tls_listener {
        Some(_) => Some(default_proxy_certificate(&args.data_dir)?),
        None => None,
    };
    let admin_addr = admin_listener.local_addr()?;
    let identity_addr = identity_listener.local_addr()?;
    let admin_tls = listener_tls("admin", &args.tls.admin_tls_cert, &args.tls.admin_tls_key)?;
    let identity_tls = listener_tls(
        "identity",
        &args.tls.identity_tls_cert,
        &args.tls.identity_tls_key,
    )?;
    let scheme = |tls: &Option<_>| if tls.is_some() { "https" } else { "http" };
    let admin_url = scheme_url(scheme(&admin_tls), admin_addr);
    let identity_url = scheme_url(scheme(&identity_tls), identity_addr);
    let public_url = args
        .identity_public_url
        .clone()
        .unwrap_or_else(|| identity_url.clone());

    let master = master_key(&args.data_dir)?;
    let throttle = gatehouse_identity::ThrottleConfig {
        burst: args.limits.auth_failure_burst,
        refill: args.limits.auth_failure_refill,
    };
    // The feed's version before anything is loaded: a change committed while this node loads
    // is applied again rather than missed.
    let (feed_version, identity) = match &cached {
        Some(cached) => (
            cached.version,
            Identity::new(store.clone(), master, &public_url, throttle),
        ),
        None => (
            store
                .change_version()
                .await
                .context("cannot read the configuration version")?,
            Identity::load_with(store.clone(), master, &public_url, throttle)
                .await
                .context("cannot load the identity server's configuration")?,
        ),
    };
    identity.spawn_maintenance();

    // Admin tokens: the one from the environment, and the generated one (digest only).
    let mut digests = Vec::new();
    let mut announce: Option<String> = None;
    if let Ok(t) = std::env::var("GATEHOUSE_ADMIN_TOKEN") {
        if t.trim().is_empty() {
            bail!("GATEHOUSE_ADMIN_TOKEN is set but empty");
        }
        digests.push(token_digest_hex(t.trim()));
        if quickstart {
            announce = Some(t.trim().to_owned());
        }
    } else if quickstart {
        // A quickstart shows its token every time, so it mints a fresh one per start (kept
        // in memory only while the database is unreachable).
        let t = random_token()?;
        if offline {
            digests.push(token_digest_hex(&t));
        } else {
            store
                .put_setting(ADMIN_TOKEN_SETTING, &token_digest_hex(&t))
                .await?;
        }
        announce = Some(t);
    } else if offline {
        // The database's token, as the cache recorded it.
    } else {
        let t = random_token()?;
        if store
            .put_setting_if_absent(ADMIN_TOKEN_SETTING, &token_digest_hex(&t))
            .await?
        {
            println!(
                "Generated an admin token (shown only this once; only its hash is stored):\n  {t}"
            );
        }
    }
    let stored_digests: Vec<String> = match &cached {
        Some(cached) => cached.node.admin_token_digests.clone(),
        None => store
            .get_setting(ADMIN_TOKEN_SETTING)
            .await?
            .into_iter()
            .collect(),
    };
    digests.extend(stored_digests.iter().cloned());
    let auth = AdminAuth::from_hex_digests(digests.iter().map(String::as_str));

    // Control planes: `default` (the Kong Admin API paths) always exists; the proxy serves
    // the one named by --control-plane.
    let cp_name = args
        .control_plane
        .clone()
        .unwrap_or_else(|| if quickstart { "quickstart" } else { "default" }.to_owned());
    let (default_cp, served_cp) = match &cached {
        Some(cached) => match &cached.node.control_plane {
            Some(cp) if cp.name == cp_name => (cached.node.default_control_plane, cp.id),
            _ => bail!(
                "the database is unreachable, and the cached configuration is not of the \
                 control plane {cp_name}"
            ),
        },
        None => (
            gatehouse_admin::control_planes::ensure(&store, "default")
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the default control plane: {e}"))?,
            gatehouse_admin::control_planes::ensure(&store, &cp_name)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the control plane {cp_name}: {e}"))?,
        ),
    };
    if let Some(echo) = &echo_listener
        && !offline
    {
        quickstart_entities(&store, served_cp, echo.local_addr()?)
            .await
            .context("cannot create the quickstart's service and route")?;
    }
    // oauth2-introspection calls this process's own issuers without HTTP.
    let mut issuer_bases = vec![public_url.clone(), identity_url.clone()];
    if identity_addr.ip().is_unspecified() || identity_addr.ip().is_loopback() {
        issuer_bases.push(format!(
            "{}://localhost:{}",
            scheme(&identity_tls),
            identity_addr.port()
        ));
    }
    let local = local_identity::LocalIdentity::new(identity.clone(), &issuer_bases);
    let registry = Arc::new(gatehouse_plugins::registry_with(Some(Arc::new(local))));
    let gateway = Gateway::new(registry.clone(), served_cp);
    let following = match cached {
        Some(cached) => gatehouse_admin::sync::restore(
            store.clone(),
            identity.clone(),
            Some(gateway.clone()),
            cached,
        )
        .map_err(|e| anyhow::anyhow!("cannot serve the cached configuration: {e}"))?,
        None => gatehouse_admin::sync::follow(
            store.clone(),
            identity.clone(),
            Some(gateway.clone()),
            feed_version,
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the proxy configuration: {e}"))?,
    };
    let feed = following.feed;
    feed.spawn(args.db_update_frequency);
    if offline {
        spawn_migrations_when_reachable(store.clone(), args.db_update_frequency);
    }
    let cache = gatehouse_admin::cache::ConfigCache::new(
        cache_path,
        gatehouse_admin::cache::NodeSettings {
            control_plane: Some(gatehouse_admin::cache::ControlPlaneRef {
                id: served_cp,
                name: cp_name.clone(),
            }),
            default_control_plane: default_cp,
            admin_token_digests: stored_digests,
        },
        feed.clone(),
        identity.clone(),
        following.source,
    );
    cache.spawn();
    gatehouse_admin::nodes::spawn_heartbeat(
        store.clone(),
        gatehouse_admin::nodes::NodeIdentity {
            id: node_id(&args.data_dir)?,
            control_plane_id: served_cp,
            hostname: hostname(),
        },
        feed.clone(),
        cache.clone(),
        args.db_update_frequency,
    );

    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = AdminState {
        identity: identity.clone(),
        ready: ready.clone(),
        gateway: GatewayAdmin {
            registry,
            default_control_plane: default_cp,
            served_control_plane: Some(served_cp),
            admin_url: local_url(admin_addr),
            proxy_url: Some(ProxyUrl {
                host: local_host(proxy_addr),
                port: proxy_addr.port(),
                protocol: "http".into(),
            }),
            db_less: args.declarative_config.is_some(),
        },
        feed,
        cache: Some(cache),
    };
    if let Some(file) = &args.declarative_config {
        load_declarative_config(&admin_state, served_cp, file).await?;
    }
    let admin = admin_router(admin_state, auth);
    let issuer = gatehouse_identity::http::router(identity.clone());

    println!(
        "proxy listening on {} (control plane {cp_name})",
        local_url(proxy_addr)
    );
    if let Some(addr) = proxy_tls_addr {
        println!("proxy TLS listening on {}", scheme_url("https", addr));
    }
    if let Some(echo) = &echo_listener {
        println!("echo listening on {}", local_url(echo.local_addr()?));
    }
    println!("admin listening on {admin_url}");
    println!("identity listening on {identity_url} (issuers under {public_url})");
    println!("database: {}", store.backend());
    if quickstart && let Some(t) = &announce {
        {
            println!("\nGatehouse quickstart is running. In another terminal:\n");
            println!("export KONNECT_TOKEN={t}");
            println!("export KONNECT_CONTROL_PLANE_URL={admin_url}");
            println!("export KONNECT_PROXY_URL={}", local_url(proxy_addr));
            println!(
                "\nData lives in {} ({}). Press Ctrl-C to stop.",
                args.data_dir.display(),
                store.backend()
            );
        }
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let budget = ConnectionBudget::current();
    let limits = &args.limits;
    let admin_limits = limits.listener(limits.admin_max_connections, budget.admin);
    let identity_limits = limits.listener(limits.identity_max_connections, budget.identity);
    let proxy_limits = limits.listener(limits.proxy_max_connections, budget.proxy);
    tracing::info!(
        proxy = proxy_limits.max_connections,
        identity = identity_limits.max_connections,
        admin = admin_limits.max_connections,
        fd_limit = ?gatehouse_listener::fd_limit(),
        "connection limits"
    );
    let router_listener = |listener, router, limits: Limits, render, role, tls| RouterListener {
        listener,
        router,
        gate: ConnectionGate::new(limits.max_connections, limits.max_connections_per_ip),
        limits,
        render,
        role,
        tls,
    };
    let admin_task = tokio::spawn(
        router_listener(
            admin_listener,
            admin,
            admin_limits,
            Arc::new(gatehouse_admin::edge_error),
            "admin",
            admin_tls,
        )
        .serve(wait(stop_rx.clone())),
    );
    let identity_task = tokio::spawn(
        router_listener(
            identity_listener,
            issuer,
            identity_limits,
            Arc::new(gatehouse_identity::http::edge_error),
            "identity",
            identity_tls,
        )
        .serve(wait(stop_rx.clone())),
    );
    let proxy_workers = gatehouse_proxy::workers::spawn(
        proxy_listener.into_std()?,
        match (proxy_tls_listener, proxy_default_cert) {
            (Some(l), Some(default)) => Some(gatehouse_proxy::workers::TlsListener {
                listener: l.into_std()?,
                config: gatehouse_proxy::tls::server_config(gateway.clone(), default)
                    .context("cannot configure the proxy's TLS listener")?,
            }),
            _ => None,
        },
        gateway,
        gatehouse_proxy::server::Edge::new(proxy_limits),
        args.proxy_workers
            .unwrap_or_else(gatehouse_proxy::workers::default_count),
        stop_rx.clone(),
    )
    .context("cannot start the proxy workers")?;
    let proxy_task = tokio::spawn(proxy_workers.wait());
    let echo_task =
        echo_listener.map(|l| tokio::spawn(gatehouse_echo::serve(l, wait(stop_rx.clone()))));
    ready.store(true, Ordering::Release);
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    for task in [admin_task, identity_task, proxy_task]
        .into_iter()
        .chain(echo_task)
    {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("a listener failed: {e}"),
            Err(e) => bail!("a listener task failed: {e}"),
        }
    }
    Ok(())
}
