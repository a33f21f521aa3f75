//! Authentication against the real `berth serve` on a loopback port: the conformance suite as
//! a Basic user and through the token flow, serverless-registry's variables, htpasswd users,
//! the `[auth]` table, anonymous pulls of public repositories, hostile tokens, and what is
//! logged about failed logins.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use berth_conformance::{Config, Credentials, HttpTransport, Transport, TransportError, Workflow};
use http::{Request, Response};

use common::*;

/// A test key and htpasswd file of the engine's auth tests (engine/tests/data/auth/README.md).
fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/data/auth")
        .join(name);
    path.to_str().unwrap().to_owned()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// `berth serve` on memory storage with these arguments and environment.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--storage", "memory"])
        .args(["--part-size", "5242880"])
        .args(args);
    for name in [
        "USERNAME",
        "PASSWORD",
        "READONLY_USERNAME",
        "READONLY_PASSWORD",
        "JWT_REGISTRY_TOKENS_PUBLIC_KEY",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    launch(command)
}

/// Sends requests to the registry without their Basic credentials, so that the conformance
/// client must take the token flow: a 401 with a `Bearer` challenge, a token fetched from the
/// realm with the Basic credentials (kept there), the request retried with the token.
struct BearerOnly(HttpTransport);

impl Transport for BearerOnly {
    fn send(&self, mut request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let basic = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes().starts_with(b"Basic "));
        if basic && request.uri().path().starts_with("/v2/") {
            request.headers_mut().remove(http::header::AUTHORIZATION);
        }
        self.0.send(request)
    }
}

fn conformance(
    server: &Server,
    label: &str,
    user: &str,
    password: &str,
    transport: &dyn Transport,
) {
    let config = Config {
        namespace: format!("conformance/{label}"),
        crossmount_namespace: format!("conformance/{label}-mount"),
        credentials: Credentials {
            username: Some(user.into()),
            password: Some(password.into()),
        },
        workflows: Workflow::ALL.to_vec(),
        run_id: label.into(),
        expected_failures: Default::default(),
    };
    let report = berth_conformance::run(&config, transport, &server.url(), |_| {});
    let failures = report.not_passed();
    assert!(
        failures.is_empty(),
        "{}\n{}",
        report.summary(),
        failures.join("\n")
    );
    assert_eq!(report.skipped(), 0, "{}", report.summary());
    println!("authenticated conformance ({label}): {}", report.summary());
}

#[test]
fn conformance_as_a_basic_user() {
    let server = serve(&["--auth-user", "ci:s3cret-pw"], &[]);
    // Nothing without credentials.
    let (status, headers, _) = http(server.addr, "GET", "/v2/", &[], b"");
    assert_eq!(status, 401);
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some(r#"Basic realm="berth",charset="UTF-8""#)
    );
    conformance(
        &server,
        "basic",
        "ci",
        "s3cret-pw",
        &HttpTransport::new(&server.url()),
    );
}

#[test]
fn conformance_through_the_token_flow() {
    let key = fixture("ec-pkcs8.pem");
    let server = serve(
        &[
            "--auth-user",
            "ci:s3cret-pw",
            "--auth-token-signing-key",
            &key,
        ],
        &[],
    );
    let (status, headers, _) = http(server.addr, "GET", "/v2/a/b/tags/list", &[], b"");
    assert_eq!(status, 401);
    assert_eq!(
        header(&headers, "www-authenticate").unwrap(),
        format!(
            r#"Bearer realm="http://{0}/token",service="{0}",scope="repository:a/b:pull""#,
            server.addr
        )
    );
    let transport = BearerOnly(HttpTransport::new(&server.url()));
    conformance(&server, "token", "ci", "s3cret-pw", &transport);
}

#[test]
fn conformance_with_serverless_registry_variables() {
    let server = serve(
        &[],
        &[
            ("USERNAME", "rw-user"),
            ("PASSWORD", "rw-pass"),
            ("READONLY_USERNAME", "ro-user"),
            ("READONLY_PASSWORD", "ro-pass"),
        ],
    );
    conformance(
        &server,
        "serverless",
        "rw-user",
        "rw-pass",
        &HttpTransport::new(&server.url()),
    );
    // The read-only user pulls but may not push.
    let ro = basic("ro-user", "ro-pass");
    let (status, _, _) = http(
        server.addr,
        "GET",
        "/v2/conformance/serverless/tags/list",
        &[("authorization", &ro)],
        b"",
    );
    assert_eq!(status, 200);
    let (status, _, body) = http(
        server.addr,
        "POST",
        "/v2/conformance/serverless/blobs/uploads/",
        &[("authorization", &ro)],
        b"",
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("DENIED"));
}

