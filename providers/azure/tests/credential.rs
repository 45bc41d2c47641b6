//! The real `ClientSecretCredential` against a loopback HTTPS token endpoint, through the
//! provider's own HTTP client (which trusts the endpoint's self-signed certificate through
//! `SSL_CERT_FILE`), then ARM requests with the tokens it issued.
//!
//! Environment variables are process-wide (and setting them is `unsafe`, which the
//! workspace forbids), so the client side runs in a child process of this test binary
//! (`child_step`, ignored unless the parent starts it), given its environment with
//! `Command::env`. The parent serves the mocks and reads everything the child printed,
//! which must not contain the client secret or any token.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use common::mock::{Canned, Mock};
use lifeboat_engine::provider::{Provider, ProviderError, RefreshRequest};
use lifeboat_provider_azure::config::http_client;
use lifeboat_provider_azure::credential::{Credential, CredentialKind, TokenSource};
use lifeboat_provider_azure::{AzureConfig, AzureProvider};
use serde_json::json;

const SECRET: &str = "client-SECRET-value-91c3";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

#[tokio::test]
async fn client_secret_tokens_over_https_expire_and_stay_secret() {
    // The token endpoint: HTTPS on loopback, short-lived tokens `arm-token-N`.
    let (entra, pem) = Mock::start_tls().await;
    let issued: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let issued = issued.clone();
        entra.on("POST", &format!("/{TENANT}/oauth2/v2.0/token"), move |r| {
            let form = r.form();
            if form.get("client_secret").map(String::as_str) != Some(SECRET) {
                return Canned::json(
                    401,
                    json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]}),
                );
            }
            let mut issued = issued.lock().expect("issued");
            let token = format!("arm-token-{}-{}", issued.len(), "x".repeat(20));
            issued.push(token.clone());
            // Shorter than azure_identity's 5-minute refresh margin: every request gets a
            // new token, as after an expiry.
            Canned::json(
                200,
                json!({"token_type": "Bearer", "expires_in": 2, "ext_expires_in": 2, "access_token": token}),
            )
        });
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cert = dir.path().join("entra.pem");
    std::fs::write(&cert, &pem).expect("the certificate");

    // ARM: plain HTTP on loopback.
    let arm = Mock::start().await;
    let vault = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/v";
    for list in [
        "replicationFabrics",
        "replicationvCenters",
        "replicationProtectedItems",
    ] {
        arm.script(
            "GET",
            &format!("{vault}/{list}"),
            vec![Canned::json(200, json!({"value": []}))],
        );
    }

    let arm_base = arm.base.clone();
    let cert_path = cert.to_str().expect("a UTF-8 path").to_string();
    let empty_path = dir.path().to_str().expect("a UTF-8 path").to_string();
    let authority = entra.base.clone();
    let run = move |step: &str, vars: Vec<(&'static str, String)>| {
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args([
                "--exact",
                "child_step",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LIFEBOAT_TEST_STEP", step)
            .env("LIFEBOAT_TEST_ARM", &arm_base)
            .env("SSL_CERT_FILE", &cert_path)
            .env("AZURE_AUTHORITY_HOST", &authority)
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", "app-1")
            .env("AZURE_CLIENT_SECRET", SECRET)
            .env_remove("AZURE_FEDERATED_TOKEN_FILE");
        for (name, value) in vars {
            if value.is_empty() {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        command
    };
    let output = |mut command: Command| async move {
        tokio::task::spawn_blocking(move || command.output().expect("the child runs"))
            .await
            .expect("joined")
    };

    // Two refreshes with the pinned client-secret credential.
    let out = output(run("refresh", vec![])).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("step refresh: ok"),
        "the child did not run: {text}"
    );
    let issued = issued.lock().expect("issued").clone();
    assert!(issued.len() >= 2, "a new token after expiry: {issued:?}");
    let bearers: Vec<String> = arm
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization"))
        .collect();
    assert_eq!(bearers.len(), 6, "three lists per refresh");
    for bearer in &bearers {
        assert!(
            issued.iter().any(|t| *bearer == format!("Bearer {t}")),
            "{bearer} was not issued"
        );
    }
    // Tokens that expire within azure_identity's margin are never reused: every request
    // after the first got a new one.
    let distinct: std::collections::HashSet<&String> = bearers.iter().collect();
    assert!(distinct.len() >= 2, "{bearers:?}");
    assert_ne!(
        bearers[0], bearers[5],
        "the second refresh used a new token"
    );
    let form = entra.requests()[0].form();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "app-1");
    assert_eq!(form["client_secret"], SECRET);
    assert_eq!(form["scope"], format!("{}/.default", arm.base));
    assert_clean_text(&text, &issued);

    // A wrong secret: the error names the source and Entra's reason, never the secret.
    let wrong = "wrong-SECRET-5d1e";
    let out = output(run(
        "token",
        vec![("AZURE_CLIENT_SECRET", wrong.to_string())],
    ))
    .await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("step token: error"), "{text}");
    assert!(text.contains("client-secret"), "{text}");
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(!text.contains(wrong), "{text}");
    assert_clean_text(&text, &issued);

    // An `http://` authority host is refused by azure_identity, and said so.
    let out = output(run(
        "token",
        vec![("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9".to_string())],
    ))
    .await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("step token: error"), "{text}");
    assert!(text.contains("HTTPS"), "{text}");
    assert_clean_text(&text, &issued);

    // Nothing configured and no `az` on the PATH: the chain says what it tried.
    let out = output(run(
        "chain",
        vec![
            ("AZURE_AUTHORITY_HOST", String::new()),
            ("AZURE_TENANT_ID", String::new()),
            ("AZURE_CLIENT_ID", String::new()),
            ("AZURE_CLIENT_SECRET", String::new()),
            ("PATH", empty_path.clone()),
        ],
    ))
    .await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("step chain: error"), "{text}");
    assert!(text.contains("CredentialUnavailable"), "{text}");
    for source in [
        "client-secret",
        "workload-identity",
        "managed-identity",
        "azure-cli",
    ] {
        assert!(text.contains(source), "{source} missing from: {text}");
    }
}

