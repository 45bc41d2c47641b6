//! Containment of the paths a plan names.
//!
//! A plan under review is untrusted: `plan` runs on pull requests with the pipeline's secrets
//! in the environment. Every path the plan names (`provider.sim.world`,
//! `provider.sim.start_from`, `state.local.path`) must therefore resolve, after every symlink
//! is followed, inside the plan's repository: the nearest ancestor of the plan's directory
//! that holds `.git`, else the plan's directory itself. The repository's own `.git` is outside
//! (its `config` may hold the checkout's token). Directories outside can be allowed only from
//! outside the plan (`--allow-path DIR`, `LIFEBOAT_ALLOWED_PATHS`), never by the plan itself.
//!
//! A path that does not exist yet (a world or state lifeboat is about to create) is resolved
//! through its deepest existing ancestor; the rest of it may not climb with `..`, and a
//! symlink that points nowhere is refused, since creating the file would follow it.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::diagnostic::{Diagnostic, codes};
use crate::model::{Plan, ProviderConfig, StateConfig};
use crate::span::Spanned;

/// Where a plan's files may be: its repository, and directories allowed from outside the plan.
#[derive(Debug, Clone)]
pub struct Containment {
    /// The plan's directory as given (relative to the current directory, or absolute):
    /// relative paths in the plan are joined to it, and messages show them so.
    dir: PathBuf,
    /// The repository root, with symlinks resolved.
    root: PathBuf,
    /// Allowed directories, with symlinks resolved (those that do not exist are dropped).
    allowed: Vec<PathBuf>,
}

/// Why a path is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It resolves here, which is outside the repository and every allowed directory.
    Outside(PathBuf),
    /// It resolves inside the repository's `.git`.
    InsideGit(PathBuf),
    /// A part that does not exist yet is followed by `..`.
    ClimbsFromMissing,
    /// A symlink on the way points at nothing (creating the file would follow it).
    Dangling(PathBuf),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Where it resolves is not shown: through `/proc/self` it changes with every run.
            Self::Outside(_) => {
                f.write_str("is outside the repository, once symlinks are followed")
            }
            Self::InsideGit(_) => f.write_str("is inside the repository's `.git`"),
            Self::ClimbsFromMissing => {
                f.write_str("climbs out with `..` from a directory that does not exist")
            }
            Self::Dangling(link) => write!(
                f,
                "goes through the symlink `{}`, which points at nothing",
                link.display()
            ),
        }
    }
}

impl Containment {
    /// The containment of the plan at `plan_path` (as given on the command line), with the
    /// directories allowed from outside the plan.
    pub fn for_plan(plan_path: &Path, allowed: &[PathBuf]) -> io::Result<Self> {
        let given = plan_path.parent().unwrap_or(Path::new(""));
        let base = if given.as_os_str().is_empty() {
            std::env::current_dir()?
        } else {
            std::path::absolute(given)?
        };
        let dir = given.to_path_buf();
        // The repository is found from the directory as written, before any symlink in it
        // is followed: a symlinked directory must not move the root to where it points.
        let lexical_root = base
            .ancestors()
            .find(|a| a.join(".git").exists())
            .unwrap_or(&base);
        let root = std::fs::canonicalize(lexical_root)?;
        let allowed = allowed
            .iter()
            .filter_map(|dir| std::fs::canonicalize(dir).ok())
            .collect();
        Ok(Self { dir, root, allowed })
    }

    /// The repository root, symlinks resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path a plan value names: relative values are relative to the plan's directory.
    pub fn joined(&self, value: &str) -> PathBuf {
        self.dir.join(value)
    }

    /// Checks a path (absolute, or relative to the current directory) and returns where it
    /// really is.
    pub fn check(&self, path: &Path) -> Result<PathBuf, Refusal> {
        let real = resolve(path)?;
        if real.starts_with(&self.root) {
            if real.starts_with(self.root.join(".git")) {
                return Err(Refusal::InsideGit(real));
            }
            return Ok(real);
        }
        if self.allowed.iter().any(|dir| real.starts_with(dir)) {
            return Ok(real);
        }
        Err(Refusal::Outside(real))
    }

