//! `lifeboat validate` over the fixture plans in `tests/fixtures/validate/`.
//!
//! Each invalid fixture states what it must produce in `# expect: CODE "TEXT"` lines: the
//! codes reported must be exactly those (with multiplicity), and for each TEXT some diagnostic
//! of that code must have its primary label on exactly that text of the file. The positions in
//! the JSON are checked against the file itself, not against a snapshot, so a wrong column is
//! caught even when the snapshot is re-accepted carelessly.

use std::collections::BTreeMap;

use lifeboat_engine::diagnostic::codes;
use serde_json::Value;

use crate::util::{fixtures, lifeboat, relative, stdout_json};

struct Expectation {
    code: String,
    text: Option<String>,
}

fn expectations(text: &str) -> Vec<Expectation> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(|rest| match rest.split_once(' ') {
            Some((code, quoted)) => Expectation {
                code: code.to_string(),
                text: Some(quoted.trim().trim_matches('"').to_string()),
            },
            None => Expectation {
                code: rest.trim().to_string(),
                text: None,
            },
        })
        .collect()
}

/// Line, column (both 1-based, column in characters) and byte of an offset, computed the
/// simple way, independently of the code under test.
fn position(text: &str, byte: usize) -> (u64, u64) {
    let before = &text[..byte];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line as u64, column as u64)
}

fn check_position(text: &str, point: &Value, what: &str) -> usize {
    let byte = point["byte"].as_u64().expect("byte") as usize;
    assert!(
        byte <= text.len() && text.is_char_boundary(byte),
        "{what}: byte {byte} is not a char boundary"
    );
    let (line, column) = position(text, byte);
    assert_eq!(
        point["line"].as_u64(),
        Some(line),
        "{what}: line of byte {byte}"
    );
    assert_eq!(
        point["column"].as_u64(),
        Some(column),
        "{what}: column of byte {byte}"
    );
    byte
}

#[test]
fn invalid_fixtures_report_exactly_their_expected_codes_at_the_expected_values() {
    for path in fixtures("validate/invalid") {
        let name = relative(&path);
        let text = std::fs::read_to_string(&path).expect("fixture is readable");
        let expected = expectations(&text);
        assert!(!expected.is_empty(), "{name} has no `# expect:` line");

        let output = lifeboat()
            .args(["validate", &name, "--format", "json"])
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(1), "{name}: exit code");
        let report = stdout_json(&output);
        let diagnostics = report["diagnostics"].as_array().expect("diagnostics array");
        assert_eq!(report["valid"], Value::Bool(false), "{name}");
        assert_eq!(
            report["error_count"].as_u64(),
            Some(diagnostics.len() as u64),
            "{name}"
        );

        let mut want: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &expected {
            *want.entry(e.code.as_str()).or_default() += 1;
        }
        let mut got: BTreeMap<&str, usize> = BTreeMap::new();
        for d in diagnostics {
            *got.entry(d["code"].as_str().expect("code")).or_default() += 1;
        }
        assert_eq!(got, want, "{name}: reported codes");

        for d in diagnostics {
            let code = d["code"].as_str().expect("code");
            assert!(
                !d["message"].as_str().expect("message").is_empty(),
                "{name}: {code} has a message"
            );
            assert!(
                d["help"].as_str().is_some_and(|h| !h.is_empty()),
                "{name}: {code} has help"
            );
            for label in d["labels"].as_array().expect("labels") {
                assert_eq!(
                    label["file"].as_str(),
                    Some(name.as_str()),
                    "{name}: label file"
                );
                let start = check_position(&text, &label["start"], &name);
                let end = check_position(&text, &label["end"], &name);
                assert!(start <= end, "{name}: label start after end");
            }
        }

        for e in expected.iter().filter(|e| e.text.is_some()) {
            let want_text = e.text.as_deref().expect("filtered");
            let found = diagnostics
                .iter()
                .filter(|d| d["code"] == e.code.as_str())
                .any(|d| {
                    d["labels"]
                        .as_array()
                        .and_then(|l| l.first())
                        .is_some_and(|primary| {
                            let start = primary["start"]["byte"].as_u64().expect("byte") as usize;
                            let end = primary["end"]["byte"].as_u64().expect("byte") as usize;
                            &text[start..end] == want_text
                        })
                });
            assert!(
                found,
                "{name}: no `{}` diagnostic with its primary label on {want_text:?}",
                e.code
            );
        }
    }
}

#[test]
fn every_static_code_has_a_fixture() {
    let mut covered = std::collections::BTreeSet::new();
    for path in fixtures("validate/invalid") {
        let text = std::fs::read_to_string(&path).expect("fixture is readable");
        covered.extend(expectations(&text).into_iter().map(|e| e.code));
    }
    for code in codes::STATIC {
        assert!(covered.contains(*code), "no fixture triggers `{code}`");
    }
}

#[test]
fn invalid_fixtures_render_as_miette_reports() {
    insta::glob!("..", "fixtures/validate/invalid/*.yaml", |path| {
        let name = relative(path);
        let output = lifeboat().args(["validate", &name]).output().expect("runs");
        assert_eq!(output.status.code(), Some(1), "{name}");
        assert!(
            output.stdout.is_empty(),
            "{name}: human diagnostics go to stderr"
        );
        insta::assert_snapshot!(String::from_utf8_lossy(&output.stderr));
    });
}

#[test]
fn valid_fixtures_produce_no_diagnostics() {
    for path in fixtures("validate/valid") {
        let name = relative(&path);
        let output = lifeboat()
            .args(["validate", &name, "--format", "json"])
            .output()
            .expect("runs");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let report = stdout_json(&output);
        assert_eq!(report["valid"], Value::Bool(true), "{name}");
        assert_eq!(
            report["diagnostics"].as_array().map(Vec::len),
            Some(0),
            "{name}"
        );

        let human = lifeboat().args(["validate", &name]).output().expect("runs");
        assert_eq!(human.status.code(), Some(0));
        assert!(
            human.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&human.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&human.stdout),
            format!("`{name}` is valid\n")
        );
    }
}

#[test]
fn json_report_has_the_documented_shape() {
    let output = lifeboat()
        .args([
            "validate",
            "tests/fixtures/validate/invalid/group-mixed-os.yaml",
            "--format",
            "json",
        ])
        .output()
        .expect("runs");
    let report = stdout_json(&output);
    let keys: Vec<&str> = report
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "diagnostics",
            "error_count",
            "format_version",
            "valid",
            "warning_count"
        ]
    );
    assert_eq!(report["format_version"], "1");
    let diagnostic = &report["diagnostics"][0];
    assert_eq!(diagnostic["severity"], "error");
    assert_eq!(diagnostic["code"], "group::mixed-os");
    let label = &diagnostic["labels"][0];
    for key in ["file", "message", "start", "end"] {
        assert!(label.get(key).is_some(), "label has `{key}`");
    }
    for key in ["line", "column", "byte"] {
        assert!(label["start"][key].is_u64(), "start has `{key}`");
    }
}

#[test]
fn plan_defaults_to_lifeboat_yaml_in_the_current_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        crate::util::repo_root().join("tests/fixtures/validate/valid/minimal.yaml"),
        dir.path().join("lifeboat.yaml"),
    )
    .expect("copy");
    let output = lifeboat()
        .current_dir(dir.path())
        .arg("validate")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "`lifeboat.yaml` is valid\n"
    );
}
