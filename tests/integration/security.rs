//! Planning an untrusted change is safe (README "Security"): the paths a plan names stay in
//! its repository, a file that is not lifeboat's is never quoted, reads are bounded, a
//! truncated world is refused and left alone, and suggestions take bounded time.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;

use crate::util::repo_root;

/// A secret as a CI pipeline has it in its environment.
const SECRET: &str = "lifeboat-test-secret-7f3a9c";

/// A repository (with `.git`) holding the example plan and world, and a directory beside it.
struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().join("repo");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join(".git")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        let source = repo_root().join("examples/avs-failback");
        std::fs::copy(source.join("lifeboat.yaml"), root.join("lifeboat.yaml")).expect("copy");
        std::fs::copy(source.join("world.yaml"), root.join("world.yaml")).expect("copy");
        // A file outside the repository that must never be read: a world, so that reading
        // it would succeed, with the secret in it.
        let world = std::fs::read_to_string(source.join("world.yaml")).expect("the world");
        std::fs::write(
            outside.join("world.yaml"),
            format!("# {SECRET}\n{world}\nunknown_{SECRET}: 1\n"),
        )
        .expect("writes");
        Self {
            _dir: dir,
            root,
            outside,
        }
    }

    /// Replaces the plan's `provider` block's world (and drops `start_from`).
    fn world(&self, world: &str) -> &Self {
        self.edit(|plan| {
            plan.replace(
                "world: .lifeboat/world.yaml",
                &format!("world: \"{world}\""),
            )
            .replace(
                "start_from: world.yaml        # the committed starting world, copied when the above is missing",
                "",
            )
        })
    }

    fn edit(&self, change: impl FnOnce(String) -> String) -> &Self {
        let path = self.root.join("lifeboat.yaml");
        let plan = std::fs::read_to_string(&path).expect("the plan");
        std::fs::write(&path, change(plan)).expect("writes");
        self
    }

    fn lifeboat(&self) -> Command {
        let mut command = Command::cargo_bin("lifeboat").expect("the binary is built");
        command
            .current_dir(&self.root)
            .env("NO_COLOR", "1")
            .env("AZURE_CLIENT_SECRET", SECRET)
            .env_remove(ALLOWED_ENV);
        command
    }
}

const ALLOWED_ENV: &str = "LIFEBOAT_ALLOWED_PATHS";

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `args`, expects exit 1, and returns everything it printed, checked for the secret.
fn refused(command: &mut Command, args: &[&str]) -> String {
    let output = command.args(args).output().expect("runs");
    let text = text(&output);
    assert_eq!(output.status.code(), Some(1), "{args:?}:\n{text}");
    assert!(!text.contains(SECRET), "{args:?} showed the secret:\n{text}");
    text
}

#[test]
fn a_world_at_proc_self_environ_is_refused_without_showing_the_environment() {
    let repo = Repo::new();
    repo.world("/proc/self/environ");
    for args in [
        &["validate"][..],
        &["plan"],
        &["apply", "--auto-approve"],
        &["graph"],
    ] {
        let command = args[0];
        let text = refused(&mut repo.lifeboat(), args);
        assert!(text.contains("plan::path-outside"), "{command}:\n{text}");
        assert!(text.contains("/proc/self/environ"), "{command}:\n{text}");
    }
    // Allowed from outside the plan, the file is read, but it is not a lifeboat world: only
    // its name and the kind of error are shown.
    let text = refused(&mut repo.lifeboat(), &["plan", "--allow-path", "/proc"]);
    assert!(text.contains("is not a usable world"), "{text}");
    assert!(!text.contains("plan::path-outside"), "{text}");
}

#[test]
fn a_plan_file_that_links_out_of_its_repository_is_refused() {
    let repo = Repo::new();
    std::os::unix::fs::symlink("/proc/self/environ", repo.root.join("environ.yaml"))
        .expect("ln");
    let text = refused(&mut repo.lifeboat(), &["validate", "environ.yaml"]);
    assert!(text.contains("plan::path-outside"), "{text}");
    let text = refused(
        &mut repo.lifeboat(),
        &["diff", "lifeboat.yaml", "environ.yaml"],
    );
    assert!(text.contains("plan::path-outside"), "{text}");
}

