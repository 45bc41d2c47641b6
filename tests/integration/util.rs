//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// The binary under test, run from the repository root with colour off and a fixed width, so
/// output is the same on every machine.
pub fn lifeboat() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("lifeboat").expect("the lifeboat binary is built");
    cmd.current_dir(repo_root())
        .env("NO_COLOR", "1")
        .env_remove("COLUMNS");
    cmd
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture path relative to the repository root, with `/` separators, as the binary is given it.
pub fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

pub fn fixtures(dir: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo_root().join("tests/fixtures").join(dir))
        .expect("fixture directory exists")
        .map(|entry| entry.expect("readable fixture directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {dir}");
    paths
}

pub fn stdout_json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
