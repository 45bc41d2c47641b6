//! The PostgreSQL connection from libpq's environment variables, as `psql` reads them:
//! `DATABASE_URL` (a `postgresql://` URL or `key=value` pairs), with `PGHOST`, `PGPORT`,
//! `PGUSER`, `PGPASSWORD`, `PGDATABASE` and `PGSSLMODE` filling in what it leaves out.
//!
//! Nothing here ever formats the password: messages name the variable, and
//! [`describe`] shows host, port and database only.

use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

/// The connection settings from the environment (`var` reads a variable).
pub fn config(var: impl Fn(&str) -> Option<String>) -> Result<tokio_postgres::Config, String> {
    let url = var("DATABASE_URL");
    let mut config = match &url {
        Some(url) => url.parse::<tokio_postgres::Config>().map_err(|e| {
            // tokio-postgres names the option, never its value.
            format!("`DATABASE_URL` is not a PostgreSQL connection string: {e}")
        })?,
        None => tokio_postgres::Config::new(),
    };
    if config.get_hosts().is_empty() {
        let hosts = var("PGHOST").unwrap_or_else(|| "localhost".to_string());
        for host in hosts.split(',') {
            config.host(host.trim());
        }
    }
    if config.get_ports().is_empty()
        && let Some(port) = var("PGPORT")
    {
        let port = port
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("`PGPORT` is not a port number: `{port}`"))?;
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = var("PGUSER")
            .or_else(|| var("USER"))
            .ok_or("no database user: set `PGUSER` (or a user in `DATABASE_URL`)")?;
        config.user(&user);
    }
    if config.get_password().is_none()
        && let Some(password) = var("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_dbname().is_none()
        && let Some(dbname) = var("PGDATABASE")
    {
        config.dbname(&dbname);
    }
    let url_sets_ssl = url.as_deref().is_some_and(|u| u.contains("sslmode"));
    if !url_sets_ssl && let Some(mode) = var("PGSSLMODE") {
        config.ssl_mode(ssl_mode(&mode)?);
    }
    config.application_name("lifeboat");
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok(config)
}

/// libpq's modes; lifeboat always verifies a server certificate against the platform's
/// roots, so `require` and `verify-full` behave alike, and `allow` tries TLS as `prefer` does.
fn ssl_mode(mode: &str) -> Result<SslMode, String> {
    match mode.trim() {
        "disable" => Ok(SslMode::Disable),
        "allow" | "prefer" => Ok(SslMode::Prefer),
        "require" | "verify-ca" | "verify-full" => Ok(SslMode::Require),
        other => Err(format!(
            "`PGSSLMODE` `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
        )),
    }
}

/// `postgres://HOST:PORT/DB`, for messages: no user, no password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("postgres://{host}:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn libpq_variables_fill_in_and_the_password_never_shows() {
        let config = config(env(&[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", "6543"),
            ("PGUSER", "lifeboat"),
            ("PGPASSWORD", "s3cret-pw"),
            ("PGDATABASE", "dr"),
            ("PGSSLMODE", "disable"),
        ]))
        .expect("valid");
        assert_eq!(config.get_ports(), &[6543]);
        assert_eq!(config.get_password(), Some(&b"s3cret-pw"[..]));
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        assert_eq!(describe(&config), "postgres://127.0.0.1:6543/dr");
        assert!(!format!("{config:?}").contains("s3cret-pw"));
    }

    #[test]
    fn database_url_wins_and_bad_values_are_named_without_secrets() {
        let config = config(env(&[
            (
                "DATABASE_URL",
                "postgresql://u:pw-in-url@db.example:5433/states",
            ),
            ("PGPORT", "1"),
        ]))
        .expect("valid");
        assert_eq!(describe(&config), "postgres://db.example:5433/states");
        let error = super::config(env(&[(
            "DATABASE_URL",
            "postgresql://u:pw-in-url@h:notaport/x",
        )]))
        .expect_err("bad port");
        assert!(!error.contains("pw-in-url"), "{error}");
        let error = super::config(env(&[("PGUSER", "u"), ("PGSSLMODE", "sometimes")]))
            .expect_err("bad mode");
        assert!(error.contains("PGSSLMODE"), "{error}");
    }
}
