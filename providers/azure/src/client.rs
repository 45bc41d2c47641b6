//! The ARM client: authenticated GETs with `nextLink` paging, POSTs of actions, retries.
//!
//! - Every request carries a bearer token, `x-ms-client-request-id` (a GUID derived from the
//!   engine's operation id for actions, a fresh one otherwise) and `Accept: application/json`. ARM's
//!   `x-ms-request-id` and `x-ms-correlation-request-id` are logged at debug level.
//! - Throttling (429), server errors (5xx) and connection failures are transient: a GET is
//!   retried with exponential backoff (backon), each wait replaced by ARM's `Retry-After`
//!   when it sends one, up to [`ArmRetryPolicy::max_retries`]; then the error reaches the
//!   engine as transient, with ARM's code. A POST is retried here only when ARM cannot have
//!   acted on it (429, or no connection at all); after a 5xx or a lost answer it goes back to
//!   the engine, whose next `run` awaits the item's running job and looks for the job by
//!   operation id before sending again (a second POST is still possible when ASR shows the
//!   first job nowhere yet; ASR then answers 409, which is transient).
//! - 409 (another job runs on the item) is transient for the engine; a POST refused so is not
//!   retried here.
//! - Other 4xx are permanent, with ARM's code and message.
//! - 401 with an expired token: one new token, one more try.
//! - A body that is not the JSON expected is a permanent error naming the request path.
//! - Absolute URLs from ARM (`nextLink`, LRO headers) must point at the configured endpoint:
//!   the bearer token is never sent anywhere else.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use lifeboat_engine::provider::ProviderError;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::arm::{CloudError, Page};
use crate::credential::TokenSource;

/// The most pages one list may have: a guard against a server that never stops paging.
pub const MAX_PAGES: usize = 10_000;

/// How much the client reads, so a broken or hostile server cannot exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest body of one answer. A page of 100 protected items is well under 1 MiB.
    pub max_body_bytes: usize,
    /// The most items one list may collect over all its pages.
    pub max_items: usize,
    /// The most pages one list may have.
    pub max_pages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            max_items: 1_000_000,
            max_pages: MAX_PAGES,
        }
    }
}

/// How ARM requests are retried inside the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArmRetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured as such; longer ones are cut to this.
    pub max_retry_after: Duration,
}

impl Default for ArmRetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// A successful answer.
#[derive(Clone)]
pub struct ArmResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// `METHOD path`, for messages (no query, no host).
    pub what: String,
}

impl fmt::Debug for ArmResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmResponse")
            .field("status", &self.status)
            .field("what", &self.what)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl ArmResponse {
    /// The body as `T`, or a permanent error naming the request.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        parse_json(&self.body, &self.what)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Retry-After` in integer seconds (0 allowed).
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|error| {
        let kind = if error.is_eof() {
            "is truncated"
        } else if error.is_syntax() {
            "is not valid JSON"
        } else {
            "does not have the expected shape"
        };
        ProviderError::permanent(
            Some("InvalidResponse".to_string()),
            format!("the answer to {what} {kind}: {error}"),
        )
    })
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// What the retry loop should do with a failed attempt.
#[derive(Debug)]
struct Failure {
    error: ProviderError,
    /// ARM cannot have acted on the request (throttled, or never connected).
    not_acted: bool,
}

/// Talks to one ARM endpoint.
pub struct ArmClient {
    http: reqwest::Client,
    endpoint: Url,
    scope: String,
    tokens: Arc<dyn TokenSource>,
    retry: ArmRetryPolicy,
    limits: Limits,
}