#[test]
fn serverless_registry_jwt_passwords() {
    let fixtures: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("serverless-registry.json")).unwrap(),
    )
    .unwrap();
    let key = fixtures["JWT_REGISTRY_TOKENS_PUBLIC_KEY"].as_str().unwrap();
    let server = serve(&[], &[("JWT_REGISTRY_TOKENS_PUBLIC_KEY", key)]);
    let as_token = |name: &str| basic("anyone", fixtures[name].as_str().unwrap());
    let get = |auth: &str| {
        http(
            server.addr,
            "GET",
            "/v2/x/tags/list",
            &[("authorization", auth)],
            b"",
        )
        .0
    };
    let post = |auth: &str| {
        http(
            server.addr,
            "POST",
            "/v2/x/blobs/uploads/",
            &[("authorization", auth)],
            b"",
        )
        .0
    };
    // A pull token reads (the repository is unknown: 404) but may not push.
    assert_eq!(get(&as_token("pull")), 404);
    assert_eq!(post(&as_token("pull")), 403);
    assert_eq!(post(&as_token("pull_push")), 202);
    assert_eq!(get(&as_token("expired")), 401);
    assert_eq!(get(&basic("anyone", "not-a-jwt")), 401);
}

#[test]
fn htpasswd_users_log_in_with_basic_and_at_the_token_endpoint() {
    let key = fixture("ed25519-pkcs8.pem");
    let htpasswd = fixture("htpasswd");
    let server = serve(
        &[
            "--auth-htpasswd",
            &htpasswd,
            "--auth-grant",
            "alice=team-a/*:pull,push",
            "--auth-token-signing-key",
            &key,
        ],
        &[],
    );
    let alice = basic("alice", "wonderland");
    let (status, _, _) = http(
        server.addr,
        "GET",
        "/v2/",
        &[("authorization", &alice)],
        b"",
    );
    assert_eq!(status, 200);
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/v2/team-b/app/blobs/uploads/",
        &[("authorization", &alice)],
        b"",
    );
    assert_eq!(status, 403, "alice's grants are limited to team-a/*");
    let (status, _, body) = http(
        server.addr,
        "GET",
        "/token?scope=repository:team-a/app:pull,push&scope=repository:team-b/app:pull",
        &[("authorization", &alice)],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/v2/team-a/app/blobs/uploads/",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 202);
    // The token's scope is team-a/app only.
    let (status, headers, _) = http(
        server.addr,
        "GET",
        "/v2/team-a/other/tags/list",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 401);
    assert!(
        header(&headers, "www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    // containerd's OAuth2 form (the password in the body, so bcrypt runs off the runtime's
    // threads for it too), and a wrong password there.
    let form = "grant_type=password&username=alice&password=wonderland&client_id=containerd\
                &scope=repository%3Ateam-a%2Fapp%3Apull";
    let (status, _, body) = http(
        server.addr,
        "POST",
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let (status, _, _) = http(
        server.addr,
        "GET",
        "/v2/team-a/app/tags/list",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(
        status, 404,
        "the form's token is accepted (the repository is empty)"
    );
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        form.replace("wonderland", "Wonderland").as_bytes(),
    );
    assert_eq!(status, 401);
    // erin (a $2b$ hash, no grants given) may do everything; bob's password has a colon.
    let erin = std::fs::read_to_string(&htpasswd).unwrap();
    assert!(erin.contains("erin:"));
    let (status, _, _) = http(
        server.addr,
        "GET",
        "/v2/",
        &[("authorization", &basic("bob", "p@ss:word with spaces"))],
        b"",
    );
    assert_eq!(status, 200);
    let (status, _, _) = http(
        server.addr,
        "GET",
        "/v2/",
        &[("authorization", &basic("alice", "Wonderland"))],
        b"",
    );
    assert_eq!(status, 401);
}

#[test]
fn hostile_tokens_are_refused_by_the_server() {
    let key = fixture("ec-pkcs8.pem");
    let server = serve(
        &[
            "--auth-user",
            "ci:pw",
            "--auth-token-signing-key",
            &key,
            "--auth-token-ttl-secs",
            "60",
        ],
        &[],
    );
    let b64url = |text: &str| {
        base64(text.as_bytes())
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    };
    let claims = format!(
        r#"{{"iss":"berth","sub":"ci","aud":"{}","exp":4102444800,"access":[{{"type":"repository","name":"a","actions":["pull","push"]}}]}}"#,
        server.addr
    );
    let none = format!(
        "{}.{}.",
        b64url(r#"{"alg":"none","typ":"JWT"}"#),
        b64url(&claims)
    );
    let hs256 = format!(
        "{}.{}.{}",
        b64url(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64url(&claims),
        b64url("not a real mac")
    );
    for token in [none, hs256, "garbage".to_owned(), "a.b.c".to_owned()] {
        let (status, headers, body) = http(
            server.addr,
            "GET",
            "/v2/a/tags/list",
            &[("authorization", &format!("Bearer {token}"))],
            b"",
        );
        assert_eq!(status, 401, "{token}: {}", String::from_utf8_lossy(&body));
        assert!(
            header(&headers, "www-authenticate")
                .unwrap()
                .contains("invalid_token")
        );
    }
    // A valid token for repository `a` opens `a` and nothing else.
    let (_, _, body) = http(
        server.addr,
        "GET",
        "/token?scope=repository:a:pull",
        &[("authorization", &basic("ci", "pw"))],
        b"",
    );
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    assert_eq!(token["expires_in"], 60);
    let (status, _, _) = http(
        server.addr,
        "GET",
        "/v2/a/tags/list",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 404, "authorized; the repository does not exist");
    let (status, _, _) = http(
        server.addr,
        "GET",
        "/v2/b/tags/list",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 401);
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/v2/a/blobs/uploads/",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 401, "the token grants pull only");
}

#[test]
fn anonymous_pull_of_public_repositories_from_the_auth_table() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(
        &file,
        r#"
[auth]
anonymous = ["public/*:pull"]

[[auth.users]]
name = "ci"
password = "from-the-file"
grants = ["*:pull,push"]
"#,
    )
    .unwrap();
    let server = serve(&["--config", file.to_str().unwrap()], &[]);
    let ci = basic("ci", "from-the-file");
    let blob = b"public bytes";
    let digest = digest(blob);
    let (status, _, _) = http(
        server.addr,
        "POST",
        &format!("/v2/public/base/blobs/uploads/?digest={digest}"),
        &[("authorization", &ci)],
        blob,
    );
    assert_eq!(status, 201);
    let (status, _, body) = http(
        server.addr,
        "GET",
        &format!("/v2/public/base/blobs/{digest}"),
        &[],
        b"",
    );
    assert_eq!((status, &body[..]), (200, &blob[..]));
    let (status, _, _) = http(
        server.addr,
        "GET",
        &format!("/v2/private/blobs/{digest}"),
        &[],
        b"",
    );
    assert_eq!(status, 401);
    let (status, _, _) = http(
        server.addr,
        "DELETE",
        &format!("/v2/public/base/blobs/{digest}"),
        &[("authorization", &ci)],
        b"",
    );
    assert_eq!(status, 403, "ci was granted pull and push, not delete");
    let (status, _, body) = http(server.addr, "GET", "/v2/_catalog", &[], b"");
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (200, r#"{"repositories":["public/base"]}"#)
    );
}

#[test]
fn failed_logins_are_logged_with_the_user_and_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("berth.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--storage", "memory"])
        .args(["--auth-user", "ci:right-password"])
        .env("RUST_LOG", "info")
        .env_remove("USERNAME")
        .env_remove("PASSWORD")
        .env_remove("JWT_REGISTRY_TOKENS_PUBLIC_KEY")
        .stdout(Stdio::piped())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let (status, _, _) = http(
        addr,
        "GET",
        "/v2/",
        &[("authorization", &basic("ci", "wrong-password-xyz"))],
        b"",
    );
    assert_eq!(status, 401);
    let (status, _, _) = http(
        addr,
        "GET",
        "/v2/",
        &[("authorization", &basic("ci", "right-password"))],
        b"",
    );
    assert_eq!(status, 200);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let failure = text
        .lines()
        .find(|l| l.contains("authentication failed"))
        .unwrap_or_else(|| panic!("no failed login logged:\n{text}"));
    assert!(
        failure.contains("ci") && failure.contains("wrong password"),
        "{failure}"
    );
    assert!(!text.contains("wrong-password-xyz"), "{text}");
    assert!(!text.contains("right-password"), "{text}");
    assert!(text.contains("authentication on"), "{text}");
}

#[test]
fn invalid_auth_settings_are_refused_at_startup() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--storage", "memory"])
            .args(args)
            .env_remove("USERNAME")
            .env_remove("PASSWORD")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(run(&["--auth-user", "no-colon"]).contains("NAME:PASSWORD"));
    assert!(run(&["--auth-anonymous", "Public/*:pull"]).contains("invalid repository pattern"));
    assert!(
        run(&["--auth-user", "a:b", "--auth-grant", "zed=*:pull"])
            .contains("not a configured user")
    );
    assert!(
        run(&["--auth-token-signing-key", "/nonexistent/key.pem"]).contains("token signing key")
    );
    assert!(
        run(&["--auth-token-trusted-key", &fixture("ec-public.pem")])
            .contains("--auth-token-realm")
    );
    assert!(
        run(&[
            "--auth-user",
            "a:b",
            "--auth-token-signing-key",
            &fixture("ec-pkcs8.pem"),
            "--auth-token-ttl-secs",
            "0"
        ])
        .contains("TTL")
    );
}

/// `oci-client` (crates.io) logs in through the token flow with Basic credentials, pushes an
/// image and pulls it back; anonymous, it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pushes_and_pulls_through_the_token_flow() {
    use oci_client::client::{ClientConfig, ClientProtocol, Config as ImageConfig, ImageLayer};
    use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, Reference};

    let key = fixture("rsa-pkcs8.pem");
    let server = serve(
        &[
            "--auth-user",
            "ci:oci-client-pw",
            "--auth-grant",
            "ci=oci/*:pull,push",
            "--auth-token-signing-key",
            &key,
        ],
        &[],
    );
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let reference: Reference = format!("{}/oci/authenticated:v1", server.addr)
        .parse()
        .unwrap();
    let layer = content_seeded(6 * MIB + 3, 11);
    let layers = vec![ImageLayer::new(
        layer.clone(),
        IMAGE_LAYER_MEDIA_TYPE.to_owned(),
        None,
    )];
    let config = ImageConfig::new(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec(),
        IMAGE_CONFIG_MEDIA_TYPE.to_owned(),
        None,
    );
    let anonymous = client
        .push(
            &reference,
            &layers,
            config.clone(),
            &RegistryAuth::Anonymous,
            None,
        )
        .await;
    assert!(anonymous.is_err(), "an anonymous push is refused");
    let auth = RegistryAuth::Basic("ci".into(), "oci-client-pw".into());
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    client
        .push(&reference, &layers, config.clone(), &auth, None)
        .await
        .expect("oci-client pushes with a token");
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let image = client
        .pull(&reference, &auth, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .expect("oci-client pulls with a token");
    assert!(image.layers[0].data[..] == layer[..]);
    assert_eq!(image.config.data, config.data);
}

