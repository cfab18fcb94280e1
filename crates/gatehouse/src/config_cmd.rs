//! `gatehouse config …`: decK's commands on decK's state files. `validate` checks files
//! offline; `diff`, `sync`, `dump` and `reset` work on a running node through its Kong Admin
//! API paths, or a named control plane's Konnect paths (docs/declarative.md).

mod client;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use client::{Client, Target};
use futures::StreamExt;
use gatehouse_declarative::dump::{DumpOptions, dump};
use gatehouse_declarative::plan::{Counts, Plan};
use gatehouse_declarative::state::State;
use gatehouse_declarative::{Document, Options, Problem};
use std::io::{Read, Write};

/// decK's commands.
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Checks state files offline, as `deck gateway validate` does: the file format, every
    /// entity with the Admin API's rules, references and unique names. Prints every problem
    /// with its file and path, and exits 1 if there is any.
    Validate(StateArgs),
    /// Shows what `sync` would change on a node, in decK's lines and summary.
    Diff(SyncArgs),
    /// Makes a node hold what the state files say: the fewest Admin API calls, dependencies
    /// first. A file with any problem changes nothing.
    Sync(SyncArgs),
    /// Writes a node's configuration as a state file that syncs back with an empty diff.
    Dump(DumpArgs),
    /// Deletes every entity of a node's control plane (only those with `--select-tag`'s
    /// tags, when given).
    Reset(ResetArgs),
}

/// The state files a command reads.
#[derive(Args)]
pub struct StateArgs {
    /// A state file, YAML or JSON, or a directory of them (read recursively); `-` reads
    /// standard input. Repeat to merge several [default: kong.yaml].
    #[arg(short = 's', long = "state")]
    state: Vec<String>,
}

/// How to reach the node.
#[derive(Args)]
pub struct NodeArgs {
    /// The node's admin listener.
    #[arg(
        long,
        visible_alias = "kong-addr",
        env = "DECK_KONG_ADDR",
        default_value = "http://127.0.0.1:8001"
    )]
    addr: String,
    /// A header sent with every request, `Name: value` (repeatable). Without an
    /// `Authorization` header, `GATEHOUSE_ADMIN_TOKEN` is sent as a bearer token.
    #[arg(long = "headers", short = 'H')]
    headers: Vec<String>,
    /// A PEM file of CA certificates that sign the admin listener's certificate.
    #[arg(long)]
    ca_cert: Option<String>,
    /// The control plane to work on, by name [default: the file's
    /// `_konnect.control_plane_name`, else the one the Kong Admin API paths serve].
    #[arg(long)]
    control_plane: Option<String>,
}

/// Which entities a command manages.
#[derive(Args)]
pub struct Selection {
    /// Manage only the entities carrying this tag (repeatable: all of them); the others are
    /// left alone. A state file's `_info.select_tags` say the same.
    #[arg(long = "select-tag")]
    select_tags: Vec<String>,
    /// Leave consumers (and the plugins scoped to one) alone.
    #[arg(long)]
    skip_consumers: bool,
}

/// `diff` and `sync`.
#[derive(Args)]
pub struct SyncArgs {
    #[command(flatten)]
    files: StateArgs,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    selection: Selection,
    /// How many Admin API calls `sync` makes at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallelism: u16,
    /// Exit 2 when there are changes (`diff`), or when changes were made (`sync`).
    #[arg(long)]
    non_zero_exit_code: bool,
}

/// `dump`.
#[derive(Args)]
pub struct DumpArgs {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    selection: Selection,
    /// The file written; `-` writes standard output.
    #[arg(short = 'o', long = "output-file", default_value = "kong.yaml")]
    output_file: String,
    /// `yaml` or `json`.
    #[arg(long, default_value = "yaml", value_parser = ["yaml", "json"])]
    format: String,
    /// Keep the ids of named entities too.
    #[arg(long)]
    with_id: bool,
    /// Overwrite an existing file.
    #[arg(long)]
    yes: bool,
}

