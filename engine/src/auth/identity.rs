//! Who a request is, and why a request was refused.

use std::sync::Arc;

use super::jwt::TokenError;
use super::permissions::{Action, Actions, Grant};
use crate::error::RegistryError;

/// Who made a request, as established by [`super::Authenticator::authorize`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// A configured user, by Basic credentials.
    User { name: String },
    /// A JWT sent as the Basic password (serverless-registry tokens), with its `username` and
    /// `account_id` claims if it had them.
    PasswordJwt {
        username: Option<String>,
        account_id: Option<String>,
    },
    /// A registry bearer token: its `sub` (empty for anonymous tokens), `iss` and `jti`.
    Bearer {
        subject: String,
        issuer: String,
        token_id: Option<String>,
    },
}

/// What a bearer token's subject may do, when berth can know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Subject {
    /// A token berth issued to an anonymous caller.
    Anonymous,
    /// A token berth issued to a configured user: the user's current grants.
    User(Arc<[Grant]>),
    /// A token berth issued to a subject it cannot look up now (a password-JWT caller, a
    /// user since removed).
    UnknownOwn,
    /// A token another issuer signed: only the issuer knows.
    External,
}

/// The access entries of a verified bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenRights {
    /// `(repository, actions)` pairs from `access` entries of type `repository`.
    pub repositories: Vec<(String, Actions)>,
    /// Whether the token has `registry:catalog:*`.
    pub catalog: bool,
    pub subject: Subject,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rights {
    /// Only what anonymous callers may do.
    Anonymous,
    /// A configured user's grants.
    Grants(Arc<[Grant]>),
    /// These actions on every repository (a password JWT's `capabilities`).
    Everywhere(Actions),
    Token(Arc<TokenRights>),
}

/// An authenticated (or anonymous) caller and what it may do. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub(crate) principal: Principal,
    pub(crate) rights: Rights,
}

impl Identity {
    pub(crate) fn anonymous() -> Identity {
        Identity {
            principal: Principal::Anonymous,
            rights: Rights::Anonymous,
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn is_anonymous(&self) -> bool {
        self.principal == Principal::Anonymous
    }

    /// A name for logs: the user, the token subject, the JWT's user name; `None` when
    /// anonymous.
    pub fn name(&self) -> Option<&str> {
        match &self.principal {
            Principal::Anonymous => None,
            Principal::User { name } => Some(name),
            Principal::PasswordJwt {
                username,
                account_id,
            } => username.as_deref().or(account_id.as_deref()),
            Principal::Bearer { subject, .. } => Some(subject),
        }
    }
}

impl core::fmt::Display for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.principal {
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::User { name } => write!(f, "user {name:?}"),
            Principal::PasswordJwt {
                username,
                account_id,
            } => write!(
                f,
                "password JWT (username {username:?}, account {account_id:?})"
            ),
            Principal::Bearer {
                subject, issuer, ..
            } => write!(f, "bearer token (sub {subject:?}, iss {issuer:?})"),
        }
    }
}

/// Why a request was refused, for the runtime's log. Never contains a password or a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFailure {
    /// The user name the caller claimed or the token named (cut to 64 characters), if any.
    pub user: Option<String>,
    pub reason: FailureReason,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// The authenticator was built from an [`super::AuthConfig`] with nothing configured.
    NotConfigured,
    /// No credentials, and anonymous callers may not do this.
    MissingCredentials,
    /// The `Authorization` header could not be read.
    MalformedAuthorization(&'static str),
    /// An `Authorization` scheme other than Basic and Bearer (the scheme, cut to 32 chars).
    UnsupportedScheme(String),
    /// A Bearer token where no token auth is configured.
    BearerNotConfigured,
    /// No such user.
    UnknownUser,
    /// The user exists; the password is wrong.
    WrongPassword,
    /// A token (bearer, or JWT password) was refused.
    InvalidToken(TokenError),
    /// Authenticated, but not allowed (403). `action`/`repository` are `None` for the catalog.
    Denied {
        action: Option<Action>,
        repository: Option<String>,
    },
    /// A valid bearer token without the scope this request needs (401 `insufficient_scope`:
    /// the client should fetch a token for the scope).
    InsufficientScope {
        action: Option<Action>,
        repository: Option<String>,
    },
    /// A token endpoint request that could not be served.
    BadTokenRequest(String),
}

impl core::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "user {user:?}: ")?;
        }
        let target =
            |action: &Option<Action>, repository: &Option<String>| match (action, repository) {
                (Some(a), Some(r)) => format!("{a} on {r:?}"),
                _ => "the catalog".to_owned(),
            };
        match &self.reason {
            FailureReason::NotConfigured => f.write_str("authentication is not configured"),
            FailureReason::MissingCredentials => f.write_str("no credentials"),
            FailureReason::MalformedAuthorization(why) => write!(f, "{why}"),
            FailureReason::UnsupportedScheme(s) => {
                write!(f, "unsupported Authorization scheme {s:?}")
            }
            FailureReason::BearerNotConfigured => {
                f.write_str("bearer token sent but token auth is not configured")
            }
            FailureReason::UnknownUser => f.write_str("unknown user"),
            FailureReason::WrongPassword => f.write_str("wrong password"),
            FailureReason::InvalidToken(e) => write!(f, "{e}"),
            FailureReason::Denied { action, repository } => {
                write!(f, "denied {}", target(action, repository))
            }
            FailureReason::InsufficientScope { action, repository } => {
                write!(f, "token lacks scope for {}", target(action, repository))
            }
            FailureReason::BadTokenRequest(why) => write!(f, "bad token request: {why}"),
        }
    }
}

/// A refusal: what to log ([`AuthFailure`]) and what to answer ([`RegistryError`], with its
/// `WWW-Authenticate` challenge on a 401). Converts into `RegistryError` for `?`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthError {
    pub failure: AuthFailure,
    pub error: RegistryError,
}

impl From<AuthError> for RegistryError {
    fn from(e: AuthError) -> RegistryError {
        e.error
    }
}

impl core::fmt::Display for AuthError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.error, self.failure)
    }
}

impl std::error::Error for AuthError {}

/// A user name as it goes into an [`AuthFailure`]: at most 64 characters.
pub(crate) fn loggable_user(name: &str) -> String {
    name.chars().take(64).collect()
}
