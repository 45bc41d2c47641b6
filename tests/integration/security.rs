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
    assert!(
        !text.contains(SECRET),
        "{args:?} showed the secret:\n{text}"
    );
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
    std::os::unix::fs::symlink("/proc/self/environ", repo.root.join("environ.yaml")).expect("ln");
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
    let cases: Vec<(&str, Setup)> = vec![
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
                std::os::unix::fs::symlink(&repo.outside, repo.root.join(".lifeboat")).expect("ln");
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

/// Prepares one case in a fresh repository.
type Setup = Box<dyn Fn(&Repo)>;

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
    assert!(
        text(&output).contains("not a regular file"),
        "{}",
        text(&output)
    );

    repo.world("/dev/zero");
    let output = limited(&repo, &["plan", "--allow-path", "/dev"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("not a regular file"),
        "{}",
        text(&output)
    );

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

/// A generated plan of `machines` machines, and the same plan with every boot-order entry
/// misspelt (a bulk rename gone wrong): each is an unknown reference with a suggestion.
fn estate_with_misspelt_boot_order(machines: usize) -> (String, String) {
    let shape = lifeboat_engine::generate::EstateShape {
        machines,
        groups: machines / 10,
        // Enough to place every disk (as the benches' valid shapes): the plan is valid.
        master_targets: machines * 48 / 1_000,
        boot_groups: 5,
        seed: 1,
    };
    let valid = lifeboat_engine::generate::plan_yaml(&shape);
    let (head, tail) = valid.split_once("boot_order:\n").expect("a boot order");
    let (boot_order, rest) = tail.split_once("maintenance_window:").expect("a window");
    let misspelt = format!(
        "{head}boot_order:\n{}maintenance_window:{rest}",
        boot_order.replace("vm-", "vmx-")
    );
    (valid, misspelt)
}

fn timed_validate(dir: &Path, name: &str, text: &str, format: &str) -> (Duration, Output) {
    std::fs::write(dir.join(name), text).expect("writes");
    let started = Instant::now();
    let output = Command::cargo_bin("lifeboat")
        .expect("the binary is built")
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args(["validate", name, "--format", format])
        .output()
        .expect("runs");
    (started.elapsed(), output)
}

#[test]
fn a_plan_with_every_boot_order_entry_misspelt_validates_in_bounded_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (valid, misspelt) = estate_with_misspelt_boot_order(20_000);
    let (valid_time, output) = timed_validate(dir.path(), "valid.yaml", &valid, "json");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let (misspelt_time, output) = timed_validate(dir.path(), "misspelt.yaml", &misspelt, "json");
    assert_eq!(output.status.code(), Some(1));
    let report = crate::util::stdout_json(&output);
    assert_eq!(report["error_count"], 20_000);
    assert_eq!(
        report["diagnostics"][0]["help"], "did you mean `vm-000000`?",
        "every misspelt entry still gets its suggestion"
    );
    // Quadratic suggestions took 105 s in a release build at this size; bounded ones cost
    // about what building the 20,000 diagnostics costs.
    eprintln!(
        "validate, 20,000 machines: valid {valid_time:?}, every boot-order entry misspelt {misspelt_time:?}"
    );
    assert!(
        misspelt_time < valid_time * 3 + Duration::from_secs(5),
        "misspelt {misspelt_time:?} against valid {valid_time:?}"
    );
}

/// The bar of the issue, measured once in a release build (`cargo test --release --test
/// integration -- --ignored misspelt_100k --nocapture`): with 100,000 machines and every
/// boot-order entry misspelt, `validate` stays within twice the valid plan's time.
#[test]
#[ignore = "a measurement: run it in a release build"]
fn misspelt_100k_validates_within_twice_the_valid_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (valid, misspelt) = estate_with_misspelt_boot_order(100_000);
    for format in ["json", "human"] {
        let (valid_time, output) = timed_validate(dir.path(), "valid.yaml", &valid, format);
        assert_eq!(output.status.code(), Some(0));
        let (misspelt_time, output) =
            timed_validate(dir.path(), "misspelt.yaml", &misspelt, format);
        assert_eq!(output.status.code(), Some(1));
        eprintln!(
            "validate --format {format}, 100,000 machines: valid {valid_time:?}, misspelt {misspelt_time:?}"
        );
        assert!(
            misspelt_time < valid_time * 2,
            "{format}: misspelt {misspelt_time:?} against valid {valid_time:?}"
        );
    }
}