impl fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("scope", &self.scope)
            .field("tokens", &self.tokens)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ArmClient {
    pub fn new(
        http: reqwest::Client,
        endpoint: Url,
        scope: String,
        tokens: Arc<dyn TokenSource>,
        retry: ArmRetryPolicy,
    ) -> Self {
        Self {
            http,
            endpoint,
            scope,
            tokens,
            retry,
            limits: Limits::default(),
        }
    }

    /// The same client with other read limits (tests).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// A path (`/subscriptions/…?api-version=…`) on the endpoint, or an absolute URL ARM
    /// returned, which must be on the same scheme, host and port.
    pub fn url(&self, path_or_url: &str) -> Result<Url, ProviderError> {
        let bad =
            |reason: String| ProviderError::permanent(Some("InvalidResponse".to_string()), reason);
        if path_or_url.starts_with('/') {
            let base = self.endpoint.as_str().trim_end_matches('/');
            return Url::parse(&format!("{base}{path_or_url}"))
                .map_err(|e| bad(format!("`{path_or_url}` is not a valid ARM path: {e}")));
        }
        let url = Url::parse(path_or_url)
            .map_err(|e| bad(format!("ARM returned a link that is not a URL ({e})")))?;
        if url.origin() != self.endpoint.origin() {
            return Err(bad(format!(
                "ARM returned a link to `{}`, not to the endpoint `{}`; it is not followed, so the token is not sent there",
                url.origin().ascii_serialization(),
                self.endpoint.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    /// `GET`, retried on transient errors.
    pub async fn get(&self, path_or_url: &str) -> Result<ArmResponse, ProviderError> {
        let url = self.url(path_or_url)?;
        self.send_retried(Method::GET, &url, None, None, true).await
    }

    /// `GET` of one resource.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path_or_url: &str,
    ) -> Result<T, ProviderError> {
        self.get(path_or_url).await?.json()
    }

    /// `GET` of a collection, following `nextLink` to the last page.
    pub async fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, ProviderError> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(self.url(path)?);
        while let Some(url) = next.take() {
            if !seen.insert(url.to_string()) {
                return Err(ProviderError::permanent(
                    Some("InvalidResponse".to_string()),
                    format!(
                        "the pages of GET `{}` loop: a `nextLink` points at a page already read",
                        url.path()
                    ),
                ));
            }
            if seen.len() > self.limits.max_pages {
                return Err(ProviderError::permanent(
                    Some("InvalidResponse".to_string()),
                    format!(
                        "GET `{}` has more than {} pages",
                        url.path(),
                        self.limits.max_pages
                    ),
                ));
            }
            let page: Page<T> = self
                .send_retried(Method::GET, &url, None, None, true)
                .await?
                .json()?;
            if items.len().saturating_add(page.value.len()) > self.limits.max_items {
                return Err(ProviderError::permanent(
                    Some("InvalidResponse".to_string()),
                    format!(
                        "GET `{}` lists more than {} items",
                        url.path(),
                        self.limits.max_items
                    ),
                ));
            }
            items.extend(page.value);
            next = match page.next_link.filter(|link| !link.is_empty()) {
                Some(link) => Some(self.url(&link)?),
                None => None,
            };
        }
        Ok(items)
    }

    /// `POST` of an action. `client_request_id` goes into `x-ms-client-request-id` (ASR keeps
    /// it as the job's `activityId`). Retried only when ARM cannot have acted on it.
    pub async fn post(
        &self,
        path: &str,
        body: Option<&Value>,
        client_request_id: &str,
    ) -> Result<ArmResponse, ProviderError> {
        let url = self.url(path)?;
        self.send_retried(Method::POST, &url, body, Some(client_request_id), false)
            .await
    }

    async fn send_retried(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        client_request_id: Option<&str>,
        idempotent: bool,
    ) -> Result<ArmResponse, ProviderError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_jitter()
            .with_max_times(self.retry.max_retries);
        let max_retry_after = self.retry.max_retry_after;
        let what = format!("{method} `{}`", url.path());
        (|| self.send_once(method.clone(), url, body, client_request_id))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|failure: &Failure| {
                failure.error.is_transient() && (idempotent || failure.not_acted)
            })
            .adjust(move |failure, delay| {
                let delay = delay?;
                Some(
                    failure
                        .error
                        .retry_after
                        .map(|after| after.min(max_retry_after))
                        .unwrap_or(delay),
                )
            })
            .notify(|failure, wait| {
                tracing::debug!(
                    request = %what,
                    code = failure.error.code().unwrap_or(""),
                    wait_ms = wait.as_millis() as u64,
                    "retrying a transient ARM error"
                );
            })
            .await
            .map_err(|failure| failure.error)
    }

    /// One attempt, with one token refresh if ARM says the token expired.
    async fn send_once(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        client_request_id: Option<&str>,
    ) -> Result<ArmResponse, Failure> {
        let what = format!("{method} `{}`", url.path());
        let mut refreshed = false;
        loop {
            let token = self
                .tokens
                .token(&self.scope, refreshed)
                .await
                .map_err(|error| Failure {
                    error,
                    not_acted: true,
                })?;
            let mut auth =
                HeaderValue::from_str(&format!("Bearer {}", token.secret())).map_err(|_| {
                    Failure {
                        error: ProviderError::permanent(
                            Some("CredentialUnavailable".to_string()),
                            "the credential returned a token that is not a valid header value",
                        ),
                        not_acted: true,
                    }
                })?;
            auth.set_sensitive(true);
            let request_id = client_request_id
                .map(str::to_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(header::AUTHORIZATION, auth)
                .header(header::ACCEPT, "application/json")
                .header("x-ms-client-request-id", request_id.as_str());
            if let Some(body) = body {
                request = request.json(body);
            } else if method == Method::POST {
                request = request.header(header::CONTENT_LENGTH, "0");
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    return Err(Failure {
                        not_acted: error.is_connect(),
                        error: ProviderError::transient(
                            Some("ConnectionFailed".to_string()),
                            format!("{what} failed: {}", error.without_url()),
                        ),
                    });
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let arm_request_id = headers
                .get("x-ms-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let correlation_id = headers
                .get("x-ms-correlation-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::debug!(
                request = %what,
                status = status.as_u16(),
                client_request_id = %request_id,
                x_ms_request_id = arm_request_id,
                x_ms_correlation_request_id = correlation_id,
                "ARM answered"
            );
            let bytes = read_body(response, self.limits.max_body_bytes, &what, status).await?;
            if status.is_redirection() {
                // The HTTP client follows no redirect (`config::http_client`): the token must
                // not go anywhere but the configured endpoint.
                return Err(Failure {
                    not_acted: false,
                    error: ProviderError::permanent(
                        Some("UnexpectedRedirect".to_string()),
                        format!(
                            "{what} was answered with a redirect (HTTP {}), which is not followed so the token is not sent elsewhere",
                            status.as_u16()
                        ),
                    ),
                });
            }
            if status.is_success() {
                return Ok(ArmResponse {
                    status,
                    headers,
                    body: bytes,
                    what,
                });
            }
            let error = arm_error(status, &headers, &bytes, &what, self.retry.max_retry_after);
            if status == StatusCode::UNAUTHORIZED && !refreshed && token_expired(&headers, &error) {
                tracing::debug!(request = %what, "the ARM token expired; getting a new one");
                refreshed = true;
                continue;
            }
            return Err(Failure {
                not_acted: status == StatusCode::TOO_MANY_REQUESTS,
                error,
            });
        }
    }
}

/// Reads a body in chunks, refusing one larger than `max` before it is all in memory.
async fn read_body(
    mut response: reqwest::Response,
    max: usize,
    what: &str,
    status: StatusCode,
) -> Result<Vec<u8>, Failure> {
    let too_large = || Failure {
        not_acted: false,
        error: ProviderError::permanent(
            Some("InvalidResponse".to_string()),
            format!(
                "the answer to {what} (HTTP {}) is larger than {max} bytes",
                status.as_u16()
            ),
        ),
    };
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len().saturating_add(chunk.len()) > max {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => {
                return Err(Failure {
                    not_acted: false,
                    error: ProviderError::transient(
                        Some("ConnectionFailed".to_string()),
                        format!(
                            "{what}: the answer broke off (HTTP {}): {}",
                            status.as_u16(),
                            error.without_url()
                        ),
                    ),
                });
            }
        }
    }
}

fn token_expired(headers: &HeaderMap, error: &ProviderError) -> bool {
    error.code() == Some("ExpiredAuthenticationToken")
        || headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("invalid_token"))
}

/// An ARM error answer as a [`ProviderError`]: 429, 5xx and 409 are transient (throttling, a
/// server error, another job on the item), every other status permanent. `Retry-After` is
/// cut to `max_retry_after`, because the error leaves the client and the engine waits it.
pub(crate) fn arm_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
    max_retry_after: Duration,
) -> ProviderError {
    let detail = serde_json::from_slice::<CloudError>(body)
        .ok()
        .and_then(|e| e.error);
    let code = detail
        .as_ref()
        .and_then(|d| d.code.clone())
        .unwrap_or_else(|| status.as_u16().to_string());
    let reason = detail
        .and_then(|d| d.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        });
    let message = format!(
        "{what} was refused (HTTP {}, `{code}`): {reason}",
        status.as_u16()
    );
    let transient = status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::CONFLICT
        || status.is_server_error();
    let error = if transient {
        ProviderError::transient(Some(code), message)
    } else {
        ProviderError::permanent(Some(code), message)
    };
    match retry_after(headers) {
        Some(after) if transient => error.with_retry_after(after.min(max_retry_after)),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_leaving_the_client_is_capped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("18446744073709551615"),
        );
        let error = arm_error(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            b"{}",
            "GET `/x`",
            Duration::from_secs(120),
        );
        assert!(error.is_transient());
        assert_eq!(error.retry_after, Some(Duration::from_secs(120)));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        let error = arm_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers,
            b"{}",
            "GET `/x`",
            Duration::from_secs(120),
        );
        assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
    }
}
