//! The authorization matrix: identity × request → allowed (200) / 401 / 403, as a snapshot.
//!
//! Configuration (see `auth_support.rs`): `reader` pulls everything, `writer` may do
//! everything, `alice` (bcrypt, htpasswd) pulls and pushes `team-a/*`, anonymous pulls
//! `public/*`, serverless-registry JWT passwords, and berth-issued bearer tokens.

#[path = "auth_support.rs"]
mod support;

use http::HeaderMap;
use support::*;

#[test]
fn authorization_matrix() {
    let auth = authenticator();
    let sr = serverless();
    let alice_token = get_token(
        &auth,
        &basic("alice", "wonderland"),
        "service=registry.example.com&scope=repository:team-a/app:pull,push",
        NOW,
    )
    .unwrap();
    let anonymous_token = get_token(
        &auth,
        &HeaderMap::new(),
        "service=registry.example.com&scope=repository:public/base:pull",
        NOW,
    )
    .unwrap();
    let identities: Vec<(&str, HeaderMap)> = vec![
        ("anonymous", HeaderMap::new()),
        ("read-only user", basic("reader", "r3ad")),
        ("read-write user", basic("writer", "wr1te")),
        ("team-a user (bcrypt)", basic("alice", "wonderland")),
        ("wrong password", basic("writer", "wrong")),
        ("unknown user", basic("mallory", "x")),
        ("JWT pull", basic("v0", &sr.pull)),
        ("JWT pull,push", basic("v0", &sr.pull_push)),
        ("JWT push only", basic("v0", &sr.push)),
        ("JWT expired", basic("v0", &sr.expired)),
        ("bearer alice team-a/app", bearer(&alice_token)),
        ("bearer anonymous", bearer(&anonymous_token)),
    ];
    let requests: Vec<(&str, String, String)> = {
        let mut r = vec![
            ("base", "GET".to_owned(), "/v2/".to_owned()),
            ("catalog", "GET".to_owned(), "/v2/_catalog".to_owned()),
        ];
        for repo in ["public/base", "team-a/app", "team-b/app"] {
            r.push(("pull", "GET".into(), format!("/v2/{repo}/manifests/latest")));
            r.push((
                "head",
                "HEAD".into(),
                format!("/v2/{repo}/manifests/latest"),
            ));
            r.push(("push", "PUT".into(), format!("/v2/{repo}/manifests/latest")));
            r.push((
                "delete",
                "DELETE".into(),
                format!("/v2/{repo}/manifests/latest"),
            ));
        }
        r
    };
    let mut table = String::new();
    let width = identities.iter().map(|(n, _)| n.len()).max().unwrap();
    // Header: one column per request.
    table.push_str(&format!("{:width$} |", "identity \\ request"));
    for (label, _, uri) in &requests {
        let repo = uri
            .strip_prefix("/v2/")
            .and_then(|p| p.split("/manifests").next())
            .filter(|r| !r.is_empty() && !r.starts_with('_'))
            .map(|r| r.split('/').next().unwrap_or(r))
            .unwrap_or("");
        let column = if repo.is_empty() {
            label.to_string()
        } else {
            format!("{label}:{repo}")
        };
        table.push_str(&format!(" {column}"));
    }
    table.push('\n');
    for (name, headers) in &identities {
        table.push_str(&format!("{name:width$} |"));
        for (label, method, uri) in &requests {
            let status = status(&auth, method, uri, headers);
            let repo = uri
                .strip_prefix("/v2/")
                .and_then(|p| p.split("/manifests").next())
                .filter(|r| !r.is_empty() && !r.starts_with('_'))
                .map(|r| r.split('/').next().unwrap_or(r))
                .unwrap_or("");
            let column_width = if repo.is_empty() {
                label.len()
            } else {
                label.len() + 1 + repo.len()
            };
            table.push_str(&format!(" {status:>column_width$}"));
        }
        table.push('\n');
    }
    insta::assert_snapshot!(table, @r"
    identity \ request      | base catalog pull:public head:public push:public delete:public pull:team-a head:team-a push:team-a delete:team-a pull:team-b head:team-b push:team-b delete:team-b
    anonymous               |  401     200         200         200         401           401         401         401         401           401         401         401         401           401
    read-only user          |  200     200         200         200         403           403         200         200         403           403         200         200         403           403
    read-write user         |  200     200         200         200         200           200         200         200         200           200         200         200         200           200
    team-a user (bcrypt)    |  200     200         200         200         403           403         200         200         200           403         403         403         403           403
    wrong password          |  401     401         401         401         401           401         401         401         401           401         401         401         401           401
    unknown user            |  401     401         401         401         401           401         401         401         401           401         401         401         401           401
    JWT pull                |  200     200         200         200         403           403         200         200         403           403         200         200         403           403
    JWT pull,push           |  200     200         200         200         200           200         200         200         200           200         200         200         200           200
    JWT push only           |  200     200         200         200         200           200         403         200         200           200         403         200         200           200
    JWT expired             |  401     401         401         401         401           401         401         401         401           401         401         401         401           401
    bearer alice team-a/app |  200     401         200         200         403           403         200         200         200           403         403         403         403           403
    bearer anonymous        |  200     401         200         200         401           401         401         401         401           401         401         401         401           401
    ");
}
