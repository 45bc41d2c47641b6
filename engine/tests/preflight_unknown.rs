//! A provider that cannot observe a fact (the azure provider sees no snapshots, disk UUIDs,
//! power states or ESXi memory) must never make preflight pass silently: every unknown fact
//! becomes one "not checked" warning per check, never an error and never nothing.

use std::collections::HashMap;

use lifeboat_engine::diagnostic::codes;
use lifeboat_engine::model::Timestamp;
use lifeboat_engine::provider::Facts;
use lifeboat_engine::provider::facts::{
    ConfigurationServerFacts, MachineFacts, MasterTargetFacts, ProcessServerFacts, Stage,
    VcenterFacts,
};
use lifeboat_engine::{Severity, SourceFile, load, preflight, validate};

const PLAN: &str = "\
version: 1
name: unknown-facts
provider: {sim: {world: world.yaml}}
goal: failed-back
site: {vcenter: vc-01, configuration_server: cs-01, process_server: ps-01}
master_targets:
  mt-linux-01: {os: linux, esxi_host: esx-01, retention_drive: /mnt/retention, datastores: [vsan-01]}
machines:
  web-01: {os: linux, datastore: vsan-01}
  web-02: {os: linux, datastore: vsan-01}
";

#[test]
fn unknown_facts_are_reported_as_not_checked() {
    let file = SourceFile::new("plan.yaml", "plan.yaml", PLAN.to_string());
    let plan = load::load_plan(&file).expect("the plan loads");
    let validation = validate::validate(&plan);
    assert!(!validation.has_errors());

    // Everything exists, and nothing beyond existence and stage is known.
    let facts = Facts {
        configuration_server: Some(ConfigurationServerFacts::default()),
        process_server: Some(ProcessServerFacts::default()),
        vcenter: Some(VcenterFacts::default()),
        esxi_hosts: HashMap::from([("esx-01".to_string(), Default::default())]),
        datastores: HashMap::from([("vsan-01".to_string(), Default::default())]),
        master_targets: HashMap::from([("mt-linux-01".to_string(), MasterTargetFacts::default())]),
        machines: ["web-01", "web-02"]
            .into_iter()
            .map(|m| (m.to_string(), MachineFacts::unknown(Stage::FailedOver)))
            .collect(),
        // The plan's goal needs no leg home: these are not asked about.
        home_process_server: None,
        run_as_accounts: None,
    };
    let now = Timestamp(jiff::Timestamp::now());
    let diagnostics = preflight::preflight(&plan, &validation.assignment, &facts, now);
    assert!(
        diagnostics.iter().all(|d| d.severity == Severity::Warning),
        "{diagnostics:#?}"
    );
    assert!(
        diagnostics
            .iter()
            .all(|d| d.message.contains("not checked")),
        "{diagnostics:#?}"
    );
    let warned: std::collections::BTreeSet<&str> = diagnostics.iter().map(|d| d.code).collect();
    for code in [
        codes::PREFLIGHT_MASTER_TARGET_SNAPSHOTS,
        codes::PREFLIGHT_DISK_UUID_CONFLICT,
        codes::PREFLIGHT_VM_POWERED_ON,
        codes::PREFLIGHT_ESXI_MEMORY,
        codes::PREFLIGHT_VCENTER_PERMISSIONS,
        codes::PREFLIGHT_AGENT_NOT_REGISTERED,
    ] {
        assert!(
            warned.contains(code),
            "no not-checked warning for {code}: {diagnostics:#?}"
        );
    }
    // Two machines with unknown power state: one warning that counts both.
    let power: Vec<_> = diagnostics
        .iter()
        .filter(|d| d.code == codes::PREFLIGHT_VM_POWERED_ON)
        .collect();
    assert_eq!(power.len(), 1);
    assert!(
        power[0].message.contains("2 entries"),
        "{}",
        power[0].message
    );
}

#[test]
fn a_missing_master_target_is_an_error_not_an_unknown() {
    let file = SourceFile::new("plan.yaml", "plan.yaml", PLAN.to_string());
    let plan = load::load_plan(&file).expect("the plan loads");
    let validation = validate::validate(&plan);
    let facts = Facts {
        machines: ["web-01", "web-02"]
            .into_iter()
            .map(|m| (m.to_string(), MachineFacts::unknown(Stage::FailedOver)))
            .collect(),
        ..Facts::default()
    };
    let diagnostics = preflight::preflight(
        &plan,
        &validation.assignment,
        &facts,
        Timestamp(jiff::Timestamp::now()),
    );
    let errors: std::collections::BTreeSet<&str> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code)
        .collect();
    for code in [
        codes::PREFLIGHT_CONFIGURATION_SERVER,
        codes::PREFLIGHT_PROCESS_SERVER,
        codes::PREFLIGHT_VCENTER,
        codes::PREFLIGHT_MASTER_TARGET,
        codes::PREFLIGHT_DATASTORE,
    ] {
        assert!(errors.contains(code), "{code} missing: {diagnostics:#?}");
    }
}