/// `reset`.
#[derive(Args)]
pub struct ResetArgs {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    selection: Selection,
    /// Confirms the deletion; `reset` refuses to run without it.
    #[arg(long)]
    force: bool,
    /// How many Admin API calls are made at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallelism: u16,
}

/// The process's exit status when a command ends without an error to print
/// (`--non-zero-exit-code`).
#[derive(Debug)]
pub struct ExitStatus(pub u8);

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitStatus {}

/// Runs `command`.
pub async fn run(command: ConfigCommand) -> Result<()> {
    match command {
        ConfigCommand::Validate(args) => {
            let docs = load(&args)?;
            resolve(&docs, &Options::default()).map(drop)
        }
        ConfigCommand::Diff(args) => sync(args, false).await,
        ConfigCommand::Sync(args) => sync(args, true).await,
        ConfigCommand::Dump(args) => dump_cmd(args).await,
        ConfigCommand::Reset(args) => reset(args).await,
    }
}

/// Prints `problems` and fails, when there are any.
fn report(problems: &[Problem]) -> Result<()> {
    for p in problems {
        eprintln!("{p}");
    }
    match problems.len() {
        0 => Ok(()),
        1 => bail!("1 problem in the state files"),
        n => bail!("{n} problems in the state files"),
    }
}

/// Reads and parses the state files.
fn load(args: &StateArgs) -> Result<Vec<Document>> {
    let files = if args.state.is_empty() {
        vec!["kong.yaml".to_owned()]
    } else {
        args.state.clone()
    };
    let mut expanded = Vec::with_capacity(files.len());
    for file in files {
        if file != "-" && std::path::Path::new(&file).is_dir() {
            let found = state_files_in(std::path::Path::new(&file))?;
            if found.is_empty() {
                bail!("{file}: no .yaml, .yml or .json files in the directory");
            }
            expanded.extend(found);
        } else {
            expanded.push(file);
        }
    }
    let env = |name: &str| std::env::var(name).ok();
    let mut docs = Vec::with_capacity(expanded.len());
    let mut problems = Vec::new();
    for file in &expanded {
        let bytes = read(file)?;
        match gatehouse_declarative::load(file, &bytes, &env) {
            Ok(doc) => docs.push(doc),
            Err(p) => problems.push(p),
        }
    }
    report(&problems)?;
    Ok(docs)
}

