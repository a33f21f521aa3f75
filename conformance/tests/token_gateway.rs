//! The whole suite through a Docker-token gateway in front of the engine, with blob reads
//! redirected to another host: proves the suite's own client does the token flow (Basic
//! credentials at the realm, one token per scope, reused), follows redirects, and never
//! forwards `Authorization` across hosts, as the spec requires of clients.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use berth_conformance::headers::repository_of;
use berth_conformance::{Config, Credentials, Transport, TransportError, Workflow};
use berth_engine::testing::Driver;
use berth_engine::{Config as EngineConfig, Registry};
use http::{Request, Response, header};

const REALM: &str = "https://auth.test/token";
const BLOB_HOST: &str = "https://blobs.test";

struct Gateway {
    engine: Mutex<Driver>,
    basic: String,
    /// Scopes a token was issued for, one entry per issue.
    issued: Mutex<Vec<String>>,
    redirects: AtomicUsize,
}

impl Gateway {
    fn forward(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let mut engine = self
            .engine
            .lock()
            .map_err(|_| TransportError("engine lock poisoned".into()))?;
        let (parts, body) = engine.send(request).into_parts();
        Ok(Response::from_parts(parts, body.to_vec()))
    }

    fn respond(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Response<Vec<u8>> {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(body.to_vec()).unwrap()
    }
}

impl Transport for Gateway {
    fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let uri = request.uri().to_string();
        let auth = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(query) = uri.strip_prefix(&format!("{REALM}?")) {
            if auth.as_deref() != Some(self.basic.as_str()) {
                return Ok(Self::respond(401, &[], b""));
            }
            let scopes: Vec<String> = form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.into_owned())
                .collect();
            let scope = scopes.join(" ");
            self.issued.lock().unwrap().push(scope.clone());
            let body = format!(r#"{{"token":"granted {scope}"}}"#);
            return Ok(Self::respond(200, &[], body.as_bytes()));
        }
        if let Some(path) = uri.strip_prefix(BLOB_HOST) {
            assert!(
                auth.is_none(),
                "credentials forwarded to another host: {uri} carried {auth:?}"
            );
            let mut request = request;
            *request.uri_mut() = path.parse().unwrap();
            return self.forward(request);
        }
        let path = request.uri().path().to_owned();
        let write = !matches!(request.method().as_str(), "GET" | "HEAD");
        let scope = match repository_of(&path) {
            Some(name) if write => format!("repository:{name}:pull,push"),
            Some(name) => format!("repository:{name}:pull"),
            None => "registry:catalog:*".to_owned(),
        };
        if auth.as_deref() != Some(format!("Bearer granted {scope}").as_str()) {
            let challenge =
                format!(r#"Bearer realm="{REALM}",service="berth-test",scope="{scope}""#);
            return Ok(Self::respond(
                401,
                &[
                    ("www-authenticate", &challenge),
                    ("content-type", "application/json"),
                ],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#,
            ));
        }
        let is_blob_read = request.method() == "GET"
            && path.contains("/blobs/")
            && !path.contains("/blobs/uploads/");
        if is_blob_read {
            self.redirects.fetch_add(1, Ordering::SeqCst);
            let location = format!("{BLOB_HOST}{path}");
            return Ok(Self::respond(307, &[("location", &location)], b""));
        }
        self.forward(request)
    }
}

#[test]
fn the_suite_passes_through_token_auth_and_cross_host_redirects() {
    let engine = EngineConfig {
        part_size: 5 * 1024 * 1024,
        ..EngineConfig::default()
    };
    let credentials = Credentials {
        username: Some("conformance".into()),
        password: Some("s3cret".into()),
    };
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("conformance:s3cret")
    );
    let gateway = Gateway {
        engine: Mutex::new(Driver::new(Registry::new(engine).unwrap())),
        basic,
        issued: Mutex::new(Vec::new()),
        redirects: AtomicUsize::new(0),
    };
    let config = Config {
        namespace: "conformance/gateway".into(),
        crossmount_namespace: "conformance/gateway-mount".into(),
        credentials,
        workflows: Workflow::ALL.to_vec(),
        run_id: "gateway".into(),
        expected_failures: Default::default(),
    };
    let report = berth_conformance::run(&config, &gateway, "engine behind a token gateway", |_| {});
    let failures = report.not_passed();
    assert!(
        failures.is_empty(),
        "{}\n{}",
        report.summary(),
        failures.join("\n")
    );
    let issued = gateway.issued.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = issued.iter().collect();
    assert_eq!(
        issued.len(),
        distinct.len(),
        "a token was fetched twice for one scope: {issued:?}"
    );
    assert!(distinct.len() >= 4, "{distinct:?}");
    let redirects = gateway.redirects.load(Ordering::SeqCst);
    assert!(redirects > 20, "{redirects}");
    println!(
        "through the gateway: {}; {} tokens, one per scope; {redirects} blob reads redirected",
        report.summary(),
        issued.len()
    );
}