/// One server issues tokens; others verify them with its public key (an external issuer, as
/// berth sees it): accepted with the right key, service and issuer, refused with a wrong key,
/// a wrong audience or a wrong issuer.
#[test]
fn tokens_of_a_trusted_issuer_and_wrong_keys_audiences_and_issuers() {
    let realm = "http://issuer.test/token";
    let issuer = serve(
        &[
            "--auth-user",
            "ci:pw",
            "--auth-token-signing-key",
            &fixture("ec-pkcs8.pem"),
            "--auth-token-realm",
            realm,
            "--auth-token-service",
            "registry.test",
        ],
        &[],
    );
    let (status, _, body) = http(
        issuer.addr,
        "GET",
        "/token?service=registry.test&scope=repository:shared/app:pull,push",
        &[("authorization", &basic("ci", "pw"))],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    let verifier = |key: &str, service: &str, issuer: &str| {
        serve(
            &[
                "--auth-token-trusted-key",
                &fixture(key),
                "--auth-token-realm",
                realm,
                "--auth-token-service",
                service,
                "--auth-token-issuer",
                issuer,
            ],
            &[],
        )
    };
    let push = |server: &Server| {
        http(
            server.addr,
            "POST",
            "/v2/shared/app/blobs/uploads/",
            &[("authorization", &bearer)],
            b"",
        )
    };
    let trusting = verifier("ec-public.pem", "registry.test", "berth");
    assert_eq!(push(&trusting).0, 202, "the trusted issuer's token pushes");
    let (status, _, _) = http(
        trusting.addr,
        "GET",
        "/v2/shared/other/tags/list",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 401, "only the token's repository");
    // Without a signing key the verifier serves no token endpoint.
    assert_eq!(http(trusting.addr, "GET", "/token", &[], b"").0, 404);
    for (server, why) in [
        (
            verifier("rsa-public.pem", "registry.test", "berth"),
            "wrong key",
        ),
        (
            verifier("ec-public.pem", "elsewhere.test", "berth"),
            "wrong audience",
        ),
        (
            verifier("ec-public.pem", "registry.test", "someone"),
            "wrong issuer",
        ),
    ] {
        let (status, headers, body) = push(&server);
        assert_eq!(status, 401, "{why}: {}", String::from_utf8_lossy(&body));
        let challenge = header(&headers, "www-authenticate").unwrap();
        assert!(challenge.contains("invalid_token"), "{why}: {challenge}");
        assert!(challenge.starts_with(r#"Bearer realm="http://issuer.test/token""#));
    }
}

/// Why the README says not to keep a previous signing key as a trusted key when rotating: a
/// trusted key is an outside issuer's, whose `registry:catalog:*` token lists every repository,
/// while a token berth signs itself lists only what its user may pull, push or delete in.
#[test]
fn a_trusted_issuers_catalog_token_lists_every_repository() {
    let users = |signing_key: &str, trusted: &[&str]| {
        let mut args = vec![
            "--auth-user",
            "admin:pw",
            "--auth-user",
            "alice:pw",
            "--auth-grant",
            "alice=team-a/*:pull",
            "--auth-token-realm",
            "http://registry.test/token",
            "--auth-token-service",
            "registry.test",
            "--auth-token-signing-key",
            signing_key,
        ];
        for key in trusted {
            args.extend(["--auth-token-trusted-key", key]);
        }
        args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>()
    };
    let catalog_token = |server: &Server| {
        let (status, _, body) = http(
            server.addr,
            "GET",
            "/token?service=registry.test&scope=registry:catalog:*",
            &[("authorization", &basic("alice", "pw"))],
            b"",
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
        format!("Bearer {}", token["token"].as_str().unwrap())
    };
    let (old_key, new_key) = (fixture("ec-pkcs8.pem"), fixture("ed25519-pkcs8.pem"));
    let old_public = fixture("ec-public.pem");
    let before = users(&old_key, &[]);
    let before = serve(&before.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let old_token = catalog_token(&before);
    let after = users(&new_key, &[&old_public]);
    let after = serve(&after.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    for repository in ["team-a/app", "team-b/secret"] {
        let blob = repository.as_bytes();
        let (status, _, _) = http(
            after.addr,
            "POST",
            &format!("/v2/{repository}/blobs/uploads/?digest={}", digest(blob)),
            &[("authorization", &basic("admin", "pw"))],
            blob,
        );
        assert_eq!(status, 201);
    }
    let list = |bearer: &str| {
        let (status, _, body) = http(
            after.addr,
            "GET",
            "/v2/_catalog",
            &[("authorization", bearer)],
            b"",
        );
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(
        list(&catalog_token(&after)),
        (200, r#"{"repositories":["team-a/app"]}"#.to_owned()),
        "berth's own token: alice's repositories"
    );
    assert_eq!(
        list(&old_token),
        (
            200,
            r#"{"repositories":["team-a/app","team-b/secret"]}"#.to_owned()
        ),
        "a trusted key's token: every repository"
    );
}