#[test]
fn paths_out_of_the_repository_by_dot_dot_or_symlink_are_refused() {
    let outside_world = |repo: &Repo| repo.outside.join("world.yaml");
    let cases: Vec<(&str, Box<dyn Fn(&Repo)>)> = vec![
        (
            "world by `..`",
            Box::new(|repo| {
                repo.world("../outside/world.yaml");
            }),
        ),
        (
            "world by an absolute path",
            Box::new(move |repo| {
                repo.world(&outside_world(repo).display().to_string());
            }),
        ),
        (
            "world through a symlinked file",
            Box::new(|repo| {
                std::os::unix::fs::symlink(
                    repo.outside.join("world.yaml"),
                    repo.root.join("linked.yaml"),
                )
                .expect("ln");
                repo.world("linked.yaml");
            }),
        ),
        (
            "world through a symlinked directory",
            Box::new(|repo| {
                std::os::unix::fs::symlink(&repo.outside, repo.root.join("estate")).expect("ln");
                repo.world("estate/world.yaml");
            }),
        ),
        (
            "world through a dangling symlink",
            Box::new(|repo| {
                std::os::unix::fs::symlink(
                    repo.outside.join("created-by-lifeboat.yaml"),
                    repo.root.join("dangling.yaml"),
                )
                .expect("ln");
                repo.world("dangling.yaml");
            }),
        ),
        (
            "world by `..` after a missing directory",
            Box::new(|repo| {
                repo.world("missing/../../outside/new.yaml");
            }),
        ),
        (
            "start_from through a symlink",
            Box::new(|repo| {
                std::fs::remove_file(repo.root.join("world.yaml")).expect("rm");
                std::os::unix::fs::symlink(
                    repo.outside.join("world.yaml"),
                    repo.root.join("world.yaml"),
                )
                .expect("ln");
            }),
        ),
        (
            "state by `..`",
            Box::new(|repo| {
                repo.edit(|plan| {
                    format!("{plan}\nstate:\n  local:\n    path: ../outside/state.json\n")
                });
            }),
        ),
        (
            "the default state through a symlinked `.lifeboat`",
            Box::new(|repo| {
                std::os::unix::fs::symlink(&repo.outside, repo.root.join(".lifeboat"))
                    .expect("ln");
            }),
        ),
        (
            "a path inside `.git`",
            Box::new(|repo| {
                repo.world(".git/config");
            }),
        ),
    ];
    for (name, setup) in cases {
        let repo = Repo::new();
        setup(&repo);
        let before = listing(&repo.outside);
        for command in ["validate", "plan"] {
            let text = refused(&mut repo.lifeboat(), &[command]);
            assert!(
                text.contains("plan::path-outside"),
                "{name}, {command}:\n{text}"
            );
        }
        assert_eq!(
            listing(&repo.outside),
            before,
            "{name}: nothing is created outside the repository"
        );
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn paths_inside_the_repository_and_allowed_directories_work() {
    // A symlink that stays inside the repository is fine.
    let repo = Repo::new();
    std::os::unix::fs::symlink(repo.root.join("world.yaml"), repo.root.join("alias.yaml"))
        .expect("ln");
    repo.edit(|plan| plan.replace("start_from: world.yaml", "start_from: alias.yaml"));
    let output = repo.lifeboat().arg("plan").output().expect("runs");
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{}",
        text(&output)
    );

    // A directory outside, allowed by the flag or by the environment, never by the plan.
    let allowed = tempfile::tempdir().expect("tempdir");
    let source = repo_root().join("examples/avs-failback/world.yaml");
    std::fs::copy(&source, allowed.path().join("world.yaml")).expect("copy");
    let repo = Repo::new();
    repo.world(&allowed.path().join("world.yaml").display().to_string());
    refused(&mut repo.lifeboat(), &["plan"]);
    let dir = allowed.path().display().to_string();
    for args in [
        ["--allow-path", dir.as_str(), "plan"],
        ["plan", "--allow-path", dir.as_str()],
    ] {
        let output = repo.lifeboat().args(args).output().expect("runs");
        assert!(
            matches!(output.status.code(), Some(0 | 2)),
            "{args:?}: {}",
            text(&output)
        );
    }
    let output = repo
        .lifeboat()
        .arg("plan")
        .env(ALLOWED_ENV, format!("/nonexistent:{dir}"))
        .output()
        .expect("runs");
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{}",
        text(&output)
    );
}

