//! Whole HTTP exchanges through the engine with authentication configured
//! (`Config::auth`), snapshotted with insta: the 401 challenge, 403, token issuance and use,
//! `_catalog` filtering, the mount fallback, and what a refusal reports for the log.

mod common;
#[path = "auth_support.rs"]
mod support;

use std::sync::Arc;

use berth_engine::auth::{AuthConfig, AuthFailure, Authenticator, FailureReason, Identity};
use berth_engine::testing::{Driver, TestResponse, request};
use berth_engine::{Config, Registry};
use common::{exchange, push_image, render_response, sha256};
use insta::assert_snapshot;
use support::{NOW, basic, config};

fn driver_with_auth(auth: AuthConfig) -> Driver {
    let config = Config {
        auth: Some(Arc::new(Authenticator::new(auth).unwrap())),
        ..Config::default()
    };
    let mut d = Driver::new(Registry::new(config).unwrap());
    d.now = NOW;
    d
}

/// The test configuration of `auth_support.rs`: `reader`/`r3ad` pulls everything,
/// `writer`/`wr1te` does everything, `alice`/`wonderland` (bcrypt) pulls and pushes `team-a/*`,
/// anonymous callers pull `public/*`, and berth issues ES256 tokens at `/token`.
fn driver() -> Driver {
    driver_with_auth(config())
}

