//! The `state:` block: leases within what each backend can honour, a schema name PostgreSQL
//! takes unquoted, a container name Azure accepts, an account URL that is HTTPS (HTTP only on
//! loopback, for Azurite).

use std::time::Duration;

use crate::diagnostic::{Diagnostic, codes};
use crate::model::{MIN_LEASE, Plan, StateConfig, parse_lease};
use crate::span::Spanned;

/// Azure's blob leases last 15 to 60 seconds (or forever, which lifeboat never asks for).
pub const AZURE_LEASE: (Duration, Duration) = (Duration::from_secs(15), Duration::from_secs(60));

pub(super) fn check(plan: &Plan, out: &mut Vec<Diagnostic>) {
    let Some(state) = &plan.state else {
        return;
    };
    match &state.value {
        StateConfig::Local(_) => {}
        StateConfig::Postgres(pg) => {
            if let Some(lease) = &pg.lease {
                check_lease(lease, "state.postgres.lease", (MIN_LEASE, None), out);
            }
            if let Some(schema) = &pg.schema
                && !is_identifier(&schema.value)
            {
                out.push(schema_error(
                    schema,
                    format!("`{}` is not a schema name lifeboat uses", schema.value),
                    "use lower-case letters, digits and `_`, starting with a letter or `_`, at most 63 characters",
                ));
            }
            if let Some(name) = &pg.name
                && name.value.trim().is_empty()
            {
                out.push(schema_error(
                    name,
                    "the state's name is empty".to_string(),
                    "name the state, or leave `name` out to use the plan's name",
                ));
            }
        }
        StateConfig::AzureBlob(blob) => {
            if let Some(lease) = &blob.lease {
                check_lease(
                    lease,
                    "state.azure_blob.lease",
                    (AZURE_LEASE.0, Some(AZURE_LEASE.1)),
                    out,
                );
            }
            if !is_container_name(&blob.container.value) {
                out.push(schema_error(
                    &blob.container,
                    format!("`{}` is not a valid container name", blob.container.value),
                    "Azure container names are 3 to 63 characters: lower-case letters, digits and single hyphens, starting and ending with a letter or digit",
                ));
            }
            if let Some(name) = &blob.blob
                && (name.value.is_empty() || name.value.len() > 1024)
            {
                out.push(schema_error(
                    name,
                    "a blob name is 1 to 1024 characters".to_string(),
                    "name the blob, or leave `blob` out for `NAME.json`",
                ));
            }
            let url = blob.account_url.value.as_str();
            if !(url.starts_with("https://") || is_loopback_http(url)) {
                out.push(schema_error(
                    &blob.account_url,
                    format!("`{url}` is not an HTTPS URL"),
                    "the account URL is `https://ACCOUNT.blob.core.windows.net`; plain HTTP only on loopback (Azurite: `http://127.0.0.1:10000/devstoreaccount1`)",
                ));
            }
        }
    }
}

fn check_lease(
    lease: &Spanned<String>,
    key: &str,
    (min, max): (Duration, Option<Duration>),
    out: &mut Vec<Diagnostic>,
) {
    let range = match max {
        Some(max) => format!("{}s to {}s", min.as_secs(), max.as_secs()),
        None => format!("at least {}s", min.as_secs()),
    };
    match parse_lease(&lease.value) {
        Err(reason) => out.push(schema_error(lease, format!("`{key}`: {reason}"), &format!("a lease is {range}, e.g. `60s`"))),
        Ok(d) if d < min || max.is_some_and(|max| d > max) => out.push(schema_error(
            lease,
            format!("`{key}` is {}s; it must be {range}", d.as_secs_f64()),
            if max.is_some() {
                "Azure's blob leases last 15 to 60 seconds; lifeboat renews the lease while it runs, so a short one only shortens the wait after a holder dies"
            } else {
                "the lease is renewed every third of it while lifeboat runs; a shorter one would be lost to an ordinary network pause"
            },
        )),
        Ok(_) => {}
    }
}

fn schema_error(value: &Spanned<String>, message: String, help: &str) -> Diagnostic {
    Diagnostic::error(codes::PLAN_SCHEMA, message)
        .with_label(value.span, "here")
        .with_help(help)
}

/// A PostgreSQL identifier that needs no quoting (lifeboat quotes it anyway).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

fn is_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert!(is_identifier("lifeboat"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("Lifeboat"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier(""));
        assert!(is_container_name("lifeboat-state"));
        assert!(!is_container_name("ab"));
        assert!(!is_container_name("a--b"));
        assert!(!is_container_name("Upper"));
        assert!(is_loopback_http("http://127.0.0.1:10000/devstoreaccount1"));
        assert!(is_loopback_http("http://localhost:10000/x"));
        assert!(is_loopback_http("http://[::1]:10000/x"));
        assert!(!is_loopback_http("http://contoso.blob.core.windows.net"));
        assert!(!is_loopback_http("http://127.0.0.1.evil.example/x"));
    }
}
