//! What `diff` shows and `sync` does: the changes that turn a node's state into a file's,
//! one Admin API call each, in an order the node accepts (deletes first, dependants before
//! what they depend on; then creates and updates, dependencies first).

use crate::state::{Entity, KINDS, State, sorted};
use gatehouse_core::gateway::EntityKind;
use std::collections::HashMap;
use std::fmt::Write as _;
use uuid::Uuid;

/// What one change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new entity (PUT to its id).
    Create,
    /// A changed entity (PUT to its id).
    Update,
    /// An entity the file does not hold (DELETE).
    Delete,
}

/// One change: one Admin API call.
#[derive(Debug, Clone)]
pub struct Change {
    /// What it does.
    pub action: Action,
    /// The entity as it will be (as it is, for a delete).
    pub entity: Entity,
    /// The entity as it is, for an update.
    pub before: Option<Entity>,
}

impl Change {
    /// decK's line for it: `creating service example-service`, and for an update the
    /// entity's fields with the changed ones marked `-`/`+`.
    pub fn describe(&self) -> String {
        match self.action {
            Action::Create => format!("creating {}", self.entity.label),
            Action::Delete => format!("deleting {}", self.entity.label),
            Action::Update => {
                let mut out = format!("updating {}  {{\n", self.entity.label);
                // Keys in order, and the fields left unset left out.
                let pretty = |e: &Entity| {
                    let shown = sorted(e.write_body());
                    serde_json::to_string_pretty(&shown).unwrap_or_default()
                };
                let old = self.before.as_ref().map(pretty).unwrap_or_default();
                let new = pretty(&self.entity);
                let diff = similar::TextDiff::from_lines(&old, &new);
                // The outer braces are framed by the header and the closing line.
                let lines: Vec<_> = diff.iter_all_changes().collect();
                let inner = lines.len().saturating_sub(1);
                for change in lines.iter().take(inner).skip(1) {
                    let sign = match change.tag() {
                        similar::ChangeTag::Delete => '-',
                        similar::ChangeTag::Insert => '+',
                        similar::ChangeTag::Equal => ' ',
                    };
                    let _ = writeln!(out, "{sign} {}", change.value().trim_end_matches('\n'));
                }
                out.push_str(" }");
                out
            }
        }
    }
}

/// The changes, in the order they must be made.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Every change, deletes first.
    pub changes: Vec<Change>,
}

/// How many changes of each kind a plan makes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Entities created.
    pub created: usize,
    /// Entities updated.
    pub updated: usize,
    /// Entities deleted.
    pub deleted: usize,
}

impl Counts {
    /// decK's summary block.
    pub fn summary(&self) -> String {
        format!(
            "Summary:\n  Created: {}\n  Updated: {}\n  Deleted: {}",
            self.created, self.updated, self.deleted
        )
    }

    /// Counts one change.
    pub fn add(&mut self, action: Action) {
        match action {
            Action::Create => self.created += 1,
            Action::Update => self.updated += 1,
            Action::Delete => self.deleted += 1,
        }
    }
}

impl Plan {
    /// The changes that make `current` (the managed part of a node's state) into `target`.
    pub fn new(target: &State, current: &State) -> Self {
        let wanted = target.entities(current);
        let have = current.entities(target);
        let mut by_id: HashMap<(EntityKind, Uuid), &Entity> =
            have.iter().map(|e| ((e.kind, e.id), e)).collect();
        let mut upserts = Vec::new();
        for e in &wanted {
            match by_id.remove(&(e.kind, e.id)) {
                None => upserts.push(Change {
                    action: Action::Create,
                    entity: e.clone(),
                    before: None,
                }),
                Some(old) if old.body != e.body => upserts.push(Change {
                    action: Action::Update,
                    entity: e.clone(),
                    before: Some(old.clone()),
                }),
                Some(_) => {}
            }
        }
        let mut changes: Vec<Change> = Vec::new();
        for kind in KINDS.iter().rev() {
            changes.extend(
                have.iter()
                    .filter(|e| e.kind == *kind && by_id.contains_key(&(e.kind, e.id)))
                    .map(|e| Change {
                        action: Action::Delete,
                        entity: e.clone(),
                        before: None,
                    }),
            );
        }
        // `entities` lists kinds in dependency order already.
        changes.extend(upserts);
        Plan { changes }
    }

    /// The changes in groups that may run in parallel: one kind and one direction each,
    /// in order.
    pub fn phases(&self) -> Vec<&[Change]> {
        let mut out = Vec::new();
        let mut start = 0;
        for i in 1..=self.changes.len() {
            let boundary = i == self.changes.len() || {
                let (a, b) = (&self.changes[i - 1], &self.changes[i]);
                a.entity.kind != b.entity.kind
                    || (a.action == Action::Delete) != (b.action == Action::Delete)
            };
            if boundary {
                out.push(&self.changes[start..i]);
                start = i;
            }
        }
        out
    }

    /// How many of each.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for change in &self.changes {
            c.add(change.action);
        }
        c
    }
}

#[cfg(test)]
mod tests;
