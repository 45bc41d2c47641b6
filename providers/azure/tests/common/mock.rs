//! An in-process mock of ARM (plain HTTP on 127.0.0.1, which the provider allows on
//! loopback) and of an Entra token endpoint (HTTPS with a throwaway rcgen certificate).
//! Routes answer from closures, so a test scripts sequences or keeps state; every request is
//! recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

/// One answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Canned {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn raw(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn arm_error(status: u16, code: &str, message: &str) -> Self {
        Self::json(status, json!({"error": {"code": code, "message": message}}))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = Box<dyn Fn(&Recorded) -> Canned + Send + Sync>;

#[derive(Default)]
struct Inner {
    routes: Vec<(String, String, Handler)>,
    requests: Vec<Recorded>,
}

/// A running mock server.
#[derive(Clone)]
pub struct Mock {
    /// `http://127.0.0.1:PORT` (or `https://…` for [`Mock::start_tls`]).
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers.clone(),
        body,
    };
    let canned = {
        let mut inner = inner.lock().expect("mock lock");
        inner.requests.push(recorded.clone());
        let full = if recorded.query.is_empty() {
            recorded.path.clone()
        } else {
            format!("{}?{}", recorded.path, recorded.query)
        };
        let route = inner
            .routes
            .iter()
            .find(|(m, p, _)| *m == recorded.method && *p == full)
            .or_else(|| {
                inner
                    .routes
                    .iter()
                    .find(|(m, p, _)| *m == recorded.method && *p == recorded.path)
            });
        match route {
            Some((_, _, handler)) => handler(&recorded),
            None => Canned::arm_error(404, "ResourceNotFound", "no such route in the mock"),
        }
    };
    let mut response =
        Response::builder().status(StatusCode::from_u16(canned.status).expect("status"));
    for (name, value) in &canned.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response.body(Body::from(canned.body)).expect("a response")
}

impl Mock {
    fn router(inner: Arc<Mutex<Inner>>) -> Router {
        Router::new().fallback(handle).with_state(inner)
    }

    /// Plain HTTP on 127.0.0.1, a free port.
    pub async fn start() -> Mock {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Self::router(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Mock { base, inner }
    }

    /// HTTPS on 127.0.0.1 with a fresh self-signed certificate for `127.0.0.1` and
    /// `localhost`; returns the mock and the certificate (PEM).
    pub async fn start_tls() -> (Mock, String) {
        use hyper_util::rt::TokioIo;
        use hyper_util::service::TowerToHyperService;
        use tokio_rustls::TlsAcceptor;
        use tokio_rustls::rustls::ServerConfig;
        use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
                .expect("a certificate");
        let pem = certified.cert.pem();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("a TLS configuration");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("https://{}", listener.local_addr().expect("addr"));
        let app = Self::router(inner.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        (Mock { base, inner }, pem)
    }

    /// Answers `method path` (a path, or a path with its query for an exact match) with
    /// `handler`.
    pub fn on(
        &self,
        method: &str,
        path: &str,
        handler: impl Fn(&Recorded) -> Canned + Send + Sync + 'static,
    ) {
        self.inner.lock().expect("mock lock").routes.push((
            method.into(),
            path.into(),
            Box::new(handler),
        ));
    }

    /// Answers with `answers` in turn; the last one repeats.
    pub fn script(&self, method: &str, path: &str, answers: Vec<Canned>) {
        let count = Mutex::new(0usize);
        self.on(method, path, move |_| {
            let mut n = count.lock().expect("count");
            let answer = answers[(*n).min(answers.len() - 1)].clone();
            *n += 1;
            answer
        });
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().expect("mock lock").requests.clone()
    }

    /// How many `method` requests reached `path` (without query).
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }
}
