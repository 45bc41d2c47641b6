//! The steps every command that looks at the sites shares, after the plan is valid: take the
//! state's lock and read the state (creating it, or folding its journal), refresh the facts
//! through the provider, and validate again knowing where machines replicate today (master
//! targets lifeboat chose stay sticky).

use std::collections::HashMap;
use std::time::Duration;

use crate::model::Plan;
use crate::preflight;
use crate::provider::{Facts, Provider, ProviderError};
use crate::state::{LockGuard, LockInfo, State, StateBackend, StateError};
use crate::validate::{self, Validation};

/// Locks the state for `operation` (waiting up to `timeout`) and reads it. A missing state is
/// created (a new lineage, written at once, so that even the first plan has one); what a
/// previous apply left in the journal (it was killed) is folded into the state file now,
/// under the lock, so that this run appends to an empty journal.
pub fn open_state(
    backend: &dyn StateBackend,
    operation: &str,
    timeout: Option<Duration>,
) -> Result<(Option<LockGuard>, State), StateError> {
    // Without the lock (`--lock=false`, a read-only plan beside a running apply) the state
    // is only read: never created, never folded.
    let Some(timeout) = timeout else {
        return Ok((None, backend.read()?.unwrap_or_else(State::new)));
    };
    let lock = backend.lock(LockInfo::new(operation), timeout)?;
    let state = match backend.read()? {
        Some(state) => {
            backend.compact(&state)?;
            state
        }
        None => {
            // The first command creates the state, so even the first plan has a lineage.
            let state = State::new();
            backend.write(&state)?;
            state
        }
    };
    Ok((Some(lock), state))
}

/// The facts of both sites, as far as the plan names them.
pub async fn refresh(plan: &Plan, provider: &dyn Provider) -> Result<Facts, ProviderError> {
    provider.refresh(&preflight::refresh_request(plan)).await
}

/// The master target each machine replicates through today, by machine name.
pub fn current_targets(facts: &Facts) -> HashMap<String, String> {
    facts
        .machines
        .iter()
        .filter_map(|(name, fact)| {
            Some((name.clone(), fact.settings.as_ref()?.master_target.clone()?))
        })
        .collect()
}

/// Validates `plan` knowing the master targets machines replicate through, when they differ
/// from `validated_with` (the targets the validation in hand was made with). Validation is
/// deterministic in the plan and the current targets, so with the same targets (a fresh
/// estate has none) the validation in hand is the answer already: `None`.
pub fn revalidate(
    plan: &Plan,
    facts: &Facts,
    validated_with: &HashMap<String, String>,
) -> Option<(Validation, HashMap<String, String>)> {
    let current = current_targets(facts);
    if &current == validated_with {
        return None;
    }
    let borrowed: HashMap<&str, &str> = current
        .iter()
        .map(|(name, target)| (name.as_str(), target.as_str()))
        .collect();
    Some((validate::validate_with(plan, &borrowed), current))
}
