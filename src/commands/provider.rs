//! Choosing the provider a plan names. This is the one place that knows every provider crate:
//! the engine only sees `dyn Provider`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat_engine::diagnostic::{Diagnostic, codes};
use lifeboat_engine::model::{
    AzureCredential, AzureProviderConfig, Plan, PluginProviderConfig, ProviderConfig,
};
use lifeboat_engine::paths::{ContainedPath, PluginRefusal};
use lifeboat_engine::provider::Provider;
use lifeboat_engine::{SourceFile, Spanned};
use lifeboat_provider_azure::{AzureConfig, AzureProvider, CredentialKind};
use lifeboat_provider_plugin::{PluginProvider, Spec};
use lifeboat_provider_sim::{SimProvider, WorldError, store};

use crate::render::diagnostics::render_human;

/// Where a plan's world file is: `provider.sim.world`, relative to the plan file.
pub fn world_path(plan_path: &Path, world: &Spanned<String>) -> PathBuf {
    let dir = plan_path.parent().unwrap_or(Path::new(""));
    dir.join(&world.value)
}

/// A path value of the plan, checked to be inside the plan's repository (or an allowed
/// directory): `plan::path-outside` otherwise.
pub fn contained(
    plan_path: &Path,
    value: &Spanned<String>,
    key: &str,
) -> Result<ContainedPath, Box<Diagnostic>> {
    match super::paths::containment(plan_path) {
        Some(containment) => containment.resolve_value(value, key),
        None => Err(Box::new(Diagnostic::error(
            codes::PLAN_PATH_OUTSIDE,
            format!(
                "the directory of the plan `{}` cannot be resolved, so `{key}` cannot be checked",
                plan_path.display()
            ),
        ))),
    }
}

/// Whether a world file that failed to load may be quoted in the report: it must be inside
/// the repository and look like a world (a top-level `configuration_server:`, which the sim
/// always writes first). Anything else (a credentials file, `/proc/self/environ` through an
/// allowed directory) is reported by name and kind of error only.
fn may_quote_world(plan_path: &Path, real: &Path, error: &WorldError) -> bool {
    let inside = super::paths::containment(plan_path).is_some_and(|c| c.may_quote(real));
    let looks_like_world = match error {
        WorldError::Invalid { file, .. } => file
            .text()
            .lines()
            .any(|line| line.starts_with("configuration_server:")),
        _ => true,
    };
    inside && looks_like_world
}

/// Starts parsing the `sim` world in the background, so that [`open`] finds it parsed. The sim
/// keeps one parsed world per file for the whole process, keyed by the file's exact bytes, so
/// a warm-up can never hand out a world that changed since. Only a contained world is read.
pub fn warm_up(plan_path: &Path, plan: &Plan) -> Option<std::thread::JoinHandle<()>> {
    let ProviderConfig::Sim(config) = &plan.provider.value else {
        return None;
    };
    let path = contained(plan_path, &config.world, "provider.sim.world")
        .ok()?
        .path;
    path.is_file().then(|| {
        std::thread::spawn(move || {
            let _ = SimProvider::open(&path);
        })
    })
}

