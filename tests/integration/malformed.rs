//! Malformed input of every kind gets one clear diagnostic and exit 1: never a panic, never a
//! silent success.

use crate::util::{lifeboat, repo_root};

/// Runs `validate` on `bytes` in both formats and checks the failure is a diagnostic.
fn rejects(bytes: &[u8], code: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.yaml");
    std::fs::write(&path, bytes).expect("write");
    let output = lifeboat()
        .arg("validate")
        .arg(&path)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit code; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
    assert!(stderr.contains(code), "expected `{code}` in:\n{stderr}");

    let json = lifeboat()
        .arg("validate")
        .arg(&path)
        .args(["--format", "json"])
        .output()
        .expect("runs");
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("JSON even for broken input");
    let first = report["diagnostics"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(first.starts_with(code), "expected `{code}`, got `{first}`");
    stderr
}

#[test]
fn empty_file() {
    let stderr = rejects(b"", "plan::schema");
    assert!(stderr.contains("the plan file is empty"), "{stderr}");
}

#[test]
fn only_comments() {
    rejects(b"# a plan will go here\n---\n", "plan::schema");
}

#[test]
fn not_yaml() {
    rejects(b"{{{ this is : not : yaml ]]]\n", "plan::syntax");
}

#[test]
fn invalid_utf8() {
    let stderr = rejects(b"version: 1\nname: \xff\xfe\n", "plan::syntax");
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
}

#[test]
fn a_list_where_the_plan_belongs() {
    rejects(b"- version: 1\n- name: x\n", "plan::schema");
}

#[test]
fn a_scalar_where_the_plan_belongs() {
    rejects(b"just a sentence\n", "plan::schema");
}

#[test]
fn a_map_where_a_list_belongs() {
    rejects(
        b"version: 1\nname: x\nprovider: {sim: {world: w}}\nsite: {vcenter: v, configuration_server: c, process_server: p}\nboot_order: {name: a}\n",
        "plan::schema",
    );
}

#[test]
fn deeply_nested_input() {
    let mut text = b"version: 1\nname: ".to_vec();
    text.extend(std::iter::repeat_n(b'[', 100_000));
    rejects(&text, "plan::");
}

#[test]
fn deeply_nested_block_mappings() {
    let mut text = String::from("version: 1\nname: x\ndescription:\n");
    for depth in 1..2_000 {
        text.push_str(&" ".repeat(depth));
        text.push_str("k:\n");
    }
    let stderr = rejects(text.as_bytes(), "plan::");
    assert!(stderr.contains("nested 65 levels deep"), "{stderr}");
}

#[test]
fn alias_bomb() {
    // The "billion laughs": each level references the previous one ten times.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let refs = vec![format!("*a{}", level - 1); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    rejects(text.as_bytes(), "plan::");
}

#[test]
fn several_documents() {
    rejects(
        b"version: 1\nname: x\nprovider: {sim: {world: w}}\nsite: {vcenter: v, configuration_server: c, process_server: p}\n---\nversion: 1\n",
        "plan::",
    );
}

#[test]
fn duplicate_top_level_key() {
    rejects(
        b"version: 1\nname: x\nprovider: {sim: {world: w}}\nsite: {vcenter: v, configuration_server: c, process_server: p}\nsite: {vcenter: v, configuration_server: c, process_server: p}\n",
        "plan::schema",
    );
}

#[test]
fn a_ten_megabyte_string_is_just_a_long_value() {
    let mut text = String::from(
        "version: 1\nname: x\nprovider: {sim: {world: w}}\nsite: {vcenter: v, configuration_server: c, process_server: p}\ndescription: \"",
    );
    text.push_str(&"é".repeat(5 * 1024 * 1024));
    text.push_str("\"\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.yaml");
    std::fs::write(&path, &text).expect("write");
    lifeboat().arg("validate").arg(&path).assert().success();
}

#[test]
fn a_ten_megabyte_string_in_the_wrong_place() {
    let mut text = String::from("version: 1\nname: x\nversion: \"");
    text.push_str(&"x".repeat(10 * 1024 * 1024));
    text.push_str("\"\n");
    let stderr = rejects(text.as_bytes(), "plan::schema");
    assert!(
        stderr.len() < 100_000,
        "the report does not repeat the 10 MB value ({} bytes)",
        stderr.len()
    );
}

#[test]
fn missing_file() {
    let output = lifeboat()
        .args(["validate", "does/not/exist.yaml"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read `does/not/exist.yaml`"),
        "{stderr}"
    );
}

#[test]
fn a_directory_instead_of_a_file() {
    let output = lifeboat()
        .arg("validate")
        .arg(repo_root().join("tests"))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}

#[test]
fn a_huge_generated_plan_validates() {
    let shape = lifeboat_engine::generate::EstateShape {
        machines: 20_000,
        groups: 2_000,
        master_targets: 960,
        ..lifeboat_engine::generate::EstateShape::design_bar()
    };
    let text = lifeboat_engine::generate::plan_yaml(&shape);
    assert!(text.len() > 2_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.yaml");
    std::fs::write(&path, &text).expect("write");
    lifeboat().arg("validate").arg(&path).assert().success();
}

#[test]
fn a_usage_error_exits_1_not_2_which_means_changes() {
    let output = lifeboat()
        .args(["plan", "--detailed-exitcode", "--no-such-flag"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-such-flag"));
    lifeboat().arg("--help").assert().success();
}
