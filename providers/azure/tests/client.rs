//! The ARM client against an in-process mock: paging, retries, `Retry-After`, error mapping,
//! token refresh, and no token in any error.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mock::{Canned, Mock};
use lifeboat_engine::provider::ProviderError;
use lifeboat_provider_azure::client::{ArmClient, ArmRetryPolicy, Limits};
use lifeboat_provider_azure::credential::{StaticToken, Token, TokenSource};
use serde_json::{Value, json};
use url::Url;

const TOKEN: &str = "tok-SECRET-4f9a1c";

fn fast() -> ArmRetryPolicy {
    ArmRetryPolicy {
        max_retries: 2,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
    }
}

fn client_with(mock: &Mock, tokens: Arc<dyn TokenSource>, retry: ArmRetryPolicy) -> ArmClient {
    ArmClient::new(
        reqwest::Client::new(),
        Url::parse(&mock.base).expect("the mock's URL"),
        format!("{}/.default", mock.base),
        tokens,
        retry,
    )
}

fn client(mock: &Mock) -> ArmClient {
    client_with(mock, Arc::new(StaticToken(Token::new(TOKEN))), fast())
}

/// Neither the message nor the `Debug` form of an error shows the token.
fn assert_clean(error: &ProviderError) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
        assert!(!text.contains("Bearer"), "the header leaked: {text}");
    }
}

#[tokio::test]
async fn pages_are_followed_across_three_pages() {
    let mock = Mock::start().await;
    let base = mock.base.clone();
    mock.on("GET", "/things", move |r| {
        let (items, next) = match r.query.as_str() {
            "api-version=1" => (json!([{"n": 1}, {"n": 2}]), Some("page=2")),
            "api-version=1&page=2" => (json!([{"n": 3}]), Some("page=3")),
            _ => (json!([{"n": 4}, {"n": 5}]), None),
        };
        let mut body = json!({"value": items});
        if let Some(next) = next {
            body["nextLink"] = json!(format!("{base}/things?api-version=1&{next}"));
        }
        Canned::json(200, body)
    });
    let items: Vec<Value> = client(&mock)
        .list("/things?api-version=1")
        .await
        .expect("three pages");
    let numbers: Vec<i64> = items.iter().filter_map(|v| v["n"].as_i64()).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    assert_eq!(mock.count("GET", "/things"), 3);
}

#[tokio::test]
async fn a_next_link_loop_is_an_error_not_a_hang() {
    let mock = Mock::start().await;
    let base = mock.base.clone();
    mock.on("GET", "/loop", move |r| {
        let next = if r.query.contains("page=2") {
            "page=1"
        } else {
            "page=2"
        };
        Canned::json(
            200,
            json!({"value": [], "nextLink": format!("{base}/loop?api-version=1&{next}")}),
        )
    });
    let error = client(&mock)
        .list::<Value>("/loop?api-version=1&page=1")
        .await
        .expect_err("a loop");
    assert!(error.to_string().contains("loop"), "{error}");
    assert!(error.to_string().contains("`/loop`"), "{error}");
    assert!(mock.count("GET", "/loop") <= 3);
}