/// A provider ready to use, or the report of why not (already printed). A plugin is started
/// on `runtime`, which carries its I/O for as long as it runs.
pub fn open(
    plan_path: &Path,
    plan: &Plan,
    file: &SourceFile,
    runtime: &tokio::runtime::Runtime,
) -> Result<Arc<dyn Provider>, ()> {
    let config = match &plan.provider.value {
        ProviderConfig::Sim(config) => config,
        ProviderConfig::Azure(config) => {
            return open_azure(plan, config, file).map(|p| Arc::new(p) as Arc<dyn Provider>);
        }
        ProviderConfig::Plugin(config) => {
            let spec = plugin_spec(plan_path, config).map_err(|diagnostic| {
                eprint!("{}", render_human(&[*diagnostic], file));
            })?;
            return match runtime.block_on(PluginProvider::start(spec)) {
                Ok(provider) => Ok(Arc::new(provider) as Arc<dyn Provider>),
                Err(error) => {
                    eprintln!("error: {error}");
                    Err(())
                }
            };
        }
    };
    let contained_or_report = |value: &Spanned<String>, key: &str| {
        contained(plan_path, value, key).map_err(|diagnostic| {
            eprint!("{}", render_human(&[*diagnostic], file));
        })
    };
    let world = contained_or_report(&config.world, "provider.sim.world")?;
    let path = world.path.clone();
    if !path.exists()
        && let Some(start) = &config.start_from
    {
        let start = contained_or_report(start, "provider.sim.start_from")?;
        let start_path = start.path.clone();
        let created = store::read(&start_path).and_then(|world| {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| WorldError::Write {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            store::write(&path, &world)
        });
        match created {
            Ok(_) => eprintln!(
                "created the world `{}` from `{}` (delete it to start the rehearsal over)",
                path.display(),
                start_path.display()
            ),
            Err(error) => {
                report_world_error_as(&error, may_quote_world(plan_path, &start.real, &error));
                return Err(());
            }
        }
    }
    if !path.exists() {
        let diagnostic = Diagnostic::error(
            codes::WORLD_MISSING,
            format!("the world file `{}` does not exist", path.display()),
        )
        .with_label(config.world.span, "no world here")
        .with_help(format!(
            "create it with `lifeboat sim init {}` (every machine failed over, every fact healthy), or copy a starting world with `--from`",
            plan_path.display()
        ));
        eprint!("{}", render_human(&[diagnostic], file));
        return Err(());
    }
    let provider = SimProvider::open(&path).map_err(|error| {
        report_world_error_as(&error, may_quote_world(plan_path, &world.real, &error));
    })?;
    for warning in provider.warnings() {
        eprintln!("warning: {warning}");
    }
    Ok(Arc::new(provider) as Arc<dyn Provider>)
}

/// How to start the plugin `provider.plugin` names, once it is allowed from outside the plan
/// (`--allow-plugin`, `LIFEBOAT_ALLOWED_PLUGINS`): `plan` runs it on untrusted changes, so
/// the plan alone can never make lifeboat run code.
pub fn plugin_spec(
    plan_path: &Path,
    config: &PluginProviderConfig,
) -> Result<Spec, Box<Diagnostic>> {
    let Some(program) = config.command.value.first() else {
        return Err(Box::new(
            Diagnostic::error(codes::PLAN_SCHEMA, "`provider.plugin.command` is empty")
                .with_label(config.command.span, "no executable")
                .with_help(
                    "name the plugin and its arguments, e.g. `command: [./my-plugin, --flag]`",
                ),
        ));
    };
    let containment = super::paths::containment(plan_path).ok_or_else(|| {
        Box::new(Diagnostic::error(
            codes::PLAN_PATH_OUTSIDE,
            format!(
                "the directory of the plan `{}` cannot be resolved, so the plugin cannot be checked",
                plan_path.display()
            ),
        ))
    })?;
    let path_var = std::env::var_os("PATH");
    let real = containment
        .allowed_plugin(
            &program.value,
            super::paths::allowed_plugins(),
            path_var.as_deref(),
        )
        .map_err(|refusal| {
            Box::new(match refusal {
                PluginRefusal::NotAllowed(real) => Diagnostic::error(
                    codes::PLAN_PLUGIN_NOT_ALLOWED,
                    format!(
                        "the plugin `{}` is not allowed to run: plugins run at `plan` too, so they must be allowed from outside the plan",
                        program.value
                    ),
                )
                .with_label(program.span, "not allowed")
                .with_help(format!(
                    "after reviewing it, allow it with `--allow-plugin {0}` or `{1}={0}` (`:`-separated); a plan cannot allow itself a plugin",
                    real.display(),
                    super::paths::ALLOWED_PLUGINS_ENV
                )),
                PluginRefusal::NotFound => Diagnostic::error(
                    codes::PLAN_SCHEMA,
                    format!("the plugin `{}` names no executable file", program.value),
                )
                .with_label(program.span, "not found")
                .with_help("give a path relative to the plan (`./my-plugin`), an absolute path, or a name found on `PATH`"),
                PluginRefusal::Path(refusal) => Diagnostic::error(
                    codes::PLAN_PATH_OUTSIDE,
                    format!("`provider.plugin.command` `{}` {refusal}", program.value),
                )
                .with_label(program.span, "not inside the repository")
                .with_help("keep a plugin the plan names by a relative path inside the repository, or name an allowed executable by its absolute path"),
            })
        })?;
    let timeout = match &config.timeout {
        None => DEFAULT_PLUGIN_TIMEOUT,
        Some(value) => crate::cli::parse_duration(&value.value)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Box::new(
                    Diagnostic::error(
                        codes::PLAN_SCHEMA,
                        format!(
                            "`provider.plugin.timeout` `{}` is not a duration",
                            value.value
                        ),
                    )
                    .with_label(value.span, "not a duration")
                    .with_help("write a positive duration such as `30s` or `2m`"),
                )
            })?,
    };
    let dir = plan_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(Spec {
        program: real,
        args: config.command.value[1..]
            .iter()
            .map(|a| a.value.clone())
            .collect(),
        dir,
        config: config.config.clone().unwrap_or_default(),
        timeout,
    })
}

