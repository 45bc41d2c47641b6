//! Choosing the provider a plan names. This is the one place that knows every provider crate:
//! the engine only sees `dyn Provider`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat_engine::diagnostic::{Diagnostic, codes};
use lifeboat_engine::model::{AzureCredential, AzureProviderConfig, Plan, ProviderConfig};
use lifeboat_engine::provider::Provider;
use lifeboat_engine::{SourceFile, Spanned};
use lifeboat_provider_azure::{AzureConfig, AzureProvider, CredentialKind};
use lifeboat_provider_sim::{SimProvider, WorldError, store};

use crate::render::diagnostics::render_human;

/// Where a plan's world file is: `provider.sim.world`, relative to the plan file.
pub fn world_path(plan_path: &Path, world: &Spanned<String>) -> PathBuf {
    let dir = plan_path.parent().unwrap_or(Path::new(""));
    dir.join(&world.value)
}

/// Starts parsing the `sim` world in the background, so that [`open`] finds it parsed. The sim
/// keeps one parsed world per file for the whole process, keyed by the file's exact bytes, so
/// a warm-up can never hand out a world that changed since.
pub fn warm_up(plan_path: &Path, plan: &Plan) -> Option<std::thread::JoinHandle<()>> {
    let ProviderConfig::Sim(config) = &plan.provider.value else {
        return None;
    };
    let path = world_path(plan_path, &config.world);
    path.is_file().then(|| {
        std::thread::spawn(move || {
            let _ = SimProvider::open(&path);
        })
    })
}

/// A provider ready to use, or the report of why not (already printed).
pub fn open(plan_path: &Path, plan: &Plan, file: &SourceFile) -> Result<Arc<dyn Provider>, ()> {
    let config = match &plan.provider.value {
        ProviderConfig::Sim(config) => config,
        ProviderConfig::Azure(config) => {
            return open_azure(plan, config, file).map(|p| Arc::new(p) as Arc<dyn Provider>);
        }
        other => {
            let diagnostic = Diagnostic::error(
                codes::PLAN_SCHEMA,
                format!(
                    "the `{}` provider is not available in this build yet",
                    other.kind()
                ),
            )
            .with_label(plan.provider.span, "only `sim` and `azure` are implemented")
            .with_help(
                "use `provider: {sim: {world: world.yaml}}` to rehearse against a simulated estate",
            );
            eprint!("{}", render_human(&[diagnostic], file));
            return Err(());
        }
    };
    let path = world_path(plan_path, &config.world);
    if !path.exists()
        && let Some(start) = &config.start_from
    {
        let start_path = world_path(plan_path, start);
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
                report_world_error(&error);
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
    SimProvider::open(&path)
        .map(|p| Arc::new(p) as Arc<dyn Provider>)
        .map_err(|error| report_world_error(&error))
}

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
    match error {
        WorldError::Invalid { file, diagnostics } => {
            eprint!("{}", render_human(diagnostics, file));
            eprintln!("the world file `{}` is invalid", file.name());
        }
        other => eprintln!("error: {other}"),
    }
}