#[test]
fn a_committed_world_that_is_not_lifeboats_is_not_quoted() {
    // Inside the repository, but not a world (a credentials file a CI step wrote).
    let repo = Repo::new();
    std::fs::write(
        repo.root.join("gha-creds.json"),
        format!("{{\"type\": \"service_account\", \"private_key\": \"{SECRET}\"}}\n"),
    )
    .expect("writes");
    repo.world("gha-creds.json");
    let shown = refused(&mut repo.lifeboat(), &["plan"]);
    assert!(shown.contains("is not a usable world"), "{shown}");
    // A broken lifeboat world inside the repository is quoted, to help fix it.
    let repo = Repo::new();
    let world = std::fs::read_to_string(repo.root.join("world.yaml")).expect("the world");
    std::fs::write(
        repo.root.join("world.yaml"),
        world.replace("faults: []", "faults: []\nfalts: []"),
    )
    .expect("writes");
    let output = repo.lifeboat().arg("plan").output().expect("runs");
    let text = text(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("falts"), "{text}");
}

/// Runs the binary with its address space capped: a read that is not bounded dies.
fn limited(repo: &Repo, args: &[&str]) -> Output {
    let binary = assert_cmd::cargo::cargo_bin("lifeboat");
    std::process::Command::new("prlimit")
        .arg(format!("--as={}", 1024 * 1024 * 1024))
        .arg("--")
        .arg(binary)
        .args(args)
        .current_dir(&repo.root)
        .env("NO_COLOR", "1")
        .env_remove(ALLOWED_ENV)
        .output()
        .expect("prlimit runs")
}

#[test]
fn devices_and_huge_files_are_refused_within_a_memory_limit() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("prlimit is not installed; skipping");
        return;
    }
    let repo = Repo::new();
    let started = Instant::now();
    let output = limited(&repo, &["validate", "/dev/zero"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("not a regular file"), "{}", text(&output));

    repo.world("/dev/zero");
    let output = limited(&repo, &["plan", "--allow-path", "/dev"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("not a regular file"), "{}", text(&output));

    // A state at a device: refused, and no lock file appears beside it (as root it could).
    let repo = Repo::new();
    repo.edit(|plan| format!("{plan}\nstate:\n  local:\n    path: /dev/full\n"));
    let output = limited(&repo, &["plan", "--allow-path", "/dev"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(!Path::new("/dev/full.lock").exists());

    // A regular file over the cap is refused by its size, not read.
    let huge = repo.root.join("huge.yaml");
    let file = std::fs::File::create(&huge).expect("creates");
    file.set_len(300 * 1024 * 1024).expect("a sparse file");
    let output = limited(&repo, &["validate", "huge.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("256 MiB"), "{}", text(&output));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn standard_input_is_capped_too() {
    let repo = Repo::new();
    let binary = assert_cmd::cargo::cargo_bin("lifeboat");
    let mut child = std::process::Command::new("prlimit")
        .arg(format!("--as={}", 1024 * 1024 * 1024))
        .arg("--")
        .arg(binary)
        .args(["diff", "-", "lifeboat.yaml"])
        .current_dir(&repo.root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut stdin = child.stdin.take().expect("stdin");
    // An endless stream: the writer stops when lifeboat closes the pipe.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let chunk = vec![b'#'; 1 << 20];
        while stdin.write_all(&chunk).is_ok() {}
    });
    let output = child.wait_with_output().expect("ends");
    writer.join().expect("the writer ends");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("256 MiB"), "{}", text(&output));
}
