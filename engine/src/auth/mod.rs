//! Authentication and authorization, decided as pure functions.
//!
//! Like the rest of the engine, this module performs no I/O and reads neither a clock nor a
//! random source: the runtime passes the request head, `now` ([`UnixTime`]) and, to issue a
//! token, 32 bytes of [`Entropy`](crate::Entropy). Every function is synchronous and independent of the
//! transaction machinery, so the dispatch can call it before starting a transaction.
//!
//! # What is supported
//!
//! - **Basic** with configured [`User`]s: plaintext secrets (compared in constant time) and
//!   bcrypt hashes from htpasswd files ([`AuthConfig::add_htpasswd`]).
//! - **serverless-registry compatibility** ([`AuthConfig::from_serverless_registry_env`]):
//!   `USERNAME`/`PASSWORD`, `READONLY_USERNAME`/`READONLY_PASSWORD`, and
//!   `JWT_REGISTRY_TOKENS_PUBLIC_KEY` (a JWT as the Basic password, its `capabilities` claim
//!   saying what it may do).
//! - **Registry tokens** (the flow docker, containerd, skopeo and oras speak): 401 with a
//!   `Bearer realm=…,service=…,scope=…` challenge, a token endpoint
//!   ([`Authenticator::issue_token`], path [`TokenConfig::path`], default `/token`), and
//!   verification of `Authorization: Bearer` tokens (signature, `exp`, `nbf`, `aud`, `iss`).
//!   ES256, RS256 and EdDSA; keys in PEM or JWK. `alg: none`, HMAC, and any algorithm no
//!   configured key has are refused.
//! - **Permissions**: pull, push and delete, granted per repository pattern ([`Grant`]) to
//!   users and to anonymous callers.
//!
//! # Wiring
//!
//! [`crate::Config::auth`] holds the runtime's `Arc<Authenticator>`; the engine's gate
//! (`gate.rs`, called by the dispatch before routing) applies it to every request:
//!
//! ```text
//! if auth.is_token_endpoint(path) {
//!     // POST form read with Effect::ReadBody, at most MAX_TOKEN_FORM_LEN bytes.
//!     return auth.issue_token(&method, &headers, &query, &body, now, &entropy);
//! }
//! let route = route::route(path)?;                                       // 404/405 first
//! let identity = auth.authorize(&headers, &route, &method, &query, now)?; // 401/403
//! // POST uploads with `mount`: a `from` the caller cannot pull is dropped (a plain upload
//! // session); the registry-wide lookup needs auth.can_mount_from(&identity, None).
//! // _catalog: keep the names for which auth.can_see(&identity, name).
//! ```
//!
//! A refusal's [`AuthFailure`] and an admitted caller's [`Identity`] ride in the response's
//! extensions, for the runtime's log.
//!
//! # Status codes
//!
//! - 401 `UNAUTHORIZED` with a challenge (`Bearer …` when token auth is configured, else
//!   `Basic realm="…"`): no credentials and anonymous may not do this; wrong or malformed
//!   credentials; an invalid token; a valid token lacking the scope (`error="insufficient_scope"`)
//!   unless berth knows its subject could never get it.
//! - 403 `DENIED`: valid credentials that do not allow the request.
//!
//! Each refusal comes with an [`AuthFailure`] (user name, reason) for the log.
//!
//! # Costs (measured, release build; WebAssembly under Node 20's V8)
//!
//! | operation | native | wasm32 |
//! | --- | --- | --- |
//! | bcrypt verification, cost 10 | 92 ms | 113 ms |
//! | issue + verify a token, ES256 (incl. key parsing) | 2.1 ms | 12 ms |
//! | same, RS256 2048 | 9.4 ms | 30 ms |
//! | same, EdDSA | 0.4 ms | 3 ms |
//!
//! Basic with an htpasswd user runs bcrypt on *every* request, as the reference registry
//! does; on a Worker (whose CPU budget per request may be 10 ms) prefer plaintext secrets or
//! the token flow, where bcrypt runs once per token. With any bcrypt user configured, an
//! unknown user name costs a bcrypt too (a dummy at the highest configured cost), so timing
//! does not tell which htpasswd names exist.

mod config;
mod credentials;
mod htpasswd;
mod identity;
mod jwt;
mod keys;
mod permissions;
mod token;

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Deserialize;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

