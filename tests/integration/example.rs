//! The example estate copied into a temporary directory, shared by the test binaries.

use std::path::PathBuf;

use assert_cmd::Command;
use lifeboat_provider_sim::{World, store};
use serde_json::Value;

use crate::util::repo_root;

/// The binary under test.
pub(crate) fn lifeboat_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lifeboat"))
}

/// Which provider a test drives the simulated estate through: the built-in `sim`, or the
/// same simulator served as a plugin (`lifeboat provider serve sim`) over the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sim,
    Plugin,
}

/// The example plan and its starting world, copied into a temporary directory so tests can
/// change the goal and the world freely.
pub(crate) struct Example {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) backend: Backend,
}

impl Example {
    /// The example at `goal`, with its maintenance window open now (for `apply`).
    pub(crate) fn open_window(goal: &str) -> Self {
        Self::open_window_through(goal, Backend::Sim)
    }

    /// [`Self::open_window`] through `backend`: with [`Backend::Plugin`] the plan's provider
    /// is `lifeboat provider serve sim` on the same world, allowed from outside the plan.
    pub(crate) fn open_window_through(goal: &str, backend: Backend) -> Self {
        let mut example = Self::new(goal);
        if backend == Backend::Plugin {
            example.serve_as_plugin();
        }
        let example = example;
        let path = example.dir.path().join("lifeboat.yaml");
        let plan = std::fs::read_to_string(&path)
            .expect("the plan")
            .replace("2099-12-05T22:00:00Z", "2020-01-01T00:00:00Z");
        std::fs::write(path, plan).expect("write the plan");
        example
    }

    pub(crate) fn new(goal: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let source = repo_root().join("examples/avs-failback");
        let plan = std::fs::read_to_string(source.join("lifeboat.yaml")).expect("the example plan");
        // The example's window is a real date; moved far out so the tests do not turn red
        // the day it passes.
        let plan = plan
            .replace("goal: reprotected", &format!("goal: {goal}"))
            .replace("2026-12-05T22:00:00Z", "2099-12-05T22:00:00Z")
            .replace("2026-12-06T04:00:00Z", "2099-12-06T04:00:00Z");
        std::fs::write(dir.path().join("lifeboat.yaml"), plan).expect("write the plan");
        std::fs::copy(source.join("world.yaml"), dir.path().join("world.yaml"))
            .expect("copy the world");
        Self {
            dir,
            backend: Backend::Sim,
        }
    }

    /// Replaces the plan's `sim` provider by the same world served as a plugin.
    pub(crate) fn serve_as_plugin(&mut self) {
        let path = self.dir.path().join("lifeboat.yaml");
        let plan = std::fs::read_to_string(&path).expect("the plan");
        let start = plan.find("provider:").expect("a provider block");
        let end = plan[start..].find("\ngoal:").expect("the goal") + start;
        let plan = format!(
            "{}provider:\n  plugin:\n    command: [{}, provider, serve, sim, --world, .lifeboat/world.yaml, --start-from, world.yaml]\n    timeout: 30s\n{}",
            &plan[..start],
            lifeboat_binary().display(),
            &plan[end..]
        );
        std::fs::write(&path, plan).expect("write the plan");
        self.backend = Backend::Plugin;
    }

    /// A command running the binary in the example's directory, with the plugin allowed
    /// when the example uses one.
    pub(crate) fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(lifeboat_binary());
        command.current_dir(self.dir.path()).env("NO_COLOR", "1");
        if self.backend == Backend::Plugin {
            command.env("LIFEBOAT_ALLOWED_PLUGINS", lifeboat_binary());
        }
        command
    }

    pub(crate) fn world_path(&self) -> PathBuf {
        self.dir.path().join(".lifeboat/world.yaml")
    }

    pub(crate) fn lifeboat(&self) -> Command {
        Command::from_std(self.command())
    }

    /// Runs `plan` once so the world exists, then edits it.
    pub(crate) fn edit(&self, change: impl FnOnce(&mut World)) {
        if !self.world_path().exists() {
            self.lifeboat()
                .args(["plan", "--format", "json"])
                .output()
                .expect("runs");
        }
        let mut world = store::read(&self.world_path()).expect("the world reads");
        change(&mut world);
        store::write(&self.world_path(), &world).expect("the world writes");
    }

    pub(crate) fn plan_json(&self, extra: &[&str]) -> (Option<i32>, Value) {
        let output = self
            .lifeboat()
            .args(["plan", "--format", "json"])
            .args(extra)
            .output()
            .expect("runs");
        let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code(), json)
    }

    pub(crate) fn plan_text(&self, format: &str) -> String {
        let output = self
            .lifeboat()
            .args(["plan", "--format", format])
            .output()
            .expect("runs");
        String::from_utf8(output.stdout).expect("UTF-8")
    }
}

/// `apply --auto-approve` with `extra`: the exit code and stdout then stderr.
pub(crate) fn apply(example: &Example, extra: &[&str]) -> (Option<i32>, String) {
    let output = example
        .lifeboat()
        .args(["apply", "--auto-approve"])
        .args(extra)
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// The NDJSON events of `apply --format json` (other lines, e.g. on stderr, are skipped).
pub(crate) fn events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

pub(crate) fn world(example: &Example) -> World {
    store::read(&example.world_path()).expect("the world reads")
}