#[test]
fn a_world_cut_short_is_refused_by_plan_and_apply_and_left_as_it_was() {
    let repo = Repo::new();
    let output = repo.lifeboat().arg("plan").output().expect("runs");
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{}",
        text(&output)
    );
    let world = repo.root.join(".lifeboat/world.yaml");
    let whole = std::fs::read_to_string(&world).expect("the world");
    // Cut at every section boundary after the first.
    let mut offset = 0;
    let mut cuts = Vec::new();
    for line in whole.split_inclusive('\n') {
        if offset > 0 && !line.starts_with([' ', '#', '-']) && line.contains(':') {
            cuts.push(offset);
        }
        offset += line.len();
    }
    assert!(cuts.len() >= 11, "{cuts:?}");
    for cut in cuts {
        let cut = &whole[..cut];
        std::fs::write(&world, cut).expect("writes");
        for args in [&["plan"][..], &["apply", "--auto-approve"]] {
            let output = repo.lifeboat().args(args).output().expect("runs");
            let shown = text(&output);
            assert_eq!(output.status.code(), Some(1), "{args:?}:\n{shown}");
            assert!(shown.contains("world::schema"), "{args:?}:\n{shown}");
            assert!(shown.contains("world.yaml"), "{args:?}:\n{shown}");
            assert_eq!(
                std::fs::read_to_string(&world).expect("readable"),
                cut,
                "{args:?}: the cut world was rewritten"
            );
        }
    }
}

/// Eight `plan`s race for the state lock that a killed `apply` held: the losers name the
/// winner, or nobody yet, never the dead process.
#[test]
fn eight_contenders_never_name_a_dead_holder() {
    let repo = Repo::new();
    let output = repo.lifeboat().arg("plan").output().expect("runs");
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{}",
        text(&output)
    );
    let dead_id = "0b6e0000-dead-4000-8000-000000000000";
    let owner = repo.root.join(".lifeboat/state.json.lock.info");
    let mut all_losers = 0;
    for round in 0..5 {
        std::fs::write(
            &owner,
            format!(
                "{{\"id\": \"{dead_id}\", \"who\": \"ci@runner\", \"operation\": \"apply\", \"created\": \"2026-12-05T22:00:03Z\", \"pid\": 4294967295}}\n"
            ),
        )
        .expect("writes");
        let children: Vec<_> = (0..8)
            .map(|_| {
                let mut command =
                    std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"));
                command
                    .arg("plan")
                    .current_dir(&repo.root)
                    .env("NO_COLOR", "1")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                command.spawn().expect("spawns")
            })
            .collect();
        let mut losers = 0;
        for child in children {
            let output = child.wait_with_output().expect("ends");
            let shown = text(&output);
            if output.status.code() == Some(1) {
                losers += 1;
                assert!(shown.contains("is locked by"), "round {round}:\n{shown}");
                assert!(
                    !shown.contains(dead_id),
                    "round {round}: named the dead holder:\n{shown}"
                );
            }
        }
        eprintln!("round {round}: {losers} of 8 lost the race");
        all_losers += losers;
    }
    assert!(
        all_losers > 0,
        "nobody ever lost the race: the test proved nothing"
    );
}

/// What writers killed between creating their temporary file and renaming it leave behind
/// (the names this build gives them) is removed by the next command that takes the locks;
/// files that are not lifeboat's temporary files stay.
#[test]
fn temporary_files_of_killed_writers_are_removed_at_the_next_start() {
    let repo = Repo::new();
    let output = repo.lifeboat().arg("plan").output().expect("runs");
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{}",
        text(&output)
    );
    let dir = repo.root.join(".lifeboat");
    let residue = [
        ".world.yaml.Xk3p9Q.lifeboat-tmp",
        ".state.json.a81LmZ.lifeboat-tmp",
        ".state.json.lock.info.q0W2e4.lifeboat-tmp",
    ];
    for name in residue {
        std::fs::write(dir.join(name), "half a file").expect("writes");
    }
    std::fs::write(dir.join("notes.txt"), "mine").expect("writes");
    let output = repo
        .lifeboat()
        .args(["apply", "--auto-approve"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    for name in residue {
        assert!(!dir.join(name).exists(), "`{name}` was left");
    }
    assert!(dir.join("notes.txt").exists());
}
