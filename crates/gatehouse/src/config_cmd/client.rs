//! The Admin API as `diff`, `sync`, `dump` and `reset` use it: reading every entity of a
//! control plane, and writing one entity per call.

use anyhow::{Context, Result, anyhow, bail};
use gatehouse_core::gateway::EntityKind;
use gatehouse_declarative::plan::{Action, Change};
use gatehouse_declarative::state::{KINDS, State};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The page size of every list read (the Admin API's largest).
const PAGE: usize = 1000;

/// Where and how to reach a node's Admin API.
pub struct Target {
    /// The admin listener's URL.
    pub addr: String,
    /// `Name: value` headers sent with every request.
    pub headers: Vec<String>,
    /// A PEM file of CA certificates to trust besides the system's.
    pub ca_cert: Option<String>,
    /// The control plane to work on (None: the Kong Admin API paths' own).
    pub control_plane: Option<String>,
}

/// A client bound to one control plane's core entities.
pub struct Client {
    http: reqwest::Client,
    /// `http://host:port` and the path prefix of the core entities.
    base: String,
    /// How many calls read (GET).
    reads: AtomicUsize,
    /// How many calls wrote (PUT, DELETE).
    writes: AtomicUsize,
}

fn header(line: &str) -> Result<(HeaderName, HeaderValue)> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| anyhow!("--headers '{line}': expected 'Name: value'"))?;
    let name = HeaderName::try_from(name.trim())
        .with_context(|| format!("--headers '{line}': bad header name"))?;
    let mut value = HeaderValue::try_from(value.trim())
        .with_context(|| format!("--headers '{line}': bad header value"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// The message of an Admin API error body, else the start of the body.
fn error_text(status: reqwest::StatusCode, body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.get("message")
            .or_else(|| v.get("detail"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let message = message.unwrap_or_else(|| body.chars().take(200).collect());
    format!("{} {}", status.as_u16(), message)
}

impl Client {
    /// Connects to `target` and finds its control plane.
    pub async fn connect(target: &Target) -> Result<Self> {
        let mut headers = HeaderMap::new();
        for line in &target.headers {
            let (name, value) = header(line)?;
            headers.append(name, value);
        }
        if !headers.contains_key(reqwest::header::AUTHORIZATION)
            && let Ok(token) = std::env::var("GATEHOUSE_ADMIN_TOKEN")
        {
            let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                .context("GATEHOUSE_ADMIN_TOKEN is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60));
        if let Some(file) = &target.ca_cert {
            let pem = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{file}: not PEM certificates"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().context("cannot build the HTTP client")?;
        let root = target.addr.trim_end_matches('/').to_owned();
        let mut client = Client {
            http,
            base: root.clone(),
            reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
        };
        if let Some(name) = &target.control_plane {
            let list = client
                .get_json(&format!(
                    "{root}/v2/control-planes?filter%5Bname%5D%5Beq%5D={}",
                    url_escape(name)
                ))
                .await?;
            let id = list["data"]
                .as_array()
                .and_then(|d| d.iter().find(|cp| cp["name"] == name.as_str()))
                .and_then(|cp| cp["id"].as_str())
                .ok_or_else(|| anyhow!("{root} has no control plane named '{name}'"))?;
            client.base = format!("{root}/v2/control-planes/{id}/core-entities");
        }
        Ok(client)
    }

    /// Logs how many calls were made (`RUST_LOG=gatehouse=debug`; the benchmark reads it).
    pub fn log_calls(&self) {
        tracing::debug!(
            reads = self.reads.load(Ordering::Relaxed),
            writes = self.writes.load(Ordering::Relaxed),
            "admin API calls"
        );
    }

    async fn get_json(&self, url: &str) -> Result<Value> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .with_context(|| format!("reading {url}"))?;
        if !status.is_success() {
            bail!("GET {url}: {}", error_text(status, &body));
        }
        serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON"))
    }

    /// Every entity of `kind`, all pages.
    async fn list(&self, kind: EntityKind) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut offset: Option<String> = None;
        loop {
            let mut url = format!("{}/{}?size={PAGE}", self.base, kind.as_str());
            if let Some(o) = &offset {
                url.push_str("&offset=");
                url.push_str(&url_escape(o));
            }
            let mut page = self.get_json(&url).await?;
            if let Some(Value::Array(data)) = page.get_mut("data").map(Value::take) {
                out.extend(data);
            }
            match page.get("offset").and_then(Value::as_str) {
                Some(o) if !o.is_empty() => offset = Some(o.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// The node's whole state, read kind by kind.
    pub async fn state(&self) -> Result<State> {
        let lists = futures::future::try_join_all(
            KINDS
                .iter()
                .map(|k| async move { Ok::<_, anyhow::Error>((*k, self.list(*k).await?)) }),
        )
        .await?;
        let lists: HashMap<EntityKind, Vec<Value>> = lists.into_iter().collect();
        Ok(State::from_api(lists)?)
    }

    /// Makes one change: a PUT of the entity to its id, or a DELETE.
    pub async fn apply(&self, change: &Change) -> Result<()> {
        let e = &change.entity;
        let url = format!("{}/{}/{}", self.base, e.kind.as_str(), e.id);
        let request = match change.action {
            Action::Delete => self.http.delete(&url),
            Action::Create | Action::Update => self.http.put(&url).json(&e.write_body()),
        };
        self.writes.fetch_add(1, Ordering::Relaxed);
        let resp = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        // A delete of what is gone already is done.
        if status.is_success() || (change.action == Action::Delete && status.as_u16() == 404) {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        bail!("{}", error_text(status, &body))
    }
}

fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
