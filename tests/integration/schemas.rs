//! The committed JSON Schemas are generated from the types; these tests fail when a committed
//! copy is stale, and check that real plans conform to the schema editors will use.

use crate::util::{lifeboat, repo_root};

fn committed(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("schemas").join(name))
        .expect("committed schema exists")
}

#[test]
fn committed_schemas_are_up_to_date() {
    for (kind, file) in [
        ("plan", "plan.schema.json"),
        ("plan-output", "plan-output.schema.json"),
        ("state", "state.schema.json"),
        ("saved-plan", "saved-plan.schema.json"),
    ] {
        let output = lifeboat().args(["schema", kind]).output().expect("runs");
        assert!(output.status.success());
        let generated = String::from_utf8(output.stdout).expect("UTF-8");
        assert!(
            generated == committed(file),
            "schemas/{file} is stale: run `cargo run -- schema {kind} > schemas/{file}`"
        );
    }
}

/// One schema per message of the plugin protocol, in `schemas/plugin/`, and nothing else
/// there.
#[test]
fn committed_plugin_protocol_schemas_are_up_to_date() {
    let output = lifeboat()
        .args(["schema", "plugin"])
        .output()
        .expect("runs");
    assert!(output.status.success());
    let names = String::from_utf8(output.stdout).expect("UTF-8");
    let names: Vec<&str> = names.lines().collect();
    assert!(names.contains(&"run.params"), "{names:?}");
    for name in &names {
        let output = lifeboat()
            .args(["schema", "plugin", name])
            .output()
            .expect("runs");
        assert!(output.status.success());
        let generated = String::from_utf8(output.stdout).expect("UTF-8");
        let file = format!("plugin/{name}.schema.json");
        assert!(
            generated == committed(&file),
            "schemas/{file} is stale: run `cargo run -- schema plugin {name} > schemas/{file}`"
        );
    }
    let mut committed_files: Vec<String> = std::fs::read_dir(repo_root().join("schemas/plugin"))
        .expect("schemas/plugin/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    committed_files.sort();
    let mut expected: Vec<String> = names.iter().map(|n| format!("{n}.schema.json")).collect();
    expected.sort();
    assert_eq!(
        committed_files, expected,
        "schemas/plugin/ has a file no message has"
    );
}

fn plan_validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(&committed("plan.schema.json")).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("the plan schema is a valid JSON Schema")
}

fn as_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("readable");
    serde_saphyr::from_str(&text).expect("fixture is YAML")
}

#[test]
fn valid_plans_conform_to_the_schema() {
    let validator = plan_validator();
    let mut plans = crate::util::fixtures("validate/valid");
    plans.push(repo_root().join("examples/avs-failback/lifeboat.yaml"));
    for path in plans {
        let errors: Vec<String> = validator
            .iter_errors(&as_json(&path))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

#[test]
fn the_schema_rejects_unknown_keys_and_values() {
    let validator = plan_validator();
    for fixture in [
        "plan-schema-unknown-key.yaml",
        "plan-schema-unknown-variant.yaml",
        "plan-schema-two-providers.yaml",
    ] {
        let path = repo_root()
            .join("tests/fixtures/validate/invalid")
            .join(fixture);
        assert!(
            !validator.is_valid(&as_json(&path)),
            "{fixture} passes the schema"
        );
    }
}