    /// Whether the content of the file at `real` (as [`Self::check`] returned it) may be
    /// quoted in a diagnostic: only inside the repository. A file from an allowed directory
    /// may be anything, so only its name and the kind of error are shown.
    pub fn may_quote(&self, real: &Path) -> bool {
        real.starts_with(&self.root) && !real.starts_with(self.root.join(".git"))
    }

    /// Resolves a path value of the plan, or a `plan::path-outside` diagnostic pointing at it.
    /// `key` names the setting (`provider.sim.world`).
    pub fn resolve_value(
        &self,
        value: &Spanned<String>,
        key: &str,
    ) -> Result<ContainedPath, Box<Diagnostic>> {
        let path = self.joined(&value.value);
        match self.check(&path) {
            Ok(real) => Ok(ContainedPath { path, real }),
            Err(refusal) => Err(Box::new(Self::refusal_diagnostic(value, key, &refusal))),
        }
    }

    fn refusal_diagnostic(value: &Spanned<String>, key: &str, refusal: &Refusal) -> Diagnostic {
        Diagnostic::error(
            codes::PLAN_PATH_OUTSIDE,
            format!("`{key}` `{}` {refusal}", value.value),
        )
        .with_label(value.span, "not inside the repository")
        .with_help(
            "keep the files a plan names inside its repository (the nearest directory above the plan with `.git`); to allow a directory outside it, pass `--allow-path DIR` or set `LIFEBOAT_ALLOWED_PATHS` (a plan cannot allow itself anything)",
        )
    }

    /// Every path the plan names, checked; one diagnostic per refused value.
    pub fn check_plan(&self, plan: &Plan) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for (value, key) in named_paths(plan) {
            if let Err(diagnostic) = self.resolve_value(value, key) {
                out.push(*diagnostic);
            }
        }
        out
    }
}

/// Why a plugin command a plan names may not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRefusal {
    /// The command is not on the allow-list given from outside the plan.
    NotAllowed(PathBuf),
    /// The command names no executable: a name not found on `PATH`, or a missing file.
    NotFound,
    /// A relative command path that leaves the repository.
    Path(Refusal),
}

impl std::fmt::Display for PluginRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAllowed(real) => write!(
                f,
                "`{}` is not allowed to run; allow it with `--allow-plugin {}` or in `LIFEBOAT_ALLOWED_PLUGINS`",
                real.display(),
                real.display()
            ),
            Self::NotFound => f.write_str("names no executable file"),
            Self::Path(refusal) => refusal.fmt(f),
        }
    }
}

impl Containment {
    /// The executable a plugin command names, if it may run: the `plugin` provider runs at
    /// `plan`, on untrusted changes, so its command must be allowed from outside the plan.
    ///
    /// `command` is a name looked up on `path_var` (`PATH`), or a path (relative ones are
    /// relative to the plan and contained like every other path it names). `allowed` lists
    /// executables (absolute paths, or names looked up on `PATH`) from `--allow-plugin` and
    /// `LIFEBOAT_ALLOWED_PLUGINS`. Both sides are compared with every symlink resolved, so a
    /// link in the repository to an allowed executable runs that executable, and nothing else.
    pub fn allowed_plugin(
        &self,
        command: &str,
        allowed: &[PathBuf],
        path_var: Option<&std::ffi::OsStr>,
    ) -> Result<PathBuf, PluginRefusal> {
        let real = if is_bare_name(Path::new(command)) {
            find_on_path(command, path_var).ok_or(PluginRefusal::NotFound)?
        } else if Path::new(command).is_absolute() {
            // An absolute path is not the repository's: only the allow-list can let it run.
            std::fs::canonicalize(command)
                .ok()
                .filter(|real| real.is_file())
                .ok_or(PluginRefusal::NotFound)?
        } else {
            let real = self
                .check(&self.joined(command))
                .map_err(PluginRefusal::Path)?;
            if !real.is_file() {
                return Err(PluginRefusal::NotFound);
            }
            real
        };
        let permitted = allowed.iter().any(|entry| {
            let entry = if is_bare_name(entry) {
                entry.to_str().and_then(|name| find_on_path(name, path_var))
            } else {
                std::fs::canonicalize(entry).ok()
            };
            entry.as_deref() == Some(real.as_path())
        });
        if permitted {
            Ok(real)
        } else {
            Err(PluginRefusal::NotAllowed(real))
        }
    }
}

