//! berth's token endpoint: the Docker registry token flow's issuer side.
//!
//! `GET <path>?service=<service>&scope=<scope>[&scope=…]` with Basic credentials (or none, for
//! an anonymous token) answers `{"token", "access_token", "expires_in", "issued_at"}`. The
//! token grants, for each requested scope, only the actions the caller may do (the
//! intersection of what was asked and what is permitted); scopes that grant nothing are left
//! out rather than refused, as clients ask for more than they need (`pull,push` to pull).
//!
//! The OAuth2 form (`POST`, `grant_type=password` with `username`/`password`, space-separated
//! `scope`), which containerd tries first, is served too; other grant types get a 400, on
//! which containerd falls back to `GET`. No refresh tokens are issued.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Serialize;

use super::identity::{Identity, Principal, Rights};
use super::{
    Action, Actions, AuthError, AuthFailure, Authenticator, Challenge, FailureReason, jwt,
};
use crate::error::{ErrorCode, RegistryError};
use crate::response::{Body, Response, set_content_length};
use crate::route::Query;
use crate::{Entropy, UnixTime, names};

/// Largest token request body read (a POST form), in bytes.
pub const MAX_TOKEN_FORM_LEN: usize = 64 * 1024;
/// Most scopes one token request may ask for.
const MAX_SCOPES: usize = 64;

/// One entry of a token's `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Access {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    actions: Vec<&'static str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Access>,
}

#[derive(Serialize)]
struct TokenResponse<'a> {
    token: &'a str,
    access_token: &'a str,
    expires_in: u64,
    issued_at: String,
}

/// A scope a client asked for.
enum Requested {
    Repository { name: String, actions: Actions },
    Catalog,
}

/// Parses `type[(class)]:name:actions`. The name may contain `:` (a host with a port), so the
/// actions are after the last one. `Ok(None)` for resource types berth has nothing to grant
/// on; an invalid repository name is an error.
fn parse_scope(scope: &str) -> Result<Option<Requested>, String> {
    let malformed = || format!("scope {:?} is not type:name:actions", cut(scope));
    let (kind, rest) = scope.split_once(':').ok_or_else(malformed)?;
    let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;
    let kind = kind.split('(').next().unwrap_or(kind);
    match kind {
        "repository" => {
            if !names::is_valid_repository_name(name) {
                return Err(format!("scope names an invalid repository {:?}", cut(name)));
            }
            let actions = actions.split(',').fold(Actions::NONE, |set, a| {
                if a == "*" {
                    Actions::ALL
                } else {
                    Action::parse(a).map_or(set, |a| set.with(a))
                }
            });
            Ok(Some(Requested::Repository {
                name: name.to_owned(),
                actions,
            }))
        }
        "registry" if name == "catalog" && actions.split(',').any(|a| a == "*") => {
            Ok(Some(Requested::Catalog))
        }
        _ => Ok(None),
    }
}

fn cut(text: &str) -> String {
    text.chars().take(80).collect()
}