#[tokio::test]
async fn a_next_link_to_another_host_is_not_followed() {
    let mock = Mock::start().await;
    mock.script(
        "GET",
        "/things",
        vec![Canned::json(
            200,
            json!({"value": [1], "nextLink": "https://attacker.example/things?page=2"}),
        )],
    );
    let error = client(&mock)
        .list::<Value>("/things?api-version=1")
        .await
        .expect_err("another host");
    assert!(error.to_string().contains("attacker.example"), "{error}");
    assert!(!error.is_transient());
    assert_clean(&error);
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after() {
    let mock = Mock::start().await;
    mock.script(
        "GET",
        "/t",
        vec![
            Canned::arm_error(429, "TooManyRequests", "slow down").header("Retry-After", "1"),
            Canned::json(200, json!({"ok": true})),
        ],
    );
    let started = Instant::now();
    let value: Value = client(&mock)
        .get_json("/t?api-version=1")
        .await
        .expect("ok");
    let elapsed = started.elapsed();
    assert_eq!(value["ok"], true);
    assert_eq!(mock.count("GET", "/t"), 2);
    // The backoff alone would wait at most 40 ms: only `Retry-After` explains a second.
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn server_errors_exhausted_are_transient_with_arm_code() {
    let mock = Mock::start().await;
    mock.script(
        "GET",
        "/s",
        vec![Canned::arm_error(503, "ServiceUnavailable", "try later")],
    );
    let error = client(&mock)
        .get("/s?api-version=1")
        .await
        .expect_err("always 503");
    assert!(error.is_transient());
    assert_eq!(error.code(), Some("ServiceUnavailable"));
    assert!(error.to_string().contains("try later"), "{error}");
    assert!(error.to_string().contains("HTTP 503"), "{error}");
    // One attempt and `max_retries` (2) retries.
    assert_eq!(mock.count("GET", "/s"), 3);
    assert_clean(&error);
}

#[tokio::test]
async fn client_errors_are_permanent_with_arm_code_and_message() {
    let mock = Mock::start().await;
    mock.script(
        "POST",
        "/a",
        vec![Canned::arm_error(
            400,
            "InvalidRequestContent",
            "`/properties/providerSpecificDetails/masterTargetId` is required",
        )],
    );
    let error = client(&mock)
        .post("/a?api-version=1", Some(&json!({"x": 1})), "lb-1-0")
        .await
        .expect_err("400");
    assert!(!error.is_transient());
    assert_eq!(error.code(), Some("InvalidRequestContent"));
    assert!(error.to_string().contains("masterTargetId"), "{error}");
    assert!(error.to_string().contains("POST `/a`"), "{error}");
    assert_eq!(mock.count("POST", "/a"), 1);
    assert_clean(&error);
}

#[tokio::test]
async fn malformed_and_truncated_json_are_clear_errors() {
    let mock = Mock::start().await;
    mock.script(
        "GET",
        "/bad",
        vec![Canned::raw(200, "<html>gateway</html>")],
    );
    mock.script(
        "GET",
        "/cut",
        vec![Canned::raw(200, r#"{"value": [{"id": "a"#)],
    );
    mock.script("GET", "/shape", vec![Canned::raw(200, r#"{"value": 7}"#)]);
    let client = client(&mock);
    let bad = client
        .list::<Value>("/bad?api-version=1")
        .await
        .expect_err("not JSON");
    assert!(bad.to_string().contains("GET `/bad`"), "{bad}");
    assert!(bad.to_string().contains("not valid JSON"), "{bad}");
    let cut = client
        .list::<Value>("/cut?api-version=1")
        .await
        .expect_err("truncated");
    assert!(cut.to_string().contains("GET `/cut`"), "{cut}");
    assert!(cut.to_string().contains("truncated"), "{cut}");
    let shape = client
        .list::<Value>("/shape?api-version=1")
        .await
        .expect_err("wrong shape");
    assert!(shape.to_string().contains("expected shape"), "{shape}");
    for error in [&bad, &cut, &shape] {
        assert_eq!(error.code(), Some("InvalidResponse"));
        assert!(!error.to_string().contains("api-version"), "{error}");
        assert_clean(error);
    }
}

#[tokio::test]
async fn a_post_is_not_resent_after_a_server_error_but_is_after_throttling() {
    let mock = Mock::start().await;
    mock.script(
        "POST",
        "/five",
        vec![Canned::arm_error(500, "InternalServerError", "boom")],
    );
    mock.script(
        "POST",
        "/busy",
        vec![
            Canned::arm_error(429, "TooManyRequests", "slow down").header("Retry-After", "0"),
            Canned::empty(200),
        ],
    );
    let client = client(&mock);
    let error = client
        .post("/five?api-version=1", None, "lb-1-0")
        .await
        .expect_err("500");
    assert!(error.is_transient());
    // ARM may have started the job: the engine's next `run` looks for it before resending.
    assert_eq!(mock.count("POST", "/five"), 1);
    client
        .post("/busy?api-version=1", None, "lb-1-1")
        .await
        .expect("429 then 200");
    assert_eq!(mock.count("POST", "/busy"), 2);
}

#[tokio::test]
async fn requests_carry_the_token_and_request_ids() {
    let mock = Mock::start().await;
    mock.script("GET", "/g", vec![Canned::json(200, json!({}))]);
    mock.script("POST", "/p", vec![Canned::empty(200)]);
    let client = client(&mock);
    client.get("/g?api-version=1").await.expect("get");
    client
        .post("/p?api-version=1", Some(&json!({"a": 1})), "lb-42-7")
        .await
        .expect("post");
    let requests = mock.requests();
    assert_eq!(
        requests[0].header("authorization").as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let get_id = requests[0]
        .header("x-ms-client-request-id")
        .expect("a request id");
    assert!(uuid::Uuid::parse_str(&get_id).is_ok(), "{get_id}");
    assert_eq!(
        requests[1].header("x-ms-client-request-id").as_deref(),
        Some("lb-42-7")
    );
    assert_eq!(requests[1].json(), json!({"a": 1}));
    assert_eq!(
        requests[1].header("content-type").as_deref(),
        Some("application/json")
    );
}

/// A token source that hands out `tok-N`, a new N on each refresh.
#[derive(Debug, Default)]
struct Rotating {
    calls: Mutex<Vec<bool>>,
}

#[async_trait::async_trait]
impl TokenSource for Rotating {
    async fn token(&self, _scope: &str, refresh: bool) -> Result<Token, ProviderError> {
        let mut calls = self.calls.lock().expect("calls");
        calls.push(refresh);
        let refreshes = calls.iter().filter(|r| **r).count();
        Ok(Token::new(format!("tok-{refreshes}")))
    }
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once() {
    let mock = Mock::start().await;
    mock.on("GET", "/r", |r| {
        if r.header("authorization").as_deref() == Some("Bearer tok-0") {
            Canned::arm_error(401, "ExpiredAuthenticationToken", "the token expired")
                .header("WWW-Authenticate", r#"Bearer error="invalid_token""#)
        } else {
            Canned::json(200, json!({"fine": 1}))
        }
    });
    mock.script(
        "GET",
        "/never",
        vec![Canned::arm_error(
            401,
            "ExpiredAuthenticationToken",
            "the token expired",
        )],
    );
    let tokens = Arc::new(Rotating::default());
    let client = client_with(&mock, tokens.clone(), fast());
    let value: Value = client
        .get_json("/r?api-version=1")
        .await
        .expect("refreshed");
    assert_eq!(value["fine"], 1);
    assert_eq!(*tokens.calls.lock().expect("calls"), [false, true]);
    let seen: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization"))
        .collect();
    assert_eq!(seen, ["Bearer tok-0", "Bearer tok-1"]);
    // Still refused after one refresh: permanent, and no loop of refreshes.
    let error = client
        .get("/never?api-version=1")
        .await
        .expect_err("401 twice");
    assert!(!error.is_transient());
    assert_eq!(error.code(), Some("ExpiredAuthenticationToken"));
    assert_eq!(mock.count("GET", "/never"), 2);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = ArmClient::new(
        reqwest::Client::new(),
        Url::parse(&format!("http://{addr}")).expect("url"),
        "s".into(),
        Arc::new(StaticToken(Token::new(TOKEN))),
        fast(),
    );
    let error = client.get("/x?api-version=1").await.expect_err("refused");
    assert!(error.is_transient());
    assert_eq!(error.code(), Some("ConnectionFailed"));
    assert!(error.to_string().contains("GET `/x`"), "{error}");
    assert_clean(&error);
    assert!(!format!("{client:?}").contains(TOKEN));
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let mock = Mock::start().await;
    let elsewhere = format!("{}/elsewhere", mock.base);
    {
        let elsewhere = elsewhere.clone();
        mock.on("GET", "/arm", move |_| {
            Canned::empty(307).header("Location", &elsewhere)
        });
    }
    {
        let elsewhere = elsewhere.clone();
        mock.on("POST", "/tenant/oauth2/v2.0/token", move |_| {
            Canned::empty(307).header("Location", &elsewhere)
        });
    }
    mock.on("GET", "/elsewhere", |_| {
        Canned::json(200, json!({"value": []}))
    });
    mock.on("POST", "/elsewhere", |_| Canned::json(200, json!({})));
    let http = lifeboat_provider_azure::config::http_client().expect("the client");

    // ARM: a clear permanent error, and the redirect's target never sees the token.
    let client = ArmClient::new(
        http.clone(),
        Url::parse(&mock.base).expect("the mock's URL"),
        format!("{}/.default", mock.base),
        Arc::new(StaticToken(Token::new(TOKEN))),
        fast(),
    );
    let error = client
        .get("/arm?api-version=1")
        .await
        .expect_err("not followed");
    assert!(!error.is_transient());
    assert_eq!(error.code(), Some("UnexpectedRedirect"));
    assert!(error.to_string().contains("HTTP 307"), "{error}");
    assert_clean(&error);

    // The token request (the same client is `azure_identity`'s transport): the form with
    // the secret is not re-sent.
    let response = http
        .post(format!("{}/tenant/oauth2/v2.0/token", mock.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("client_secret=s3cret&grant_type=client_credentials")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 307);
    assert_eq!(mock.count("GET", "/elsewhere"), 0);
    assert_eq!(mock.count("POST", "/elsewhere"), 0);
}

#[tokio::test]
async fn oversized_bodies_and_lists_are_refused() {
    let mock = Mock::start().await;
    let big = format!("{{\"value\": [\"{}\"]}}", "x".repeat(4096));
    mock.script("GET", "/big", vec![Canned::raw(200, &big)]);
    let base = mock.base.clone();
    mock.on("GET", "/many", move |r| {
        let page: usize = r
            .query
            .rsplit("page=")
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Canned::json(
            200,
            json!({"value": [1, 2, 3], "nextLink": format!("{base}/many?api-version=1&page={}", page + 1)}),
        )
    });
    let client = client(&mock).with_limits(Limits {
        max_body_bytes: 1024,
        max_items: 10,
        ..Limits::default()
    });
    let error = client
        .get("/big?api-version=1")
        .await
        .expect_err("too large");
    assert!(!error.is_transient());
    assert_eq!(error.code(), Some("InvalidResponse"));
    assert!(
        error.to_string().contains("larger than 1024 bytes"),
        "{error}"
    );

    let error = client
        .list::<Value>("/many?api-version=1")
        .await
        .expect_err("too many");
    assert_eq!(error.code(), Some("InvalidResponse"));
    assert!(error.to_string().contains("more than 10 items"), "{error}");
    assert_eq!(
        mock.count("GET", "/many"),
        4,
        "stops at the page that passes the limit"
    );
}