/// A command without any directory part: looked up on `PATH`.
fn is_bare_name(path: &Path) -> bool {
    let mut components = path.components();
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    )
}

/// The first file named `name` in the directories of `path_var`, symlinks resolved.
fn find_on_path(name: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
}

/// A path from the plan that resolved inside the repository or an allowed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainedPath {
    /// As joined to the plan's directory, for I/O and for messages.
    pub path: PathBuf,
    /// Where it really is, every symlink resolved.
    pub real: PathBuf,
}

/// The path values a plan names, with the key that names each.
pub fn named_paths(plan: &Plan) -> Vec<(&Spanned<String>, &'static str)> {
    let mut out = Vec::new();
    if let ProviderConfig::Sim(sim) = &plan.provider.value {
        out.push((&sim.world, "provider.sim.world"));
        if let Some(start) = &sim.start_from {
            out.push((start, "provider.sim.start_from"));
        }
    }
    if let Some(state) = &plan.state
        && let StateConfig::Local(local) = &state.value
    {
        out.push((&local.path, "state.local.path"));
    }
    if let ProviderConfig::Plugin(plugin) = &plan.provider.value
        && let Some(program) = plugin.command.value.first()
        && is_relative_path(Path::new(&program.value))
    {
        out.push((program, "provider.plugin.command"));
    }
    // A step's program runs at `apply` only, but it is checked from `validate` on, so a
    // change under review cannot point `apply` at a program outside the repository.
    for group in plan.boot_order.iter() {
        for step in group.before.iter().chain(&group.after) {
            if let Some(program) = step.command.as_ref().and_then(|c| c.value.first()) {
                out.push((program, "command"));
            }
        }
    }
    out
}

/// A plugin command given as a path relative to the plan (`./my-plugin`, `bin/plugin`): it is
/// contained like every other path the plan names. Bare names are looked up on `PATH` and
/// absolute paths must be allowed by name, so neither is the repository's.
pub fn is_relative_path(command: &Path) -> bool {
    !command.is_absolute() && !is_bare_name(command)
}