pub use config::{AuthConfig, AuthConfigError, Secret, TokenConfig, User};
pub use credentials::MAX_AUTHORIZATION_LEN;
pub use htpasswd::{BcryptHash, parse_htpasswd};
pub use identity::{AuthError, AuthFailure, FailureReason, Identity, Principal};
pub use jwt::{MAX_TOKEN_LEN, TokenError};
pub use keys::{Algorithm, KeyError, SigningKey, VerificationKey};
pub use permissions::{Action, Actions, Grant, RepoPattern, Requirement, requirement};
pub use token::MAX_TOKEN_FORM_LEN;

use credentials::{Credentials, HeaderProblem};
use identity::{Rights, Subject, TokenRights, loggable_user};
use permissions::{grants_actions, grants_allow};

use crate::error::{ErrorCode, RegistryError};
use crate::route::{Query, Route};
use crate::{UnixTime, names};

#[derive(Clone)]
enum StoredSecret {
    /// SHA-256 of the password: compared in constant time whatever the length.
    Plain([u8; 32]),
    Bcrypt(BcryptHash),
}

/// How a Basic user name's password is checked ([`Authenticator::password_check`]).
enum PasswordCheck<'a> {
    /// A configured user: check against its secret.
    Known(&'a UserEntry),
    /// An unknown user while bcrypt users exist: verify against the dummy hash, then refuse,
    /// so that the refusal takes as long as checking a known user would.
    Dummy(&'a BcryptHash),
    /// An unknown user, and no bcrypt user whose cost there would be to match: refuse.
    Unknown,
}

#[derive(Clone)]
struct UserEntry {
    secret: StoredSecret,
    grants: Arc<[Grant]>,
}

/// Decides every request's identity and permissions. Build it once from an [`AuthConfig`];
/// it is immutable, `Send + Sync`, and meant to be shared (in an `Arc`).
#[derive(Clone)]
pub struct Authenticator {
    config: AuthConfig,
    users: HashMap<String, UserEntry>,
    anonymous: Arc<[Grant]>,
    /// Keys that verify bearer tokens: berth's own signing key's public half first (if any),
    /// then the trusted keys.
    bearer_keys: Vec<VerificationKey>,
    has_own_key: bool,
    /// With bcrypt users configured: a hash at their highest cost, verified (and ignored) for
    /// an unknown user name so that its refusal costs what a known user's check does.
    dummy_bcrypt: Option<BcryptHash>,
}

impl core::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Validates the configuration and prepares lookups.
    pub fn new(config: AuthConfig) -> Result<Authenticator, AuthConfigError> {
        config.validate()?;
        let users = config
            .users
            .iter()
            .map(|user| {
                let secret = match &user.secret {
                    Secret::Plain(password) => {
                        StoredSecret::Plain(sha2::Sha256::digest(password.as_bytes()).into())
                    }
                    Secret::Bcrypt(hash) => StoredSecret::Bcrypt(hash.clone()),
                };
                let entry = UserEntry {
                    secret,
                    grants: user.grants.clone().into(),
                };
                (user.name.clone(), entry)
            })
            .collect();
        let mut bearer_keys = Vec::new();
        let mut has_own_key = false;
        if let Some(token) = &config.token {
            if let Some(key) = &token.signing_key {
                bearer_keys.push(key.verification_key().clone());
                has_own_key = true;
            }
            bearer_keys.extend(token.trusted_keys.iter().cloned());
        }
        let dummy_bcrypt = config
            .users
            .iter()
            .filter_map(|user| match &user.secret {
                Secret::Bcrypt(hash) => Some(hash.cost()),
                Secret::Plain(_) => None,
            })
            .max()
            .map(BcryptHash::dummy);
        Ok(Authenticator {
            anonymous: config.anonymous.clone().into(),
            users,
            bearer_keys,
            has_own_key,
            dummy_bcrypt,
            config,
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// See [`AuthConfig::is_configured`]. When false, [`Authenticator::authorize`] refuses
    /// everything.
    pub fn is_configured(&self) -> bool {
        self.config.is_configured()
    }

    /// The identity behind a request's `Authorization` header (anonymous without one), without
    /// deciding what it may do. Wrong credentials are a 401 even where anonymous access would
    /// do: a client that sends credentials wants to know they are wrong.
    pub fn authenticate(&self, headers: &HeaderMap, now: UnixTime) -> Result<Identity, AuthError> {
        self.authenticate_for(headers, now, None)
    }

    /// Authenticates a request and checks it may do what its route and method require
    /// ([`requirement`]). The result is the caller's [`Identity`], for the checks the engine
    /// makes later ([`Authenticator::can_see`], [`Authenticator::can_mount_from`]) and for the
    /// log; a refusal is an [`AuthError`] (a 401 with a challenge, or a 403).
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        route: &Route,
        method: &Method,
        query: &Query,
        now: UnixTime,
    ) -> Result<Identity, AuthError> {
        if !self.is_configured() {
            return Err(self.unauthorized(
                None,
                FailureReason::NotConfigured,
                &Challenge::default(),
            ));
        }
        let requirement = requirement(route, method);
        let scope = challenge_scope(&requirement, route, method, query);
        let identity = self.authenticate_for(headers, now, scope.as_deref())?;
        self.check(identity, &requirement, method, scope.as_deref())
    }

    /// Whether `identity` may do `action` on `repository`. Everything anonymous callers may do,
    /// every identity may do.
    pub fn can(&self, identity: &Identity, action: Action, repository: &str) -> bool {
        if !self.is_configured() {
            return false;
        }
        grants_allow(&self.anonymous, action, repository)
            || match &identity.rights {
                Rights::Anonymous => false,
                Rights::Grants(grants) => grants_allow(grants, action, repository),
                Rights::Everywhere(actions) => actions.contains(action),
                Rights::Token(token) => token
                    .repositories
                    .iter()
                    .any(|(name, actions)| name == repository && actions.contains(action)),
            }
    }

    /// Whether `_catalog` shows `repository` to `identity`: it may pull, push or delete there.
    /// A bearer token with `registry:catalog:*` sees what its subject may see — for a token
    /// berth issued to a user, that user's repositories; for another issuer's token, every
    /// repository (as the reference registry: the issuer granted the catalog).
    pub fn can_see(&self, identity: &Identity, repository: &str) -> bool {
        if Action::ALL
            .iter()
            .any(|&action| self.can(identity, action, repository))
        {
            return true;
        }
        match &identity.rights {
            Rights::Token(token) if token.catalog => match &token.subject {
                Subject::User(grants) => !grants_actions(grants, repository).is_empty(),
                Subject::External => true,
                Subject::Anonymous | Subject::UnknownOwn => false,
            },
            _ => false,
        }
    }

    /// Whether a cross-repository mount may take its blob from `from` (the `from` query
    /// parameter): `identity` must be able to pull there. Without `from` the engine may look
    /// for the blob in every repository (`Config::mount_without_from`), so that needs pull on
    /// every repository. When this is false the engine should answer as if the blob were not
    /// mountable — a plain upload session (202), as the spec prescribes — not with an error.
    /// (Push on the target is already checked by [`Authenticator::authorize`].)
    pub fn can_mount_from(&self, identity: &Identity, from: Option<&str>) -> bool {
        match from {
            Some(from) => self.can(identity, Action::Pull, from),
            None => {
                if !self.is_configured() {
                    return false;
                }
                let everywhere = |grants: &[Grant]| {
                    grants
                        .iter()
                        .any(|g| g.pattern.is_everything() && g.actions.contains(Action::Pull))
                };
                everywhere(&self.anonymous)
                    || match &identity.rights {
                        Rights::Grants(grants) => everywhere(grants),
                        Rights::Everywhere(actions) => actions.contains(Action::Pull),
                        Rights::Anonymous | Rights::Token(_) => false,
                    }
            }
        }
    }

    /// Decides a request whose identity is established.
    fn check(
        &self,
        identity: Identity,
        requirement: &Requirement,
        method: &Method,
        scope: Option<&str>,
    ) -> Result<Identity, AuthError> {
        let missing = |scope: Option<&str>| {
            self.unauthorized(
                None,
                FailureReason::MissingCredentials,
                &Challenge { scope, error: None },
            )
        };
        match requirement {
            Requirement::Base => {
                if identity.is_anonymous() && !self.anonymous_only() {
                    return Err(missing(None));
                }
                Ok(identity)
            }
            Requirement::Catalog => match &identity.rights {
                Rights::Anonymous if self.anonymous.is_empty() => Err(missing(scope)),
                Rights::Token(token) if !token.catalog => {
                    Err(self.shortfall(&identity, token, None, None, scope))
                }
                _ => Ok(identity),
            },
            Requirement::Repository { name, action } => {
                if self.can(&identity, *action, name) {
                    return Ok(identity);
                }
                // serverless-registry lets a push-only token HEAD (docker checks blobs that way
                // before pushing them).
                if *method == Method::HEAD
                    && *action == Action::Pull
                    && matches!(identity.rights, Rights::Everywhere(a) if a.contains(Action::Push))
                {
                    return Ok(identity);
                }
                match &identity.rights {
                    Rights::Anonymous => Err(missing(scope)),
                    Rights::Token(token) => {
                        Err(self.shortfall(&identity, token, Some(*action), Some(name), scope))
                    }
                    Rights::Grants(_) | Rights::Everywhere(_) => Err(self.denied(
                        &identity,
                        FailureReason::Denied {
                            action: Some(*action),
                            repository: Some(name.clone()),
                        },
                    )),
                }
            }
        }
    }

    /// A bearer token lacks what the request needs: 403 when berth knows the token's subject
    /// could not get it (a configured user without the grant), else 401 `insufficient_scope`
    /// so the client fetches a token for the scope (or logs in, for an anonymous token).
    fn shortfall(
        &self,
        identity: &Identity,
        token: &TokenRights,
        action: Option<Action>,
        repository: Option<&str>,
        scope: Option<&str>,
    ) -> AuthError {
        let hopeless = match (&token.subject, action, repository) {
            (Subject::User(grants), Some(action), Some(repository)) => {
                !grants_allow(grants, action, repository)
                    && !grants_allow(&self.anonymous, action, repository)
            }
            _ => false,
        };
        if hopeless {
            return self.denied(
                identity,
                FailureReason::Denied {
                    action,
                    repository: repository.map(str::to_owned),
                },
            );
        }
        self.unauthorized(
            identity.name().map(loggable_user),
            FailureReason::InsufficientScope {
                action,
                repository: repository.map(str::to_owned),
            },
            &Challenge {
                scope,
                error: Some("insufficient_scope"),
            },
        )
    }

    /// Only anonymous grants are configured: nobody could authenticate, so `/v2/` is open.
    fn anonymous_only(&self) -> bool {
        self.config.users.is_empty()
            && self.config.password_jwt_keys.is_empty()
            && self.config.token.is_none()
            && !self.anonymous.is_empty()
    }

    fn authenticate_for(
        &self,
        headers: &HeaderMap,
        now: UnixTime,
        scope: Option<&str>,
    ) -> Result<Identity, AuthError> {
        let challenge = Challenge { scope, error: None };
        match credentials::from_headers(headers) {
            Ok(None) => Ok(Identity::anonymous()),
            Err(HeaderProblem::Malformed(why)) => {
                Err(self.unauthorized(None, FailureReason::MalformedAuthorization(why), &challenge))
            }
            Err(HeaderProblem::UnsupportedScheme(scheme)) => {
                Err(self.unauthorized(None, FailureReason::UnsupportedScheme(scheme), &challenge))
            }
            Ok(Some(Credentials::Basic { user, password })) => self
                .basic(&user, &password, now)
                .map_err(|failure| self.unauthorized(failure.user, failure.reason, &challenge)),
            Ok(Some(Credentials::Bearer(token))) => self.bearer(&token, now).map_err(|reason| {
                self.unauthorized(
                    None,
                    reason,
                    &Challenge {
                        scope,
                        error: Some("invalid_token"),
                    },
                )
            }),
        }
    }

    /// Checks Basic credentials: a configured user, or a JWT password.
    fn basic(&self, user: &str, password: &[u8], now: UnixTime) -> Result<Identity, AuthFailure> {
        let failure = |reason| AuthFailure {
            user: Some(loggable_user(user)),
            reason,
        };
        // With JWT passwords configured, a password shaped like a JWT is one; so is every
        // password when there are no users (serverless-registry: the user name is ignored).
        let jwt_shaped =
            password.starts_with(b"eyJ") && password.iter().filter(|&&b| b == b'.').count() == 2;
        if !self.config.password_jwt_keys.is_empty() && (jwt_shaped || self.users.is_empty()) {
            return self
                .password_jwt(password, now)
                .map_err(|e| failure(FailureReason::InvalidToken(e)));
        }
        let entry = match self.password_check(user) {
            PasswordCheck::Known(entry) => entry,
            PasswordCheck::Dummy(hash) => {
                // Spend the time, never trust the answer.
                core::hint::black_box(hash.verify(password));
                return Err(failure(FailureReason::UnknownUser));
            }
            PasswordCheck::Unknown => return Err(failure(FailureReason::UnknownUser)),
        };
        let ok = match &entry.secret {
            StoredSecret::Plain(digest) => {
                let given: [u8; 32] = sha2::Sha256::digest(password).into();
                bool::from(given.ct_eq(digest))
            }
            StoredSecret::Bcrypt(hash) => hash.verify(password),
        };
        if !ok {
            return Err(failure(FailureReason::WrongPassword));
        }
        Ok(Identity {
            principal: Principal::User {
                name: user.to_owned(),
            },
            rights: Rights::Grants(entry.grants.clone()),
        })
    }

    /// How the password of Basic user `user` is checked. An unknown name costs a bcrypt
    /// verification at the highest configured cost when any user has a bcrypt hash, so that
    /// timing does not tell which htpasswd names exist. A known plaintext user is checked with
    /// SHA-256 alone: making it pay a bcrypt would cost every request of the users meant for
    /// tight CPU budgets (a Worker's) 90 ms, so with both kinds configured, timing can still tell
    /// a plaintext user's name from an unknown one (configure one kind to hide every name), as
    /// it can a bcrypt user below the highest cost.
    fn password_check(&self, user: &str) -> PasswordCheck<'_> {
        match (self.users.get(user), &self.dummy_bcrypt) {
            (Some(entry), _) => PasswordCheck::Known(entry),
            (None, Some(hash)) => PasswordCheck::Dummy(hash),
            (None, None) => PasswordCheck::Unknown,
        }
    }

    /// A serverless-registry token sent as the Basic password: ES256 (or whatever the
    /// configured key is for), `exp` required, `nbf` honoured, `capabilities` mapped to
    /// actions on every repository (`pull` → pull; `push` → push and delete, as
    /// serverless-registry allows every mutating method with `push`). `aud` is not checked,
    /// as serverless-registry does not check it.
    fn password_jwt(&self, password: &[u8], now: UnixTime) -> Result<Identity, TokenError> {
        #[derive(Deserialize)]
        struct Claims {
            username: Option<serde_json::Value>,
            account_id: Option<serde_json::Value>,
            capabilities: Option<Vec<serde_json::Value>>,
            exp: Option<serde_json::Number>,
            nbf: Option<serde_json::Number>,
        }
        let token = core::str::from_utf8(password)
            .map_err(|_| TokenError::Malformed("password is not a token"))?;
        let keys: Vec<&VerificationKey> = self.config.password_jwt_keys.iter().collect();
        let verified = jwt::verify(token, &keys)?;
        let claims: Claims = serde_json::from_slice(&verified.payload)
            .map_err(|_| TokenError::Malformed("payload is not a JSON object of claims"))?;
        jwt::check_times(
            jwt::numeric_date(&claims.exp),
            jwt::numeric_date(&claims.nbf),
            now.0,
            self.config.leeway_secs,
        )?;
        let capabilities = claims
            .capabilities
            .ok_or(TokenError::MissingClaim("capabilities"))?;
        let actions = capabilities
            .iter()
            .fold(Actions::NONE, |set, c| match c.as_str() {
                Some("pull") => set.union(Actions::PULL),
                Some("push") => set.union(Actions::PUSH).union(Actions::DELETE),
                _ => set,
            });
        if actions.is_empty() {
            return Err(TokenError::NoCapabilities);
        }
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(loggable_user(&s)),
            _ => None,
        };
        Ok(Identity {
            principal: Principal::PasswordJwt {
                username: text(claims.username),
                account_id: text(claims.account_id),
            },
            rights: Rights::Everywhere(actions),
        })
    }

    /// Verifies a registry bearer token.
    fn bearer(&self, token: &str, now: UnixTime) -> Result<Identity, FailureReason> {
        #[derive(Deserialize)]
        struct AccessClaim {
            #[serde(rename = "type")]
            kind: String,
            name: String,
            #[serde(default)]
            actions: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Claims {
            iss: Option<String>,
            sub: Option<String>,
            aud: Option<jwt::Audience>,
            exp: Option<serde_json::Number>,
            nbf: Option<serde_json::Number>,
            jti: Option<String>,
            #[serde(default)]
            access: Vec<AccessClaim>,
        }
        let Some(config) = &self.config.token else {
            return Err(FailureReason::BearerNotConfigured);
        };
        let invalid = FailureReason::InvalidToken;
        let keys: Vec<&VerificationKey> = self.bearer_keys.iter().collect();
        let verified = jwt::verify(token, &keys).map_err(invalid)?;
        let claims: Claims = serde_json::from_slice(&verified.payload).map_err(|_| {
            invalid(TokenError::Malformed(
                "payload is not a JSON object of registry claims",
            ))
        })?;
        let issuer = claims.iss.ok_or(invalid(TokenError::MissingClaim("iss")))?;
        if issuer != config.issuer {
            return Err(invalid(TokenError::WrongIssuer(loggable_user(&issuer))));
        }
        let audience = claims.aud.ok_or(invalid(TokenError::MissingClaim("aud")))?;
        if !audience.contains(&config.service) {
            return Err(invalid(TokenError::WrongAudience));
        }
        jwt::check_times(
            jwt::numeric_date(&claims.exp),
            jwt::numeric_date(&claims.nbf),
            now.0,
            self.config.leeway_secs,
        )
        .map_err(invalid)?;
        let subject_name = claims.sub.unwrap_or_default();
        let own = self.has_own_key && verified.key_index == 0;
        let subject = if !own {
            Subject::External
        } else if subject_name.is_empty() {
            Subject::Anonymous
        } else {
            match self.users.get(&subject_name) {
                Some(entry) => Subject::User(entry.grants.clone()),
                None => Subject::UnknownOwn,
            }
        };
        let mut repositories: Vec<(String, Actions)> = Vec::new();
        let mut catalog = false;
        for entry in claims.access {
            match entry.kind.as_str() {
                "repository" => {
                    let actions = entry.actions.iter().fold(Actions::NONE, |set, a| {
                        if a == "*" {
                            Actions::ALL
                        } else {
                            Action::parse(a).map_or(set, |a| set.with(a))
                        }
                    });
                    match repositories.iter_mut().find(|(n, _)| *n == entry.name) {
                        Some((_, existing)) => *existing = existing.union(actions),
                        None => repositories.push((entry.name, actions)),
                    }
                }
                "registry" if entry.name == "catalog" => {
                    catalog |= entry.actions.iter().any(|a| a == "*");
                }
                _ => {}
            }
        }
        Ok(Identity {
            principal: Principal::Bearer {
                subject: subject_name,
                issuer,
                token_id: claims.jti,
            },
            rights: Rights::Token(Arc::new(TokenRights {
                repositories,
                catalog,
                subject,
            })),
        })
    }

    /// A 401 with the configured challenge.
    fn unauthorized(
        &self,
        user: Option<String>,
        reason: FailureReason,
        challenge: &Challenge<'_>,
    ) -> AuthError {
        let message = match &reason {
            FailureReason::NotConfigured => {
                "authentication is not configured on this registry".to_owned()
            }
            FailureReason::MissingCredentials => "authentication required".to_owned(),
            FailureReason::MalformedAuthorization(why) => {
                format!("malformed Authorization header: {why}")
            }
            FailureReason::UnsupportedScheme(_) => {
                "unsupported Authorization scheme: use Basic or Bearer".to_owned()
            }
            FailureReason::BearerNotConfigured => {
                "bearer tokens are not accepted here: use Basic".to_owned()
            }
            FailureReason::UnknownUser | FailureReason::WrongPassword => {
                "invalid user name or password".to_owned()
            }
            FailureReason::InvalidToken(e) => format!("invalid token: {e}"),
            FailureReason::InsufficientScope { .. } => {
                "the token does not grant access to this resource".to_owned()
            }
            FailureReason::Denied { .. } | FailureReason::BadTokenRequest(_) => {
                "authentication required".to_owned()
            }
        };
        let value = self.challenge(challenge);
        AuthError {
            failure: AuthFailure { user, reason },
            error: RegistryError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
                .with_header(header::WWW_AUTHENTICATE, value),
        }
    }

    /// A 403.
    fn denied(&self, identity: &Identity, reason: FailureReason) -> AuthError {
        let message = match &reason {
            FailureReason::Denied {
                action: Some(action),
                repository: Some(repository),
            } => format!("requested access to the resource is denied: {action} on {repository}"),
            _ => "requested access to the resource is denied".to_owned(),
        };
        AuthError {
            failure: AuthFailure {
                user: identity.name().map(loggable_user),
                reason,
            },
            error: RegistryError::new(StatusCode::FORBIDDEN, ErrorCode::Denied, message),
        }
    }

    /// The `WWW-Authenticate` value: `Bearer` when token auth is configured, else `Basic`.
    fn challenge(&self, challenge: &Challenge<'_>) -> HeaderValue {
        let text = match &self.config.token {
            Some(token) => {
                let mut text = format!(
                    "Bearer realm=\"{}\",service=\"{}\"",
                    token.realm, token.service
                );
                if let Some(scope) = challenge.scope {
                    text.push_str(&format!(",scope=\"{scope}\""));
                }
                if let Some(error) = challenge.error {
                    text.push_str(&format!(",error=\"{error}\""));
                }
                text
            }
            None => format!("Basic realm=\"{}\",charset=\"UTF-8\"", self.config.realm),
        };
        // Realm and service are validated header-safe; scopes hold validated names only.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Basic"))
    }
}

#[derive(Default)]
struct Challenge<'a> {
    scope: Option<&'a str>,
    error: Option<&'a str>,
}