/// The state files in `dir` and the directories under it (`.yaml`, `.yml`, `.json`, as decK
/// reads a directory given as `-s`), sorted by path so merges are repeatable.
fn state_files_in(dir: &std::path::Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries =
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot read {}", d.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            {
                out.push(path.display().to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn resolve(docs: &[Document], options: &Options) -> Result<State> {
    match gatehouse_declarative::resolve(docs, &gatehouse_plugins::registry(), options) {
        Ok(state) => Ok(state),
        Err(problems) => report(&problems).map(|()| State::default()),
    }
}

fn target(node: &NodeArgs, file_control_plane: Option<&str>) -> Target {
    Target {
        addr: node.addr.clone(),
        headers: node.headers.clone(),
        ca_cert: node.ca_cert.clone(),
        control_plane: node
            .control_plane
            .clone()
            .or_else(|| file_control_plane.map(str::to_owned)),
    }
}

/// The part of the node's state a command manages.
async fn managed(client: &Client, selection: &Selection, tags: &[String]) -> Result<State> {
    let mut current = client.state().await?;
    current.select(tags, selection.skip_consumers);
    Ok(current)
}

/// `diff` (`apply` false) and `sync`.
async fn sync(args: SyncArgs, apply: bool) -> Result<()> {
    let docs = load(&args.files)?;
    // Every problem in the files is found before the node is asked anything.
    let offline = resolve(
        &docs,
        &Options {
            select_tags: args.selection.select_tags.clone(),
            ..Options::default()
        },
    )?;
    let client = Client::connect(&target(&args.node, offline.control_plane.as_deref())).await?;
    let mut current = client.state().await?;
    // Entities kept on the node that the files may refer to (`default_lookup_tags`).
    let lookup = (!offline.lookup_tags.is_empty()).then(|| current.lookup(&offline.lookup_tags));
    current.select(&offline.select_tags, args.selection.skip_consumers);
    let mut wanted = resolve(
        &docs,
        &Options {
            known: current.known(),
            select_tags: args.selection.select_tags.clone(),
            lookup,
        },
    )?;
    wanted.select(&[], args.selection.skip_consumers);
    let plan = Plan::new(&wanted, &current);
    let counts = if apply {
        execute(&client, &plan, args.parallelism).await?
    } else {
        let mut out = std::io::stdout().lock();
        for change in &plan.changes {
            writeln!(out, "{}", change.describe())?;
        }
        plan.counts()
    };
    println!("{}", counts.summary());
    client.log_calls();
    if args.non_zero_exit_code && counts != Counts::default() {
        return Err(ExitStatus(2).into());
    }
    Ok(())
}

/// Makes `plan`'s changes, `parallelism` at a time within each phase; stops after a phase
/// with a failed change (the next `sync` completes the rest).
async fn execute(client: &Client, plan: &Plan, parallelism: u16) -> Result<Counts> {
    let mut counts = Counts::default();
    for phase in plan.phases() {
        let mut results = futures::stream::iter(phase)
            .map(|change| async move { (change, client.apply(change).await) })
            .buffer_unordered(usize::from(parallelism));
        let mut failed = 0;
        while let Some((change, result)) = results.next().await {
            match result {
                Ok(()) => {
                    println!("{}", change.describe());
                    counts.add(change.action);
                }
                Err(e) => {
                    failed += 1;
                    eprintln!(
                        "error: {}: {e:#}",
                        change.describe().lines().next().unwrap_or_default()
                    );
                }
            }
        }
        if failed > 0 {
            println!("{}", counts.summary());
            bail!(
                "{failed} changes failed; what succeeded stays, and the next sync completes the rest"
            );
        }
    }
    Ok(counts)
}

async fn dump_cmd(args: DumpArgs) -> Result<()> {
    if args.output_file != "-" && !args.yes && std::path::Path::new(&args.output_file).exists() {
        bail!("{} exists; pass --yes to overwrite it", args.output_file);
    }
    let client = Client::connect(&target(&args.node, None)).await?;
    let state = managed(&client, &args.selection, &args.selection.select_tags).await?;
    let file = dump(
        &state,
        &DumpOptions {
            with_id: args.with_id,
            select_tags: args.selection.select_tags.clone(),
            control_plane: args.node.control_plane.clone(),
        },
    );
    let text = if args.format == "json" {
        serde_json::to_string_pretty(&file)? + "\n"
    } else {
        yaml_serde::to_string(&file).context("cannot write YAML")?
    };
    if args.output_file == "-" {
        std::io::stdout().lock().write_all(text.as_bytes())?;
    } else {
        std::fs::write(&args.output_file, text)
            .with_context(|| format!("cannot write {}", args.output_file))?;
    }
    Ok(())
}

async fn reset(args: ResetArgs) -> Result<()> {
    if !args.force {
        bail!("reset deletes every entity of the control plane; pass --force to confirm");
    }
    let client = Client::connect(&target(&args.node, None)).await?;
    let current = managed(&client, &args.selection, &args.selection.select_tags).await?;
    let plan = Plan::new(&State::default(), &current);
    let counts = execute(&client, &plan, args.parallelism).await?;
    println!("{}", counts.summary());
    client.log_calls();
    Ok(())
}

/// A state file's bytes, at most one byte over the limit (enough to refuse it).
fn read(file: &str) -> Result<Vec<u8>> {
    let limit = gatehouse_declarative::MAX_FILE_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    if file == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read {file}"))?;
    }
    Ok(bytes)
}