/// How long a plugin may leave a request unanswered when the plan does not say.
pub const DEFAULT_PLUGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The `azure` provider from `provider.azure`; a value it cannot use is a diagnostic pointing
/// at that value. Credentials are not read here: the first request asks the chain.
fn open_azure(
    plan: &Plan,
    config: &AzureProviderConfig,
    file: &SourceFile,
) -> Result<AzureProvider, ()> {
    let credential = config.credential.as_ref().map(|c| match c.value {
        AzureCredential::ClientSecret => CredentialKind::ClientSecret,
        AzureCredential::WorkloadIdentity => CredentialKind::WorkloadIdentity,
        AzureCredential::ManagedIdentity => CredentialKind::ManagedIdentity,
        AzureCredential::AzureCli => CredentialKind::AzureCli,
    });
    let built = AzureConfig::new(
        &config.subscription_id.value,
        &config.resource_group.value,
        &config.vault.value,
        config
            .resource_manager_endpoint
            .as_ref()
            .map(|e| e.value.as_str()),
        config.api_version.as_ref().map(|v| v.value.as_str()),
        credential,
    )
    .and_then(AzureProvider::new);
    built.map_err(|error| {
        let span = match error.field() {
            Some("subscription_id") => config.subscription_id.span,
            Some("resource_group") => config.resource_group.span,
            Some("vault") => config.vault.span,
            Some("resource_manager_endpoint") => config
                .resource_manager_endpoint
                .as_ref()
                .map_or(plan.provider.span, |e| e.span),
            Some("api_version") => config
                .api_version
                .as_ref()
                .map_or(plan.provider.span, |v| v.span),
            _ => plan.provider.span,
        };
        let mut diagnostic = Diagnostic::error(codes::PLAN_SCHEMA, error.to_string())
            .with_label(span, "cannot be used");
        if error.field() == Some("resource_manager_endpoint") {
            diagnostic = diagnostic.with_help(
                "use `https://` (plain `http://` is allowed only for 127.0.0.1, ::1 and localhost, as the token travels in every request)",
            );
        }
        eprint!("{}", render_human(&[diagnostic], file));
    })
}

/// Prints a world error: the diagnostics against the world file where there are some.
pub fn report_world_error(error: &WorldError) {
    report_world_error_as(error, true);
}

/// [`report_world_error`], or, when the file may not be quoted, only its name and the kind of
/// error: a diagnostic's message and labels would show the file's text.
pub fn report_world_error_as(error: &WorldError, quote: bool) {
    match error {
        WorldError::Invalid { file, diagnostics } if !quote => {
            let kinds: std::collections::BTreeSet<&str> =
                diagnostics.iter().map(|d| d.code).collect();
            let kinds: Vec<String> = kinds.iter().map(|k| format!("`{k}`")).collect();
            eprintln!(
                "error: the world file `{}` is not a usable world ({})",
                file.name(),
                kinds.join(", ")
            );
            eprintln!(
                "  help: its content is not shown because it is outside the repository or does not look like a lifeboat world; check that the plan names the right file"
            );
        }
        WorldError::Invalid { file, diagnostics } => {
            eprint!("{}", render_human(diagnostics, file));
            eprintln!("the world file `{}` is invalid", file.name());
        }
        other => eprintln!("error: {other}"),
    }
}