/// The `scope` a 401 names: what a token for this request must grant.
fn challenge_scope(
    requirement: &Requirement,
    route: &Route,
    method: &Method,
    query: &Query,
) -> Option<String> {
    match requirement {
        Requirement::Base => None,
        Requirement::Catalog => Some("registry:catalog:*".to_owned()),
        Requirement::Repository { name, action } => {
            let actions = match action {
                Action::Pull => "pull",
                // Pushing HEADs blobs and manifests too; docker asks for both.
                Action::Push => "pull,push",
                Action::Delete => "delete",
            };
            let mut scope = format!("repository:{name}:{actions}");
            if let Route::UploadStart { .. } = route
                && *method == Method::POST
                && query.get("mount").is_some()
                && let Some(from) = query.get("from")
                && from != name
                && names::is_valid_repository_name(from)
            {
                scope.push_str(&format!(" repository:{from}:pull"));
            }
            Some(scope)
        }
    }
}

// Runtimes share one authenticator across threads.
const _: fn() = || {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Authenticator>();
    is_send_sync::<Identity>();
    is_send_sync::<AuthError>();
};

#[cfg(test)]
mod tests {
    use super::*;

    /// `bob` (bcrypt cost 4) and `carol` (cost 6) from htpasswd, `dave` with a plaintext secret.
    fn authenticator(with_bcrypt: bool) -> Authenticator {
        let mut config = AuthConfig::default();
        config.users.push(User::plain("dave", "d4ve", Vec::new()));
        if with_bcrypt {
            let text = "bob:$2y$04$xO/QdPOLlA8B6.cyhk/d0uUyrrpkODt.YGzh3KcBDgw8d46bNbOrG\n\
                        carol:$2y$06$xO/QdPOLlA8B6.cyhk/d0uUyrrpkODt.YGzh3KcBDgw8d46bNbOrG\n";
            config.add_htpasswd(text, &[]).unwrap();
        }
        Authenticator::new(config).unwrap()
    }