/// Where `path` really is: the file itself when it exists, else its deepest existing
/// ancestor with the rest appended.
fn resolve(path: &Path) -> Result<PathBuf, Refusal> {
    let path = std::path::absolute(path).map_err(|_| Refusal::ClimbsFromMissing)?;
    let mut missing: Vec<Component<'_>> = Vec::new();
    let mut existing: &Path = &path;
    loop {
        // `symlink_metadata` sees a link itself, so a dangling link is found here instead of
        // being taken for a file that does not exist yet.
        if std::fs::symlink_metadata(existing).is_ok() {
            let real = std::fs::canonicalize(existing)
                .map_err(|_| Refusal::Dangling(existing.to_path_buf()))?;
            let mut real = real;
            for component in missing.iter().rev() {
                match component {
                    Component::Normal(part) => real.push(part),
                    Component::CurDir => {}
                    _ => return Err(Refusal::ClimbsFromMissing),
                }
            }
            return Ok(real);
        }
        let Some(parent) = existing.parent() else {
            // Not even the filesystem root exists: nothing can be created there.
            return Err(Refusal::ClimbsFromMissing);
        };
        if let Some(last) = existing.components().next_back() {
            missing.push(last);
        }
        existing = parent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with a plan directory, and a directory outside it.
    struct Fixture {
        _dir: tempfile::TempDir,
        repo: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(repo.join(".git")).expect("mkdir");
        std::fs::create_dir_all(repo.join("plans/dr")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("secret"), "TOKEN=x").expect("writes");
        std::fs::write(repo.join("plans/dr/world.yaml"), "w").expect("writes");
        Fixture {
            _dir: dir,
            repo,
            outside,
        }
    }

    fn containment(f: &Fixture, allowed: &[PathBuf]) -> Containment {
        Containment::for_plan(&f.repo.join("plans/dr/lifeboat.yaml"), allowed).expect("builds")
    }

    #[test]
    fn the_root_is_the_nearest_directory_with_git() {
        let f = fixture();
        let c = containment(&f, &[]);
        assert_eq!(c.root(), std::fs::canonicalize(&f.repo).expect("exists"));
    }

    #[test]
    fn paths_inside_the_repository_are_accepted_existing_or_not() {
        let f = fixture();
        let c = containment(&f, &[]);
        for value in [
            "world.yaml",
            ".lifeboat/world.yaml",
            "../../shared/world.yaml",
            "./new/dir/state.json",
        ] {
            let real = c.check(&c.joined(value)).expect(value);
            assert!(real.starts_with(c.root()), "{value}: {real:?}");
        }
    }

    #[test]
    fn dot_dot_out_of_the_repository_and_absolute_paths_are_refused() {
        let f = fixture();
        let c = containment(&f, &[]);
        for value in [
            "../../../outside/secret",
            "../../../../../../../../../etc/passwd",
            "/proc/self/environ",
            "/etc/passwd",
            "/dev/zero",
            "/dev/full",
        ] {
            assert!(
                matches!(c.check(&c.joined(value)), Err(Refusal::Outside(_))),
                "{value}"
            );
        }
    }

    #[test]
    fn dot_dot_after_a_missing_directory_is_refused() {
        let f = fixture();
        let c = containment(&f, &[]);
        assert_eq!(
            c.check(&c.joined("missing/../../../../outside/secret")),
            Err(Refusal::ClimbsFromMissing)
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_before_the_check() {
        let f = fixture();
        let dr = f.repo.join("plans/dr");
        std::os::unix::fs::symlink(f.outside.join("secret"), dr.join("link.yaml")).expect("ln");
        std::os::unix::fs::symlink(&f.outside, dr.join("linked-dir")).expect("ln");
        std::os::unix::fs::symlink("/proc/self/environ", dr.join("environ.yaml")).expect("ln");
        std::os::unix::fs::symlink(f.outside.join("nothing"), dr.join("dangling")).expect("ln");
        std::os::unix::fs::symlink(dr.join("world.yaml"), dr.join("inside.yaml")).expect("ln");
        let c = containment(&f, &[]);
        for value in ["link.yaml", "linked-dir/secret", "linked-dir/new.yaml"] {
            assert!(
                matches!(c.check(&c.joined(value)), Err(Refusal::Outside(_))),
                "{value}"
            );
        }
        assert!(matches!(
            c.check(&c.joined("environ.yaml")),
            Err(Refusal::Outside(_))
        ));
        assert!(matches!(
            c.check(&c.joined("dangling")),
            Err(Refusal::Dangling(_))
        ));
        assert!(c.check(&c.joined("inside.yaml")).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_plan_directory_does_not_move_the_root() {
        let f = fixture();
        std::os::unix::fs::symlink(&f.outside, f.repo.join("plans/elsewhere")).expect("ln");
        let c = Containment::for_plan(&f.repo.join("plans/elsewhere/lifeboat.yaml"), &[])
            .expect("builds");
        assert_eq!(c.root(), std::fs::canonicalize(&f.repo).expect("exists"));
        assert!(matches!(
            c.check(&c.joined("secret")),
            Err(Refusal::Outside(_))
        ));
    }

    #[test]
    fn the_repositorys_git_directory_is_outside() {
        let f = fixture();
        std::fs::write(f.repo.join(".git/config"), "token").expect("writes");
        let c = containment(&f, &[]);
        assert!(matches!(
            c.check(&c.joined("../../.git/config")),
            Err(Refusal::InsideGit(_))
        ));
    }

    #[test]
    fn allowed_directories_are_accepted_but_not_quoted() {
        let f = fixture();
        let c = containment(&f, std::slice::from_ref(&f.outside));
        let real = c
            .check(&c.joined("../../../outside/secret"))
            .expect("allowed");
        assert!(!c.may_quote(&real));
        let inside = c.check(&c.joined("world.yaml")).expect("inside");
        assert!(c.may_quote(&inside));
    }

    #[test]
    fn a_plugin_runs_only_when_allowed_from_outside_the_plan() {
        let f = fixture();
        let bin = f.outside.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::write(bin.join("lifeboat-vmware"), "#!/bin/sh\n").expect("writes");
        std::fs::write(bin.join("other"), "#!/bin/sh\n").expect("writes");
        std::fs::write(f.repo.join("plans/dr/local-plugin"), "#!/bin/sh\n").expect("writes");
        let path_var = std::ffi::OsString::from(bin.as_os_str());
        let path_var = Some(path_var.as_os_str());
        let c = containment(&f, &[]);
        let real = |p: PathBuf| std::fs::canonicalize(p).expect("exists");

        // Nothing allowed: nothing runs, whatever the plan names.
        assert!(matches!(
            c.allowed_plugin("lifeboat-vmware", &[], path_var),
            Err(PluginRefusal::NotAllowed(_))
        ));
        // Allowed by name (looked up on PATH) or by absolute path.
        for allowed in [
            vec![PathBuf::from("lifeboat-vmware")],
            vec![bin.join("lifeboat-vmware")],
        ] {
            assert_eq!(
                c.allowed_plugin("lifeboat-vmware", &allowed, path_var),
                Ok(real(bin.join("lifeboat-vmware")))
            );
            assert!(matches!(
                c.allowed_plugin("other", &allowed, path_var),
                Err(PluginRefusal::NotAllowed(_))
            ));
        }
        // A relative path is contained, and still needs allowing.
        assert!(matches!(
            c.allowed_plugin("./local-plugin", &[], path_var),
            Err(PluginRefusal::NotAllowed(_))
        ));
        assert!(
            c.allowed_plugin(
                "./local-plugin",
                &[f.repo.join("plans/dr/local-plugin")],
                path_var
            )
            .is_ok()
        );
        assert!(matches!(
            c.allowed_plugin(
                "../../../outside/bin/lifeboat-vmware",
                &[bin.join("lifeboat-vmware")],
                path_var
            ),
            Err(PluginRefusal::Path(Refusal::Outside(_)))
        ));
        assert_eq!(
            c.allowed_plugin("missing", &[PathBuf::from("missing")], path_var),
            Err(PluginRefusal::NotFound)
        );
        // An absolute path outside the repository runs when it is allowed, and only then.
        let absolute = bin.join("lifeboat-vmware");
        let absolute = absolute.to_str().expect("UTF-8");
        assert!(matches!(
            c.allowed_plugin(absolute, &[], path_var),
            Err(PluginRefusal::NotAllowed(_))
        ));
        assert_eq!(
            c.allowed_plugin(absolute, &[bin.join("lifeboat-vmware")], path_var),
            Ok(real(bin.join("lifeboat-vmware")))
        );
    }

    #[test]
    fn a_plan_without_a_repository_is_contained_in_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        let c = Containment::for_plan(&dir.path().join("a/b/plan.yaml"), &[]).expect("builds");
        // Unless a `.git` happens to sit above the temporary directory.
        if !dir.path().ancestors().any(|a| a.join(".git").exists()) {
            assert!(c.check(&c.joined("w.yaml")).is_ok());
            assert!(matches!(
                c.check(&c.joined("../w.yaml")),
                Err(Refusal::Outside(_))
            ));
        }
    }
}
