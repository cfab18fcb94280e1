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
use gatehouse_admin::{AdminState, router as admin_router};
use gatehouse_identity::Identity;
use gatehouse_identity::keys::MasterKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

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
    /// Run the admin (control plane) and identity listeners.
    Serve(ServeArgs),
    /// `serve` for a first try: prints the exports the walkthrough uses.
    Quickstart(ServeArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Where the SQLite database and the master key file live.
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = "./gatehouse-data")]
    data_dir: PathBuf,
    /// A `postgres://…` URL to use PostgreSQL instead of SQLite in the data directory.
    #[arg(long, env = "GATEHOUSE_DATABASE")]
    database: Option<String>,
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
    /// [default: http:// and the identity listener's address].
    #[arg(long, env = "GATEHOUSE_IDENTITY_PUBLIC_URL")]
    identity_public_url: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
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
            Command::Serve(args) => serve(args, false).await,
            Command::Quickstart(args) => serve(args, true).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            std::process::ExitCode::FAILURE
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

/// Local URL for a listener address (unspecified addresses are reached via loopback).
fn local_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("http://{ip}:{}", addr.port())
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

async fn serve(args: ServeArgs, quickstart: bool) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    if std::fs::read_dir(&args.data_dir).is_err() {
        bail!("cannot read the data directory {}", args.data_dir.display());
    }
    let database = args
        .database
        .clone()
        .unwrap_or_else(|| args.data_dir.join("gatehouse.db").display().to_string());
    let store = gatehouse_store::open(&database)
        .await
        .context("cannot open the database")?;

    // Bind first: a port in use is a start-up error, not a half-running server.
    let admin_listener = bind(args.admin_listen, "admin").await?;
    let identity_listener = bind(args.identity_listen, "identity").await?;
    let admin_addr = admin_listener.local_addr()?;
    let identity_addr = identity_listener.local_addr()?;
    let public_url = args
        .identity_public_url
        .clone()
        .unwrap_or_else(|| local_url(identity_addr));

    let master = master_key(&args.data_dir)?;
    let identity = Identity::load(store.clone(), master, &public_url)
        .await
        .context("cannot load the identity server's configuration")?;
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
        // A quickstart shows its token every time, so it mints a fresh one per start.
        let t = random_token()?;
        store
            .put_setting(ADMIN_TOKEN_SETTING, &token_digest_hex(&t))
            .await?;
        announce = Some(t);
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
    if let Some(d) = store.get_setting(ADMIN_TOKEN_SETTING).await? {
        digests.push(d);
    }
    let auth = AdminAuth::from_hex_digests(digests.iter().map(String::as_str));

    let ready = Arc::new(AtomicBool::new(false));
    let admin = admin_router(
        AdminState {
            identity: identity.clone(),
            ready: ready.clone(),
        },
        auth,
    );
    let issuer = gatehouse_identity::http::router(identity.clone());

    println!("admin listening on {}", local_url(admin_addr));
    println!(
        "identity listening on {} (issuers under {public_url})",
        local_url(identity_addr)
    );
    println!("database: {}", store.backend());
    if quickstart && let Some(t) = &announce {
        {
            println!("\nGatehouse quickstart is running. In another terminal:\n");
            println!("export KONNECT_TOKEN={t}");
            println!("export KONNECT_CONTROL_PLANE_URL={}", local_url(admin_addr));
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
    let admin_task = tokio::spawn(
        axum::serve(admin_listener, admin)
            .with_graceful_shutdown(wait(stop_rx.clone()))
            .into_future(),
    );
    let identity_task = tokio::spawn(
        axum::serve(identity_listener, issuer)
            .with_graceful_shutdown(wait(stop_rx.clone()))
            .into_future(),
    );
    ready.store(true, Ordering::Release);
    use std::future::IntoFuture;
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    for task in [admin_task, identity_task] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("a listener failed: {e}"),
            Err(e) => bail!("a listener task failed: {e}"),
        }
    }
    Ok(())
}