    #[test]
    fn unknown_users_cost_a_bcrypt_at_the_highest_configured_cost() {
        let auth = authenticator(true);
        match auth.password_check("mallory") {
            PasswordCheck::Dummy(hash) => assert_eq!(hash.cost(), 6),
            _ => panic!("an unknown user is refused without the dummy bcrypt"),
        }
        for known in ["bob", "carol", "dave"] {
            assert!(matches!(
                auth.password_check(known),
                PasswordCheck::Known(_)
            ));
        }
        // The dummy never admits anyone, whatever the password.
        for password in [&b""[..], b"d4ve", b"p@ss:word with spaces"] {
            let failure = auth.basic("mallory", password, UnixTime(0)).unwrap_err();
            assert_eq!(failure.reason, FailureReason::UnknownUser);
        }
        assert_eq!(
            auth.basic("bob", b"wrong", UnixTime(0)).unwrap_err().reason,
            FailureReason::WrongPassword
        );
        assert!(auth.basic("dave", b"d4ve", UnixTime(0)).is_ok());
    }

    #[test]
    fn without_bcrypt_users_unknown_users_are_refused_at_once() {
        let auth = authenticator(false);
        assert!(matches!(
            auth.password_check("mallory"),
            PasswordCheck::Unknown
        ));
        let failure = auth.basic("mallory", b"d4ve", UnixTime(0)).unwrap_err();
        assert_eq!(failure.reason, FailureReason::UnknownUser);
    }
}
