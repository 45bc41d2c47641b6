//! Drift: where the sites no longer match what the state records (`plan --refresh-only`).
//!
//! Only machines the state knows are compared: a machine lifeboat never acted on has no
//! recorded stage to drift from. The state records what lifeboat did; the facts say what is
//! there now; any difference is something done outside lifeboat (or an operation that
//! finished after a crash), and a reviewer should see it before the next apply.

use crate::address::Address;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::State;
use crate::model::Recovery;
use crate::provider::facts::{AppliedSettings, Facts};
use crate::provider::{ReprotectSettings, same_retention_drive};

/// One difference between the state and the sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Drift {
    /// `machine.NAME`.
    pub address: Address,
    pub kind: DriftKind,
    /// The recorded value (a stage, or `key=value` settings); `null` when there is none.
    pub state: Option<String>,
    /// The observed value; `null` when the machine is gone.
    pub site: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DriftKind {
    /// The machine is at another stage than the state records.
    Stage,
    /// The machine's reprotect settings differ from those the state records.
    Settings,
    /// The state knows the machine; the site does not have it.
    Missing,
}

/// A setting's name and value.
type Setting<'a> = (&'static str, &'a str);
type Observed<'a> = (&'static str, Option<&'a str>);

fn pairs(s: &ReprotectSettings) -> [Setting<'_>; 5] {
    [
        ("master_target", &s.master_target),
        ("process_server", &s.process_server),
        ("datastore", &s.datastore),
        ("retention_drive", &s.retention_drive),
        ("recovery", s.recovery.as_str()),
    ]
}

/// The observed settings; `None` where the provider cannot tell, which is never drift.
fn observed(s: &AppliedSettings) -> [Observed<'_>; 5] {
    [
        ("master_target", s.master_target.as_deref()),
        ("process_server", s.process_server.as_deref()),
        ("datastore", s.datastore.as_deref()),
        ("retention_drive", s.retention_drive.as_deref()),
        ("recovery", s.recovery.map(Recovery::as_str)),
    ]
}

/// Compares every machine of the state with the facts. In state order (by name), so the same
/// inputs always give the same list.
pub fn detect(state: &State, facts: &Facts) -> Vec<Drift> {
    let mut drift = Vec::new();
    for (name, machine) in &state.machines {
        let address = Address::machine(name.clone());
        let Some(fact) = facts.machines.get(name) else {
            drift.push(Drift {
                address,
                kind: DriftKind::Missing,
                state: Some(machine.stage.to_string()),
                site: None,
                message: format!(
                    "the state records `{name}` as {}, but the site does not have it",
                    machine.stage
                ),
            });
            continue;
        };
        if fact.stage != machine.stage {
            drift.push(Drift {
                address: address.clone(),
                kind: DriftKind::Stage,
                state: Some(machine.stage.to_string()),
                site: Some(fact.stage.to_string()),
                message: format!("recorded as {}, observed {}", machine.stage, fact.stage),
            });
        }
        if let (Some(recorded), Some(seen)) = (&machine.settings, &fact.settings) {
            let differing: Vec<(Setting<'_>, Setting<'_>)> = pairs(recorded)
                .into_iter()
                .zip(observed(seen))
                .filter_map(|(a, (key, seen))| Some((a, (key, seen?))))
                .filter(|(a, b)| {
                    if a.0 == "retention_drive" {
                        !same_retention_drive(a.1, b.1)
                    } else {
                        a.1 != b.1
                    }
                })
                .collect();
            if !differing.is_empty() {
                let recorded_text = differing
                    .iter()
                    .map(|(a, _)| format!("{}={}", a.0, a.1))
                    .collect::<Vec<_>>()
                    .join(", ");
                let observed_text = differing
                    .iter()
                    .map(|(_, b)| format!("{}={}", b.0, b.1))
                    .collect::<Vec<_>>()
                    .join(", ");
                drift.push(Drift {
                    address,
                    kind: DriftKind::Settings,
                    state: Some(recorded_text),
                    site: Some(observed_text),
                    message: format!(
                        "reprotect settings changed outside lifeboat: {}",
                        differing
                            .iter()
                            .map(|(a, b)| format!("{} `{}` → `{}`", a.0, a.1, b.1))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Recovery;
    use crate::provider::Stage;
    use crate::provider::facts::MachineFacts;
    use crate::state::MachineState;

    #[test]
    fn reports_stage_settings_and_missing_machines_and_nothing_else() {
        let settings = ReprotectSettings {
            master_target: "mt-01".into(),
            process_server: "ps-01".into(),
            datastore: "vsan-01".into(),
            retention_drive: "R:".into(),
            recovery: Recovery::Original,
            failback_policy: "auto".into(),
            home: None,
        };
        let applied = |datastore: &str| AppliedSettings {
            master_target: Some("mt-01".into()),
            process_server: Some("ps-01".into()),
            datastore: Some(datastore.into()),
            retention_drive: Some("R".into()),
            recovery: Some(Recovery::Original),
        };
        let mut state = State::new();
        let at = |stage| MachineState {
            settings: Some(settings.clone()),
            ..MachineState::at(stage)
        };
        state.commit(
            [
                ("same".to_string(), at(Stage::Reprotected)),
                ("moved".to_string(), at(Stage::Reprotected)),
                ("restaged".to_string(), at(Stage::Reprotected)),
                ("gone".to_string(), at(Stage::Reprotected)),
            ]
            .into(),
        );
        let mut facts = Facts::default();
        let fact = |stage, datastore| MachineFacts {
            settings: Some(applied(datastore)),
            ..MachineFacts::unknown(stage)
        };
        facts
            .machines
            .insert("same".into(), fact(Stage::Reprotected, "vsan-01"));
        facts
            .machines
            .insert("moved".into(), fact(Stage::Reprotected, "vmfs-01"));
        facts
            .machines
            .insert("restaged".into(), fact(Stage::FailedOver, "vsan-01"));
        facts
            .machines
            .insert("untracked".into(), fact(Stage::FailedOver, "vsan-01"));
        let drift = detect(&state, &facts);
        let kinds: Vec<(String, DriftKind)> = drift
            .iter()
            .map(|d| (d.address.to_string(), d.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("machine.gone".to_string(), DriftKind::Missing),
                ("machine.moved".to_string(), DriftKind::Settings),
                ("machine.restaged".to_string(), DriftKind::Stage),
            ]
        );
        assert_eq!(drift[1].state.as_deref(), Some("datastore=vsan-01"));
        assert_eq!(drift[1].site.as_deref(), Some("datastore=vmfs-01"));
        assert!(drift[1].message.contains("datastore `vsan-01` → `vmfs-01`"));
    }
}
