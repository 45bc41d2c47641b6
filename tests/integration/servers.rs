//! Real PostgreSQL and Azurite on loopback for the remote state tests.
//!
//! Where a server comes from, in order:
//! 1. the environment, when `.ci/run` started it: `LIFEBOAT_TEST_PGPORT` (with
//!    `LIFEBOAT_TEST_PGPASSWORD`; user `lifeboat`, database `postgres` on 127.0.0.1) and
//!    `LIFEBOAT_TEST_AZURITE_PORT` (Azurite's well-known account);
//! 2. started here, once per test binary, from PostgreSQL's binaries (`pg_config --bindir`
//!    or `/usr/lib/postgresql/*/bin`; as the `postgres` user when running as root, since
//!    `initdb` refuses root) and `tools/azurite` (`npm ci --prefix tools/azurite`), each in
//!    a temporary directory on a free port; a watchdog stops it and removes the directory
//!    when this process ends.
//!
//! A server that cannot be had fails the test, saying how to get it, unless
//! `LIFEBOAT_SKIP_REMOTE_STATE_TESTS=1` is set (then each test says it was skipped).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::repo_root;

/// Azurite's documented development account and key (public, not a secret anywhere).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const SKIP: &str = "LIFEBOAT_SKIP_REMOTE_STATE_TESTS";

/// A running PostgreSQL.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub port: u16,
    pub password: String,
}

impl Postgres {
    /// libpq's variables for lifeboat.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", "127.0.0.1".to_string()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", "lifeboat".to_string()),
            ("PGPASSWORD", self.password.clone()),
            ("PGDATABASE", "postgres".to_string()),
            ("PGSSLMODE", "disable".to_string()),
        ]
    }
}

/// A running Azurite (blob service).
#[derive(Debug, Clone)]
pub struct Azurite {
    pub port: u16,
}

impl Azurite {
    pub fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "AZURE_STORAGE_CONNECTION_STRING",
            format!(
                "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={};",
                self.account_url()
            ),
        )]
    }
}

/// Whether the remote state tests are skipped on purpose (said on stderr).
pub fn skipped(test: &str) -> bool {
    let skip = std::env::var(SKIP).is_ok_and(|v| v == "1");
    if skip {
        eprintln!("{test}: skipped because {SKIP}=1");
    }
    skip
}

pub fn postgres() -> Postgres {
    static SERVER: OnceLock<Result<Postgres, String>> = OnceLock::new();
    SERVER
        .get_or_init(start_postgres)
        .clone()
        .unwrap_or_else(|reason| {
            panic!(
                "no PostgreSQL for the remote state tests: {reason}\n\
                 help: install PostgreSQL (Debian: `apt-get install postgresql`), or start one and set \
                 LIFEBOAT_TEST_PGPORT and LIFEBOAT_TEST_PGPASSWORD (user `lifeboat`), as .ci/run does; \
                 {SKIP}=1 skips these tests"
            )
        })
}

pub fn azurite() -> Azurite {
    static SERVER: OnceLock<Result<Azurite, String>> = OnceLock::new();
    SERVER
        .get_or_init(start_azurite)
        .clone()
        .unwrap_or_else(|reason| {
            panic!(
                "no Azurite for the remote state tests: {reason}\n\
                 help: `npm ci --prefix tools/azurite` (Node.js 20), or start Azurite and set \
                 LIFEBOAT_TEST_AZURITE_PORT, as .ci/run does; {SKIP}=1 skips these tests"
            )
        })
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn wait_for_port(port: u16, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "nothing listened on 127.0.0.1:{port} within {within:?}"
    ))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `program` as the `postgres` user when this process is root.
fn as_postgres(program: &Path, root: bool) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn pg_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// Stops `stop` (a shell command) and removes `dir` once this test process is gone.
fn watchdog(stop: &str, dir: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn start_postgres() -> Result<Postgres, String> {
    if let (Ok(port), Ok(password)) = (
        std::env::var("LIFEBOAT_TEST_PGPORT"),
        std::env::var("LIFEBOAT_TEST_PGPASSWORD"),
    ) {
        let port = port
            .parse()
            .map_err(|_| "LIFEBOAT_TEST_PGPORT is not a port")?;
        wait_for_port(port, Duration::from_secs(10))?;
        return Ok(Postgres { port, password });
    }
    let bin = pg_bindir().ok_or(
        "no `initdb` (neither `pg_config --bindir` nor /usr/lib/postgresql/*/bin has one)",
    )?;
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let password = format!("pw-{}", uuid_like());
    std::fs::write(dir.join("pw"), format!("{password}\n")).map_err(|e| e.to_string())?;
    if root {
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("cannot give the data directory to the `postgres` user".to_string());
        }
    }
    let data = dir.join("data");
    let initdb = as_postgres(&bin.join("initdb"), root)
        .arg("-D")
        .arg(&data)
        .args(["-U", "lifeboat", "--auth=scram-sha-256", "--no-sync"])
        .arg(format!("--pwfile={}", dir.join("pw").display()))
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !initdb.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        ));
    }
    let port = free_port()?;
    let pg_ctl = bin.join("pg_ctl");
    let start = as_postgres(&pg_ctl, root)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.display()
        ))
        .args(["-w", "start"])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
    if !start.status.success() {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        return Err(format!("pg_ctl start failed: {log}"));
    }
    let runuser = if root { "runuser -u postgres -- " } else { "" };
    watchdog(
        &format!(
            "{runuser}'{}' -D '{}' -m immediate stop",
            pg_ctl.display(),
            data.display()
        ),
        &dir,
    );
    wait_for_port(port, Duration::from_secs(30))?;
    Ok(Postgres { port, password })
}

fn start_azurite() -> Result<Azurite, String> {
    if let Ok(port) = std::env::var("LIFEBOAT_TEST_AZURITE_PORT") {
        let port = port
            .parse()
            .map_err(|_| "LIFEBOAT_TEST_AZURITE_PORT is not a port")?;
        wait_for_port(port, Duration::from_secs(10))?;
        return Ok(Azurite { port });
    }
    let bin = repo_root().join("tools/azurite/node_modules/.bin/azurite-blob");
    if !bin.exists() {
        return Err(format!("`{}` is not installed", bin.display()));
    }
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-azurite-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let port = free_port()?;
    let child = Command::new(&bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .args([
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ])
        // In memory; anything else it writes goes to the temporary directory.
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start Azurite: {e}"))?;
    watchdog(&format!("kill {}", child.id()), &dir);
    wait_for_port(port, Duration::from_secs(60))?;
    Ok(Azurite { port })
}

/// A name part unique to this process and call.
pub fn uuid_like() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n}", std::process::id())
}