fn basic_value(user: &str, password: &str) -> String {
    basic(user, password)["authorization"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// An exchange plus the failure the engine reported for the log, if any.
fn logged(
    d: &mut Driver,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    let response = d.send(request(method, uri, headers, body.to_vec()));
    let mut out = format!("> {method} {uri}\n");
    for (name, value) in headers {
        out.push_str(&format!("> {name}: {value}\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("> {}\n", String::from_utf8_lossy(body)));
    }
    out.push_str(&render_response(&response));
    out.push_str(&log_line(&response));
    out
}

fn log_line(response: &TestResponse) -> String {
    let failure = response
        .extensions()
        .get::<AuthFailure>()
        .map(|f| format!("# failure: {f}\n"))
        .unwrap_or_default();
    let identity = response
        .extensions()
        .get::<Identity>()
        .map(|i| format!("# identity: {i}\n"))
        .unwrap_or_default();
    failure + &identity
}

/// Fetches a token with Basic credentials and returns it.
fn token(d: &mut Driver, credentials: Option<(&str, &str)>, scope: &str) -> String {
    let value = credentials.map(|(u, p)| basic_value(u, p));
    let headers: Vec<(&str, &str)> = value
        .iter()
        .map(|v| ("authorization", v.as_str()))
        .collect();
    let response = d.send(request(
        "GET",
        &format!("/token?service=registry.example.com&scope={scope}"),
        &headers,
        Vec::new(),
    ));
    assert_eq!(response.status(), 200, "{:?}", response.body());
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// Pushes an image (the empty config, one layer `layer of <name>`, tag `latest`) with
/// `writer`'s credentials.
fn seed(d: &mut Driver, name: &str) {
    let auth = basic_value("writer", "wr1te");
    let layer = format!("layer of {name}");
    for blob in [b"{}".as_slice(), layer.as_bytes()] {
        let digest = sha256(blob);
        let r = d.send(request(
            "POST",
            &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
            &[("authorization", &auth)],
            blob.to_vec(),
        ));
        assert_eq!(r.status(), 201, "{:?}", r.body());
    }
    let manifest = common::image_manifest(&[(&sha256(layer.as_bytes()), layer.len())], "");
    let r = d.send(request(
        "PUT",
        &format!("/v2/{name}/manifests/latest"),
        &[
            ("authorization", &auth),
            ("content-type", common::OCI_MANIFEST),
        ],
        manifest,
    ));
    assert_eq!(r.status(), 201, "{:?}", r.body());
}

#[test]
fn missing_credentials_get_a_401_with_a_bearer_challenge_for_the_scope() {
    let mut d = driver();
    let mut t = logged(&mut d, "GET", "/v2/", &[], b"");
    t += &logged(&mut d, "GET", "/v2/team-a/app/manifests/latest", &[], b"");
    t += &logged(
        &mut d,
        "HEAD",
        "/v2/team-a/app/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        &[],
        b"",
    );
    t += &logged(&mut d, "POST", "/v2/team-a/app/blobs/uploads/", &[], b"");
    t += &logged(
        &mut d,
        "DELETE",
        "/v2/team-a/app/manifests/latest",
        &[],
        b"",
    );
    t += &logged(&mut d, "GET", "/v2/_catalog", &[], b"");
    assert_snapshot!(t);
}

#[test]
fn wrong_credentials_get_a_401_and_report_the_user_but_not_the_password() {
    let mut d = driver();
    let wrong = basic_value("alice", "not-her-password");
    let unknown = basic_value("mallory", "guess");
    let mut t = logged(&mut d, "GET", "/v2/", &[("authorization", &wrong)], b"");
    t += &logged(&mut d, "GET", "/v2/", &[("authorization", &unknown)], b"");
    t += &logged(
        &mut d,
        "GET",
        "/v2/",
        &[("authorization", "Bearer not.a.token")],
        b"",
    );
    t += &logged(&mut d, "GET", "/v2/", &[("authorization", "Digest x")], b"");
    assert!(!t.contains("not-her-password") && !t.contains("guess\n"));
    assert_snapshot!(t);
}

#[test]
fn valid_credentials_without_the_permission_get_403_denied() {
    let mut d = driver();
    let alice = basic_value("alice", "wonderland");
    let reader = basic_value("reader", "r3ad");
    let mut t = logged(&mut d, "GET", "/v2/", &[("authorization", &alice)], b"");
    t += &logged(
        &mut d,
        "GET",
        "/v2/team-b/app/tags/list",
        &[("authorization", &alice)],
        b"",
    );
    t += &logged(
        &mut d,
        "DELETE",
        "/v2/team-a/app/manifests/latest",
        &[("authorization", &alice)],
        b"",
    );
    t += &logged(
        &mut d,
        "POST",
        "/v2/anything/blobs/uploads/",
        &[("authorization", &reader)],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn token_flow_issues_a_scoped_token_that_opens_only_its_repository() {
    let mut d = driver();
    let alice = basic_value("alice", "wonderland");
    // The challenge names the realm, service and scope; the client asks the realm for a token.
    let mut t = logged(&mut d, "PUT", "/v2/team-a/app/manifests/v1", &[], b"");
    t += &logged(
        &mut d,
        "GET",
        "/token?service=registry.example.com&scope=repository:team-a/app:pull,push",
        &[("authorization", &alice)],
        b"",
    );
    let token = token(
        &mut d,
        Some(("alice", "wonderland")),
        "repository:team-a/app:pull,push",
    );
    let bearer = format!("Bearer {token}");
    let digest = sha256(b"{}");
    t += &logged(
        &mut d,
        "POST",
        &format!("/v2/team-a/app/blobs/uploads/?digest={digest}"),
        &[("authorization", &bearer)],
        b"{}",
    );
    t += &logged(
        &mut d,
        "GET",
        &format!("/v2/team-a/app/blobs/{digest}"),
        &[("authorization", &bearer)],
        b"",
    );
    // Another repository of alice's: the token lacks the scope, so 401 insufficient_scope.
    t += &logged(
        &mut d,
        "GET",
        &format!("/v2/team-a/other/blobs/{digest}"),
        &[("authorization", &bearer)],
        b"",
    );
    // A repository alice may never push to: 403.
    t += &logged(
        &mut d,
        "POST",
        "/v2/team-b/app/blobs/uploads/",
        &[("authorization", &bearer)],
        b"",
    );
    // The token expires.
    d.now = berth_engine::UnixTime(NOW.0 + 3600);
    t += &logged(
        &mut d,
        "GET",
        &format!("/v2/team-a/app/blobs/{digest}"),
        &[("authorization", &bearer)],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn token_endpoint_takes_the_oauth2_form_and_refuses_bad_logins() {
    let mut d = driver();
    let mut t = logged(
        &mut d,
        "POST",
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"grant_type=password&username=reader&password=r3ad&service=registry.example.com&scope=repository%3Aany%2Fthing%3Apull%2Cpush&client_id=test",
    );
    t += &logged(
        &mut d,
        "POST",
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"grant_type=password&username=reader&password=s3cr3t-guess&service=registry.example.com",
    );
    t += &logged(
        &mut d,
        "POST",
        "/token",
        &[],
        b"grant_type=refresh_token&refresh_token=x",
    );
    t += &logged(
        &mut d,
        "GET",
        "/token?service=registry.example.com&scope=repository:team-a/app:pull",
        &[],
        b"",
    );
    t += &logged(
        &mut d,
        "GET",
        "/token?service=registry.example.com&scope=repository:public/base:pull,push",
        &[],
        b"",
    );
    t += &logged(&mut d, "DELETE", "/token", &[], b"");
    assert!(
        t.lines()
            .filter(|l| l.starts_with('#'))
            .all(|l| !l.contains("s3cr3t-guess"))
    );
    assert_snapshot!(t);
}

#[test]
fn oversized_token_forms_are_refused_without_reading_them_whole() {
    let mut d = driver();
    d.chunk_size = 4096;
    let mut form = b"grant_type=password&username=reader&password=r3ad&pad=".to_vec();
    form.resize(berth_engine::auth::MAX_TOKEN_FORM_LEN * 4, b'x');
    let response = d.send(request("POST", "/token", &[], form));
    assert_eq!(response.status(), 413);
    let reads = d.log.iter().filter(|e| e.starts_with("read-body")).count();
    assert!(
        reads <= berth_engine::auth::MAX_TOKEN_FORM_LEN / 4096 + 2,
        "{reads} chunks read"
    );
    assert!(matches!(
        response
            .extensions()
            .get::<AuthFailure>()
            .map(|f| &f.reason),
        Some(FailureReason::BadTokenRequest(_))
    ));
}

#[test]
fn anonymous_pull_of_public_repositories() {
    let mut d = driver();
    seed(&mut d, "public/base");
    let mut t = logged(&mut d, "GET", "/v2/public/base/manifests/latest", &[], b"");
    t += &logged(&mut d, "GET", "/v2/public/base/tags/list", &[], b"");
    t += &logged(&mut d, "PUT", "/v2/public/base/manifests/v2", &[], b"");
    assert_snapshot!(t);
}

#[test]
fn catalog_lists_only_what_the_caller_may_see() {
    let mut d = driver();
    for name in [
        "public/base",
        "team-a/app",
        "team-a/web",
        "team-b/app",
        "zeta",
    ] {
        seed(&mut d, name);
    }
    let alice = basic_value("alice", "wonderland");
    let reader = basic_value("reader", "r3ad");
    let mut t = logged(
        &mut d,
        "GET",
        "/v2/_catalog",
        &[("authorization", &alice)],
        b"",
    );
    t += &logged(
        &mut d,
        "GET",
        "/v2/_catalog",
        &[("authorization", &reader)],
        b"",
    );
    // Pages fill with visible names: hidden ones do not leave them short.
    t += &logged(
        &mut d,
        "GET",
        "/v2/_catalog?n=2",
        &[("authorization", &alice)],
        b"",
    );
    t += &logged(
        &mut d,
        "GET",
        "/v2/_catalog?n=2&last=team-a%2Fapp",
        &[("authorization", &alice)],
        b"",
    );
    t += &logged(&mut d, "GET", "/v2/_catalog", &[], b"");
    let catalog_token = token(&mut d, Some(("alice", "wonderland")), "registry:catalog:*");
    t += &logged(
        &mut d,
        "GET",
        "/v2/_catalog",
        &[("authorization", &format!("Bearer {catalog_token}"))],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn mounts_from_a_repository_the_caller_cannot_pull_become_plain_upload_sessions() {
    let mut d = driver();
    seed(&mut d, "team-b/secret");
    seed(&mut d, "public/base");
    let alice = basic_value("alice", "wonderland");
    let secret = sha256(b"layer of team-b/secret");
    let public = sha256(b"layer of public/base");
    // No pull on team-b/secret: a session, not a mount, and not a hint that the blob exists.
    let mut t = logged(
        &mut d,
        "POST",
        &format!("/v2/team-a/app/blobs/uploads/?mount={secret}&from=team-b/secret"),
        &[("authorization", &alice)],
        b"",
    );
    // Without `from`, the registry-wide lookup needs pull everywhere: a session too.
    t += &logged(
        &mut d,
        "POST",
        &format!("/v2/team-a/app/blobs/uploads/?mount={secret}"),
        &[("authorization", &alice)],
        b"",
    );
    // `from` she may pull, but the blob is elsewhere: no registry-wide lookup for her.
    t += &logged(
        &mut d,
        "POST",
        &format!("/v2/team-a/app/blobs/uploads/?mount={secret}&from=public/base"),
        &[("authorization", &alice)],
        b"",
    );
    // From a repository she may pull: mounted.
    t += &logged(
        &mut d,
        "POST",
        &format!("/v2/team-a/app/blobs/uploads/?mount={public}&from=public/base"),
        &[("authorization", &alice)],
        b"",
    );
    t += &logged(
        &mut d,
        "HEAD",
        &format!("/v2/team-a/app/blobs/{secret}"),
        &[("authorization", &alice)],
        b"",
    );
    // The writer may pull everywhere: the registry-wide lookup mounts.
    let writer = basic_value("writer", "wr1te");
    t += &logged(
        &mut d,
        "POST",
        &format!("/v2/team-c/app/blobs/uploads/?mount={secret}"),
        &[("authorization", &writer)],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn an_unconfigured_authenticator_refuses_everything() {
    let mut d = driver_with_auth(AuthConfig::default());
    let mut t = logged(&mut d, "GET", "/v2/", &[], b"");
    t += &logged(
        &mut d,
        "GET",
        "/v2/a/tags/list",
        &[("authorization", &basic_value("a", "b"))],
        b"",
    );
    t += &logged(&mut d, "GET", "/token", &[], b"");
    assert_snapshot!(t);
}

#[test]
fn without_auth_everything_is_allowed_and_nothing_is_reported() {
    let mut d = common::driver();
    let digest = push_image(&mut d, "a", "latest", b"layer", "");
    let response = d.send(request(
        "GET",
        &format!("/v2/a/manifests/{digest}"),
        &[],
        Vec::new(),
    ));
    assert_eq!(response.status(), 200);
    assert!(response.extensions().get::<AuthFailure>().is_none());
    assert!(response.extensions().get::<Identity>().is_none());
    assert_snapshot!(exchange(&mut d, "GET", "/v2/_catalog", &[], b""));
}

/// Follows `_catalog` pages from `first` for `headers`, returning every page's raw text (status,
/// headers, body) and the names shown, in order. Fails after `max_pages`.
fn catalog_pages(
    d: &mut Driver,
    first: &str,
    headers: &[(&str, &str)],
    max_pages: usize,
) -> (Vec<String>, Vec<String>) {
    let mut raw = Vec::new();
    let mut shown = Vec::new();
    let mut uri = first.to_owned();
    for _ in 0..max_pages {
        let r = d.send(request("GET", &uri, headers, Vec::new()));
        assert_eq!(r.status(), 200, "{uri}: {:?}", r.body());
        raw.push(common::render_response(&r));
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        for name in body["repositories"].as_array().unwrap() {
            shown.push(name.as_str().unwrap().to_owned());
        }
        let Some(link) = r.headers().get("link") else {
            return (raw, shown);
        };
        let link = link.to_str().unwrap();
        uri = link[1..link.find('>').unwrap()].to_owned();
    }
    panic!("{first}: still paging after {max_pages} pages: {raw:?}");
}

#[test]
fn catalog_links_never_name_a_repository_the_caller_cannot_see() {
    let hidden: Vec<String> = (0..20)
        .map(|i| format!("secret/r{i:02}"))
        .chain((0..20).map(|i| format!("team-b/r{i:02}")))
        .collect();
    let visible = ["team-a/app", "team-c/app"];
    let mut auth = AuthConfig::default();
    auth.users.push(berth_engine::auth::User::plain(
        "writer",
        "wr1te",
        vec![support::grant("*:*")],
    ));
    auth.users.push(berth_engine::auth::User::plain(
        "teams",
        "t3ams",
        vec![
            support::grant("team-a/*:pull"),
            support::grant("team-c/*:pull"),
        ],
    ));
    auth.anonymous = vec![
        support::grant("team-a/*:pull"),
        support::grant("team-c/*:pull"),
    ];
    let auth = Arc::new(Authenticator::new(auth).unwrap());
    let registry = |list_page_size| {
        Registry::new(Config {
            auth: Some(auth.clone()),
            list_page_size,
            ..Config::default()
        })
        .unwrap()
    };
    let mut d = Driver::new(registry(1000));
    d.now = NOW;
    for name in hidden.iter().map(String::as_str).chain(visible) {
        seed(&mut d, name);
    }
    let teams = basic_value("teams", "t3ams");
    let callers: [&[(&str, &str)]; 2] = [&[], &[("authorization", &teams)]];
    // Small store pages make a request list many times, and reach the listing cap.
    for list_page_size in [1, 2, 3, 1000] {
        d.registry = registry(list_page_size);
        for n in ["", "?n=1", "?n=2", "?n=3", "?n=5"] {
            for headers in callers {
                let first = format!("/v2/_catalog{n}");
                let (raw, shown) = catalog_pages(&mut d, &first, headers, 10);
                let context = format!("page size {list_page_size}, {first}, {headers:?}");
                for text in &raw {
                    for name in &hidden {
                        let encoded: String =
                            form_urlencoded::byte_serialize(name.as_bytes()).collect();
                        assert!(
                            !text.contains(name.as_str()) && !text.contains(&encoded),
                            "{context}: {name} leaked:\n{text}"
                        );
                    }
                }
                assert_eq!(shown, visible, "{context}: {raw:?}");
            }
        }
    }
    // With 2 keys a listing, the cap ends the first page after team-b's names: it shows
    // team-a/app, and continues after it (not after the last hidden name listed).
    d.registry = registry(2);
    let r = d.send(request("GET", "/v2/_catalog?n=2", &[], Vec::new()));
    assert_eq!(r.body().as_ref(), br#"{"repositories":["team-a/app"]}"#);
    assert_eq!(
        r.headers()["link"],
        r#"</v2/_catalog?n=2&last=team-a%2Fapp>; rel="next""#
    );
}

/// skopeo and podman answer a Basic challenge with `Basic Og==` (empty user, empty password)
/// when they have no credentials: that is anonymous, with the anonymous grants, and not a
/// failed login. The configuration is the one of the report: htpasswd users, anonymous pull
/// of `public/*`, Basic challenges (no tokens).
#[test]
fn empty_basic_credentials_are_anonymous() {
    let mut basic_only = config();
    basic_only.token = None;
    basic_only.password_jwt_keys.clear();
    let mut d = driver_with_auth(basic_only);
    seed(&mut d, "public/base");
    let empty = [("authorization", "Basic Og==")];
    let mut t = logged(&mut d, "GET", "/v2/", &empty, b"");
    t += &logged(
        &mut d,
        "GET",
        "/v2/public/base/manifests/latest",
        &empty,
        b"",
    );
    t += &logged(&mut d, "GET", "/v2/private/manifests/latest", &empty, b"");
    t += &logged(&mut d, "PUT", "/v2/public/base/manifests/v2", &empty, b"");
    assert_snapshot!(t);
    // With tokens, the token endpoint hands such a caller an anonymous token.
    let mut d = driver();
    let response = d.send(request(
        "GET",
        "/token?service=registry.example.com&scope=repository:public/base:pull",
        &empty,
        Vec::new(),
    ));
    assert_eq!(response.status(), 200, "{:?}", response.body());
    assert!(response.extensions().get::<AuthFailure>().is_none());
}
