//! `state push`: a state document written to a backend under its lock, as the one step of
//! moving a team's state from `local` to a remote backend (or restoring a copy).
//!
//! The stored state is replaced only by the same lineage at a higher serial, unless forced:
//! pushing an old copy over newer work, or another estate's state over this one, would make
//! lifeboat forget operations it carried out.

use std::time::Duration;

use crate::state::{LockInfo, State, StateBackend, StateError};

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    Written {
        lineage: String,
        serial: u64,
    },
    /// The stored state is this one already.
    Unchanged {
        serial: u64,
    },
}

/// Why a push was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(
        "the stored state is of lineage `{stored}`, the file of `{pushed}`: it is another state, and pushing it would make lifeboat forget what the stored one records"
    )]
    Lineage { stored: String, pushed: String },
    #[error(
        "the stored state is at serial {stored}, newer than the file's {pushed}: pushing it would lose the changes in between"
    )]
    Older { stored: u64, pushed: u64 },
    #[error(
        "the stored state and the file are both at serial {serial} but differ: one of them was changed outside lifeboat"
    )]
    Diverged { serial: u64 },
    #[error(transparent)]
    State(#[from] StateError),
}

/// Writes `state` to `backend`, holding its lock (waiting up to `timeout`).
pub fn push(
    backend: &dyn StateBackend,
    state: State,
    force: bool,
    timeout: Duration,
) -> Result<Pushed, PushError> {
    let _lock = backend.lock(LockInfo::new("state push"), timeout)?;
    let stored = backend.read()?;
    if let Some(stored) = &stored
        && !force
    {
        if stored.lineage != state.lineage {
            return Err(PushError::Lineage {
                stored: stored.lineage.clone(),
                pushed: state.lineage,
            });
        }
        if stored.serial > state.serial {
            return Err(PushError::Older {
                stored: stored.serial,
                pushed: state.serial,
            });
        }
        if stored.serial == state.serial {
            if *stored == state {
                return Ok(Pushed::Unchanged {
                    serial: state.serial,
                });
            }
            return Err(PushError::Diverged {
                serial: state.serial,
            });
        }
    }
    backend.write(&state)?;
    Ok(Pushed::Written {
        lineage: state.lineage,
        serial: state.serial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Stage;
    use crate::state::{LocalBackend, MachineState};

    #[test]
    fn only_the_same_lineage_at_a_higher_serial_replaces_the_stored_state_unless_forced() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let backend = LocalBackend::new(dir.path().join("state.json"));
        let mut state = State::new();
        assert!(matches!(
            push(&backend, state.clone(), false, Duration::ZERO),
            Ok(Pushed::Written { serial: 0, .. })
        ));
        assert!(matches!(
            push(&backend, state.clone(), false, Duration::ZERO),
            Ok(Pushed::Unchanged { serial: 0 })
        ));
        let old = state.clone();
        state.commit([("a".to_string(), MachineState::at(Stage::Reprotected))].into());
        push(&backend, state.clone(), false, Duration::ZERO).expect("newer");
        assert!(matches!(
            push(&backend, old.clone(), false, Duration::ZERO),
            Err(PushError::Older {
                stored: 1,
                pushed: 0
            })
        ));
        let other = State::new();
        assert!(matches!(
            push(&backend, other.clone(), false, Duration::ZERO),
            Err(PushError::Lineage { .. })
        ));
        let mut diverged = old.clone();
        diverged.commit([("b".to_string(), MachineState::at(Stage::FailedBack))].into());
        assert!(matches!(
            push(&backend, diverged, false, Duration::ZERO),
            Err(PushError::Diverged { serial: 1 })
        ));
        push(&backend, other.clone(), true, Duration::ZERO).expect("forced");
        assert_eq!(backend.read().expect("reads"), Some(other));
    }
}
