//! `gatehouse config …`: decK's commands on decK's state files. `validate` checks files
//! offline; the commands that talk to a running node (`diff`, `sync`, `dump`, `reset`) come
//! with the rest of declarative configuration (docs/declarative.md).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::io::Read;

/// decK's commands.
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Checks state files offline, as `deck gateway validate` does: the file format, every
    /// entity with the Admin API's rules, references and unique names. Prints every problem
    /// with its file and path, and exits 1 if there is any.
    Validate(StateArgs),
}

/// The state files a command reads.
#[derive(Args)]
pub struct StateArgs {
    /// A state file, YAML or JSON; `-` reads standard input. Repeat to merge several files
    /// [default: kong.yaml].
    #[arg(short = 's', long = "state")]
    state: Vec<String>,
}

/// Runs `command`.
pub fn run(command: ConfigCommand) -> Result<()> {
    match command {
        ConfigCommand::Validate(args) => validate(args),
    }
}

fn validate(args: StateArgs) -> Result<()> {
    let files = if args.state.is_empty() {
        vec!["kong.yaml".to_owned()]
    } else {
        args.state
    };
    let env = |name: &str| std::env::var(name).ok();
    let mut docs = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for file in &files {
        let bytes = read(file)?;
        match gatehouse_declarative::load(file, &bytes, &env) {
            Ok(doc) => docs.push(doc),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty()
        && let Err(found) = gatehouse_declarative::validate(&docs, &gatehouse_plugins::registry())
    {
        problems = found;
    }
    for p in &problems {
        eprintln!("{p}");
    }
    match problems.len() {
        0 => Ok(()),
        1 => bail!("1 problem in the state files"),
        n => bail!("{n} problems in the state files"),
    }
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