/// A token endpoint that gives one token and then fails (503): the first failure comes
/// while the source is chosen (permanent, nothing works), later ones from a source already
/// chosen (transient, the engine retries).
#[tokio::test]
async fn a_failed_renewal_of_a_chosen_source_is_transient() {
    let (entra, pem) = Mock::start_tls().await;
    let served: Arc<Mutex<usize>> = Arc::default();
    {
        let served = served.clone();
        entra.on("POST", &format!("/{TENANT}/oauth2/v2.0/token"), move |_| {
            let mut served = served.lock().expect("served");
            *served += 1;
            if *served == 1 {
                // Inside azure_identity's 5-minute margin: the next call asks again.
                Canned::json(
                    200,
                    json!({"token_type": "Bearer", "expires_in": 2, "ext_expires_in": 2, "access_token": "arm-token-renewal-xxxxxxxxxxxx"}),
                )
            } else {
                Canned::json(503, json!({"error": "temporarily_unavailable"}))
            }
        });
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cert = dir.path().join("entra.pem");
    std::fs::write(&cert, &pem).expect("the certificate");
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            "--exact",
            "child_step",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LIFEBOAT_TEST_STEP", "renewal")
        .env("LIFEBOAT_TEST_ARM", "http://127.0.0.1:9")
        .env("SSL_CERT_FILE", &cert)
        .env("AZURE_AUTHORITY_HOST", &entra.base)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", "app-1")
        .env("AZURE_CLIENT_SECRET", SECRET);
    let out = tokio::task::spawn_blocking(move || command.output().expect("the child runs"))
        .await
        .expect("joined");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("step renewal: ok first"), "{text}");
    assert!(text.contains("renewal transient=true"), "{text}");
    assert!(text.contains("fresh transient=true"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

fn assert_clean_text(text: &str, tokens: &[String]) {
    assert!(!text.contains(SECRET), "the client secret leaked: {text}");
    for token in tokens {
        assert!(!text.contains(token.as_str()), "a token leaked: {text}");
    }
}

/// The client side, run by the test above in a child process with its environment; prints
/// what it got, errors in both their `Display` and `Debug` forms.
#[tokio::test]
#[ignore = "run by `client_secret_tokens_over_https_expire_and_stay_secret` in a child process"]
async fn child_step() {
    let Ok(step) = std::env::var("LIFEBOAT_TEST_STEP") else {
        return;
    };
    let arm = std::env::var("LIFEBOAT_TEST_ARM").expect("the ARM mock");
    let report = |result: Result<String, ProviderError>| match result {
        Ok(what) => println!("step {step}: ok {what}"),
        Err(error) => println!("step {step}: error {error} / {error:?}"),
    };
    match step.as_str() {
        "refresh" => {
            let config = AzureConfig::new(
                "s",
                "rg",
                "v",
                Some(&arm),
                None,
                Some(CredentialKind::ClientSecret),
            )
            .expect("a configuration");
            let provider = AzureProvider::new(config).expect("a provider");
            let request = RefreshRequest::default();
            let result = async {
                provider.refresh(&request).await?;
                // Past the 2-second lifetime is not needed: azure_identity renews any token
                // within 5 minutes of its expiry.
                provider.refresh(&request).await?;
                Ok(format!("{provider:?}"))
            }
            .await;
            report(result);
        }
        "token" => {
            let credential =
                Credential::pinned(CredentialKind::ClientSecret, http_client().expect("client"));
            let result = credential
                .token("https://management.azure.com/.default", false)
                .await
                .map(|token| format!("{token:?}"));
            report(result);
        }
        "chain" => {
            let credential = Credential::chain(http_client().expect("client"));
            let result = credential
                .token("https://management.azure.com/.default", false)
                .await
                .map(|token| format!("{token:?}"));
            report(result);
        }
        "renewal" => {
            let credential =
                Credential::pinned(CredentialKind::ClientSecret, http_client().expect("client"));
            let scope = "https://management.azure.com/.default";
            credential
                .token(scope, false)
                .await
                .expect("the first token");
            println!("step renewal: ok first");
            for (what, refresh) in [("renewal", false), ("fresh", true)] {
                let error = credential
                    .token(scope, refresh)
                    .await
                    .expect_err("the endpoint fails now");
                println!("{what} transient={} {error}", error.is_transient());
            }
        }
        other => panic!("unknown step `{other}`"),
    }
}
