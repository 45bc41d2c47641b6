//! Lookups the simulator builds over a world on first use, so that one operation costs the
//! same in a world of ten machines as in one of a hundred thousand: an operation's status by
//! id (instead of a search of the whole `history`), the machines that own a disk UUID, and the
//! replication group of a machine.
//!
//! The index lives inside [`crate::World`] but is never written, compares equal to any other
//! and starts empty in a clone. `history` is append-only, so its part catches up with new
//! entries on each use (and starts over if the history shrank); disk UUIDs and group
//! membership never change while operations run, so those are built once.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use lifeboat_engine::provider::OperationId;

use crate::world::{Event, HistoryEntry, World};

#[derive(Default)]
pub struct Index {
    history: Mutex<HistoryIndex>,
    disks: OnceLock<HashMap<String, Vec<String>>>,
    groups: OnceLock<HashMap<String, String>>,
}

#[derive(Default)]
struct HistoryIndex {
    /// How many entries of `history` are indexed.
    upto: usize,
    /// Each operation's last `finished` or `failed` entry.
    last_end: HashMap<OperationId, usize>,
}

impl Index {
    /// The position of the last `finished` or `failed` entry of `id` in `history`.
    pub fn last_end(&self, history: &[HistoryEntry], id: &OperationId) -> Option<usize> {
        let mut index = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if history.len() < index.upto {
            *index = HistoryIndex::default();
        }
        for (i, entry) in history.iter().enumerate().skip(index.upto) {
            if matches!(entry.event, Event::Finished | Event::Failed) {
                index.last_end.insert(entry.operation.clone(), i);
            }
        }
        index.upto = history.len();
        index.last_end.get(id).copied()
    }

    /// The machines (by name, in name order) that have the disk UUID `uuid`.
    pub fn disk_owners<'a>(&'a self, world: &World, uuid: &str) -> &'a [String] {
        let disks = self.disks.get_or_init(|| {
            let mut disks: HashMap<String, Vec<String>> = HashMap::new();
            for (name, machine) in &world.machines {
                for uuid in &machine.disk_uuids {
                    let owners = disks.entry(uuid.clone()).or_default();
                    if owners.last() != Some(name) {
                        owners.push(name.clone());
                    }
                }
            }
            disks
        });
        disks.get(uuid).map_or(&[], Vec::as_slice)
    }

    /// The first replication group (in name order) that lists `machine`.
    pub fn group_of<'a>(&'a self, world: &World, machine: &str) -> Option<&'a str> {
        let groups = self.groups.get_or_init(|| {
            let mut groups = HashMap::new();
            for (group, members) in &world.replication_groups {
                for member in &members.machines {
                    groups
                        .entry(member.value.clone())
                        .or_insert_with(|| group.clone());
                }
            }
            groups
        });
        groups.get(machine).map(String::as_str)
    }
}

/// A clone starts empty: the index belongs to the world it was built from, and the clone may
/// be changed in ways the index would not see.
impl Clone for Index {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Derived data: two worlds are equal when their documents are.
impl PartialEq for Index {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}
