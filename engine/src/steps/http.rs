//! `http: {url, expect_status}`: polled until the URL answers with the expected status (any
//! 2xx by default), or the timeout.

use std::time::Duration;

use tokio::time::Instant;

use super::{POLL_EVERY, failed, timed_out};
use crate::model::human_duration;
use crate::provider::ProviderError;

/// The longest one request may take.
const ATTEMPT: Duration = Duration::from_secs(10);

pub(super) async fn poll(
    id: &str,
    url: &str,
    expect: Option<u16>,
    timeout: Duration,
) -> Result<(), ProviderError> {
    let client = reqwest::Client::builder()
        .connect_timeout(ATTEMPT)
        // A health endpoint answers itself; a redirect elsewhere is not readiness.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| failed(format!("`{id}`: cannot make an HTTP client: {e}")))?;
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = client
            .get(url)
            .timeout(left.clamp(Duration::from_millis(50), ATTEMPT))
            .send()
            .await;
        match attempt {
            Ok(response) => {
                let status = response.status().as_u16();
                let ready = match expect {
                    Some(expected) => status == expected,
                    None => (200..300).contains(&status),
                };
                if ready {
                    return Ok(());
                }
                last = format!("status {status}");
            }
            Err(e) => last = without_url(e),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let wanted =
                expect.map_or_else(|| "a 2xx status".to_string(), |s| format!("status {s}"));
            return Err(timed_out(format!(
                "`{id}`: `{url}` did not answer with {wanted} within {} (last: {last})",
                human_duration(timeout)
            )));
        }
        tokio::time::sleep(POLL_EVERY.min(left)).await;
    }
}

/// reqwest's message names the URL, which the step's message names already.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    message
}
