//! Where the files a plan names may be (see `lifeboat_engine::paths`), and what is allowed
//! from outside the plan: directories (`--allow-path DIR`, `LIFEBOAT_ALLOWED_PATHS`) and
//! plugin executables (`--allow-plugin PATH`, `LIFEBOAT_ALLOWED_PLUGINS`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lifeboat_engine::Diagnostic;
use lifeboat_engine::diagnostic::codes;
use lifeboat_engine::paths::Containment;

/// The environment variable listing allowed directories, separated like `PATH` (`:`).
pub const ALLOWED_PATHS_ENV: &str = "LIFEBOAT_ALLOWED_PATHS";

/// The environment variable listing plugin executables allowed to run, separated by `:`.
pub const ALLOWED_PLUGINS_ENV: &str = "LIFEBOAT_ALLOWED_PLUGINS";

static ALLOWED: OnceLock<Vec<PathBuf>> = OnceLock::new();
static ALLOWED_PLUGINS: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Records the plugin executables allowed from outside the plan: `--allow-plugin` and
/// `LIFEBOAT_ALLOWED_PLUGINS`. Called once, before any command runs.
pub fn allow_plugins(mut plugins: Vec<PathBuf>) {
    if let Some(list) = std::env::var_os(ALLOWED_PLUGINS_ENV) {
        plugins.extend(std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()));
    }
    let _ = ALLOWED_PLUGINS.set(plugins);
}

pub fn allowed_plugins() -> &'static [PathBuf] {
    ALLOWED_PLUGINS.get().map_or(&[], Vec::as_slice)
}

/// Records the directories allowed from outside the plan: the command line's `--allow-path`
/// and `LIFEBOAT_ALLOWED_PATHS`. Called once, before any command runs.
pub fn allow(mut dirs: Vec<PathBuf>) {
    if let Some(list) = std::env::var_os(ALLOWED_PATHS_ENV) {
        dirs.extend(std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()));
    }
    let _ = ALLOWED.set(dirs);
}

pub fn allowed() -> &'static [PathBuf] {
    ALLOWED.get().map_or(&[], Vec::as_slice)
}

/// The containment of the plan at `plan_path`; `None` when its directory cannot be resolved
/// (it does not exist), which reading the plan reports.
pub fn containment(plan_path: &Path) -> Option<Containment> {
    Containment::for_plan(plan_path, allowed()).ok()
}

/// The plan file itself may be a symlink committed in the change under review: it must
/// resolve inside its own repository too.
pub fn check_plan_file(plan_path: &Path) -> Result<(), Box<Diagnostic>> {
    let Some(containment) = containment(plan_path) else {
        return Ok(());
    };
    containment.check(plan_path).map(|_| ()).map_err(|refusal| {
        Box::new(
            Diagnostic::error(
                codes::PLAN_PATH_OUTSIDE,
                format!("the plan file `{}` {refusal}", plan_path.display()),
            )
            .with_help(
                "run lifeboat on the plan file itself, not on a symlink that leaves the repository; to allow a directory, pass `--allow-path DIR` or set `LIFEBOAT_ALLOWED_PATHS`",
            ),
        )
    })
}
