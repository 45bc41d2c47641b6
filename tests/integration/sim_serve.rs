//! `lifeboat sim serve` as a user runs it: the real binary on `127.0.0.1:0`, its ready line,
//! the certificate it wrote, and a token from its endpoint.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::util::repo_root;

/// Kills the server however the test ends, so no process outlives it.
pub(crate) struct Running(pub(crate) Child);

/// A `lifeboat sim serve` on a free loopback port, ready: its URL, and its stdout kept open
/// (a server whose stdout closed would fail its next write).
pub(crate) struct Served {
    pub(crate) url: String,
    /// The rest of what it printed, after the ready line.
    pub(crate) stdout: BufReader<std::process::ChildStdout>,
    _server: Running,
}

pub(crate) fn serve(world: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Served {
    let binary = assert_cmd::cargo::cargo_bin("lifeboat");
    let child = Command::new(binary)
        .args(["sim", "serve", "--listen", "127.0.0.1:0", "--world"])
        .arg(world)
        .args(extra)
        .env_remove("LIFEBOAT_SIM_CLIENT_SECRET")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut server = Running(child);
    let mut stdout = BufReader::new(server.0.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a ready line");
    let url = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not the ready line: {first:?}"))
        .to_string();
    Served {
        url,
        stdout,
        _server: server,
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sim_serve_prints_the_ready_line_and_issues_tokens() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let world = dir.path().join("world.yaml");
    std::fs::copy(repo_root().join("examples/avs-failback/world.yaml"), &world)
        .expect("the example world");
    let mut served = serve(&world, &[], &[]);
    let url = served.url.clone();
    let stdout = &mut served.stdout;
    let port: u16 = url
        .strip_prefix("https://127.0.0.1:")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("not `https://127.0.0.1:PORT`: {url}"));
    assert_ne!(port, 0, "the real port, not the one asked for");
    let mut rest = Vec::new();
    for _ in 0..6 {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the settings");
        rest.push(line);
    }
    let cert = std::fs::canonicalize(dir.path().join("world.yaml.serve.pem"))
        .expect("the certificate is written next to the world");
    assert!(
        rest.iter()
            .any(|l| l.trim_end() == format!("export AZURE_AUTHORITY_HOST={url}")),
        "{rest:#?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.trim_end() == format!("export SSL_CERT_FILE={}", cert.display())),
        "{rest:#?}"
    );

    let pem = std::fs::read(&cert).expect("the certificate is written next to the world");
    let client = reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("PEM")])
        .build()
        .expect("a client");
    let response = client
        .post(format!(
            "{url}/11111111-1111-1111-1111-111111111111/oauth2/v2.0/token"
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "22222222-2222-2222-2222-222222222222"),
            ("client_secret", "sim-secret"),
            ("scope", &format!("{url}/.default")),
        ])
        .send()
        .expect("the token endpoint answers");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: serde_json::Value = response.json().expect("JSON");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
}

#[test]
fn sim_serve_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let world = dir.path().join("world.yaml");
    std::fs::copy(repo_root().join("examples/avs-failback/world.yaml"), &world)
        .expect("the example world");
    let output = Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .args(["sim", "serve", "--listen", "0.0.0.0:0", "--world"])
        .arg(&world)
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback only"), "{stderr}");
    assert!(!dir.path().join("world.yaml.serve.pem").exists());
}