/// RFC 3339 UTC (`2024-01-02T03:04:05Z`) from Unix seconds.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Authenticator {
    /// Whether `path` (without query) is berth's token endpoint: token auth is configured with
    /// a signing key and `path` is [`super::TokenConfig::path`]. The dispatch checks this
    /// before routing into `/v2/`.
    pub fn is_token_endpoint(&self, path: &str) -> bool {
        matches!(&self.config.token, Some(t) if t.signing_key.is_some() && t.path == path)
    }

    /// The public keys that verify berth's tokens, as a JWK Set (`{"keys":[...]}`), for a
    /// runtime that wants to publish them (another registry verifying berth's tokens).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": self.bearer_keys.iter().map(|k| k.to_jwk()).collect::<Vec<_>>(),
        })
    }

    /// Serves the token endpoint: authenticates the caller (Basic, or anonymous if anonymous
    /// grants exist), and issues a token granting the intersection of the requested scopes and
    /// the caller's permissions, valid for [`super::TokenConfig::ttl_secs`] from `now`, its
    /// `jti` drawn from `entropy`.
    ///
    /// `body` is the request body for `POST` (an OAuth2 form, at most [`MAX_TOKEN_FORM_LEN`]
    /// bytes; the runtime reads it), ignored for `GET`. Errors: 401 with a `Basic` challenge for
    /// wrong or missing credentials, 400 for malformed requests or a foreign `service`, 404
    /// when berth issues no tokens, 405 for other methods.
    pub fn issue_token(
        &self,
        method: &Method,
        headers: &HeaderMap,
        query: &Query,
        body: &[u8],
        now: UnixTime,
        entropy: &Entropy,
    ) -> Result<Response, AuthError> {
        let Some((config, key)) = self
            .config
            .token
            .as_ref()
            .and_then(|t| t.signing_key.as_ref().map(|k| (t, k)))
        else {
            return Err(bad_request(
                StatusCode::NOT_FOUND,
                "this registry does not issue tokens",
            ));
        };
        let form;
        let (params, identity) = if *method == Method::GET {
            (query, self.token_caller_from_header(headers, now)?)
        } else if *method == Method::POST {
            if body.len() > MAX_TOKEN_FORM_LEN {
                return Err(bad_request(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "token request body too large",
                ));
            }
            let text = core::str::from_utf8(body)
                .map_err(|_| bad_request(StatusCode::BAD_REQUEST, "form is not UTF-8"))?;
            form = Query::parse(Some(text));
            match form.get("grant_type") {
                Some("password") => {}
                Some(other) => {
                    return Err(bad_request(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "unsupported_grant_type {:?}: use password, or GET",
                            cut(other)
                        ),
                    ));
                }
                None => return Err(bad_request(StatusCode::BAD_REQUEST, "no grant_type")),
            }
            let user = form.get("username").unwrap_or_default();
            let password = form.get("password").unwrap_or_default();
            let identity = self
                .basic(user, password.as_bytes(), now)
                .map_err(|f| self.token_unauthorized(f))?;
            (&form, identity)
        } else {
            let error = RegistryError::unsupported(format!(
                "{method} is not supported on the token endpoint"
            ))
            .with_header(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return Err(AuthError {
                failure: AuthFailure {
                    user: None,
                    reason: FailureReason::BadTokenRequest(format!("method {method}")),
                },
                error,
            });
        };
        if let Some(service) = params.get("service")
            && service != config.service
        {
            return Err(bad_request(
                StatusCode::BAD_REQUEST,
                &format!(
                    "service {:?} is not this registry's ({:?})",
                    cut(service),
                    config.service
                ),
            ));
        }
        let scopes: Vec<&str> = params
            .all("scope")
            .flat_map(|s| s.split(' '))
            .filter(|s| !s.is_empty())
            .collect();
        if scopes.len() > MAX_SCOPES {
            return Err(bad_request(
                StatusCode::BAD_REQUEST,
                &format!("more than {MAX_SCOPES} scopes"),
            ));
        }
        let mut access: Vec<Access> = Vec::new();
        let mut granted: Vec<(String, Actions)> = Vec::new();
        let mut catalog = false;
        for scope in scopes {
            match parse_scope(scope).map_err(|why| bad_request(StatusCode::BAD_REQUEST, &why))? {
                Some(Requested::Repository { name, actions }) => {
                    let permitted = Action::ALL
                        .into_iter()
                        .filter(|&a| self.can(&identity, a, &name))
                        .fold(Actions::NONE, Actions::with);
                    let actions = actions.intersection(permitted);
                    match granted.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, existing)) => *existing = existing.union(actions),
                        None => granted.push((name, actions)),
                    }
                }
                Some(Requested::Catalog) => {
                    catalog |= !identity.is_anonymous() || !self.anonymous.is_empty();
                }
                None => {}
            }
        }
        for (name, actions) in granted {
            if !actions.is_empty() {
                access.push(Access {
                    kind: "repository",
                    name,
                    actions: actions.iter().map(Action::as_str).collect(),
                });
            }
        }
        if catalog {
            access.push(Access {
                kind: "registry",
                name: "catalog".to_owned(),
                actions: vec!["*"],
            });
        }
        let subject = match &identity.principal {
            Principal::User { name } => name.clone(),
            Principal::PasswordJwt {
                username,
                account_id,
            } => format!(
                "jwt:{}",
                username.as_deref().or(account_id.as_deref()).unwrap_or("")
            ),
            _ => String::new(),
        };
        let claims = Claims {
            iss: &config.issuer,
            sub: &subject,
            aud: &config.service,
            exp: now.0.saturating_add(config.ttl_secs),
            nbf: now.0,
            iat: now.0,
            jti: hex::encode(&entropy.0[..16]),
            access,
        };
        let token = jwt::sign(&claims, key, entropy);
        let body = serde_json::to_vec(&TokenResponse {
            token: &token,
            access_token: &token,
            expires_in: config.ttl_secs,
            issued_at: rfc3339(now.0),
        })
        .unwrap_or_default();
        let mut response = http::Response::new(Body::Bytes(Bytes::from(body)));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        set_content_length(&mut response);
        Ok(response)
    }

    /// The caller of a GET token request: Basic credentials, or anonymous when anonymous
    /// grants exist.
    fn token_caller_from_header(
        &self,
        headers: &HeaderMap,
        now: UnixTime,
    ) -> Result<Identity, AuthError> {
        use super::credentials::{Credentials, HeaderProblem, from_headers};
        let failure = |reason| AuthFailure { user: None, reason };
        match from_headers(headers) {
            Ok(None) if !self.anonymous.is_empty() => Ok(Identity {
                principal: Principal::Anonymous,
                rights: Rights::Anonymous,
            }),
            Ok(None) => Err(self.token_unauthorized(failure(FailureReason::MissingCredentials))),
            Ok(Some(Credentials::Basic { user, password })) => self
                .basic(&user, &password, now)
                .map_err(|f| self.token_unauthorized(f)),
            Ok(Some(Credentials::Bearer(_))) => Err(self.token_unauthorized(failure(
                FailureReason::UnsupportedScheme("Bearer".to_owned()),
            ))),
            Err(HeaderProblem::Malformed(why)) => {
                Err(self.token_unauthorized(failure(FailureReason::MalformedAuthorization(why))))
            }
            Err(HeaderProblem::UnsupportedScheme(s)) => {
                Err(self.token_unauthorized(failure(FailureReason::UnsupportedScheme(s))))
            }
        }
    }

    /// A 401 from the token endpoint: a `Basic` challenge, whatever else is configured (the
    /// token endpoint takes Basic credentials).
    fn token_unauthorized(&self, failure: AuthFailure) -> AuthError {
        let mut error = self.unauthorized(failure.user, failure.reason, &Challenge::default());
        let value = format!("Basic realm=\"{}\",charset=\"UTF-8\"", self.config.realm);
        error
            .error
            .headers
            .retain(|(name, _)| name != header::WWW_AUTHENTICATE);
        error.error.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Basic")),
        ));
        error
    }
}

fn bad_request(status: StatusCode, why: &str) -> AuthError {
    AuthError {
        failure: AuthFailure {
            user: None,
            reason: FailureReason::BadTokenRequest(why.to_owned()),
        },
        error: RegistryError::new(status, ErrorCode::Unsupported, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn scopes() {
        assert!(matches!(
            parse_scope("repository:a/b:pull,push").unwrap(),
            Some(Requested::Repository { ref name, actions }) if name == "a/b"
                && actions == Actions::PULL.union(Actions::PUSH)
        ));
        assert!(matches!(
            parse_scope("repository(plugin):a:*").unwrap(),
            Some(Requested::Repository {
                actions: Actions::ALL,
                ..
            })
        ));
        assert!(matches!(
            parse_scope("registry:catalog:*").unwrap(),
            Some(Requested::Catalog)
        ));
        assert!(parse_scope("registry:catalog:pull").unwrap().is_none());
        assert!(parse_scope("repository:A:pull").is_err());
        assert!(parse_scope("nonsense").is_err());
    }
}
