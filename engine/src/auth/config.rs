//! Authentication configuration: users, anonymous grants, tokens.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::htpasswd::{BcryptHash, parse_htpasswd};
use super::keys::{SigningKey, VerificationKey};
use super::permissions::{Actions, Grant};

/// A configuration that cannot be used; the message says which setting and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfigError(pub String);

impl AuthConfigError {
    pub(crate) fn new(message: impl Into<String>) -> AuthConfigError {
        AuthConfigError(message.into())
    }
}

impl core::fmt::Display for AuthConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthConfigError {}

/// How a user proves who they are.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A plaintext password (a Worker secret, an environment variable). Compared in constant
    /// time (by SHA-256 digest, so the length does not leak either).
    Plain(String),
    /// A bcrypt hash from an htpasswd file.
    Bcrypt(BcryptHash),
}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Secret::Plain(_) => f.write_str("Plain(<redacted>)"),
            Secret::Bcrypt(hash) => hash.fmt(f),
        }
    }
}

/// A user who logs in with HTTP Basic (directly, or at the token endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Non-empty, no `:` (Basic cannot carry it), no control characters.
    pub name: String,
    pub secret: Secret,
    /// What the user may do, beyond what anonymous callers may.
    pub grants: Vec<Grant>,
}

impl User {
    pub fn new(name: impl Into<String>, secret: Secret, grants: Vec<Grant>) -> User {
        User {
            name: name.into(),
            secret,
            grants,
        }
    }

    /// A user with a plaintext password.
    pub fn plain(name: impl Into<String>, password: impl Into<String>, grants: Vec<Grant>) -> User {
        User::new(name, Secret::Plain(password.into()), grants)
    }
}

/// The Docker registry token flow: berth's own token endpoint, tokens from another issuer, or
/// both.
///
/// When present, a 401 carries a `Bearer` challenge pointing clients at `realm`, and
/// `Authorization: Bearer` tokens are accepted if signed by `signing_key` (berth's own) or
/// one of `trusted_keys`, issued by `issuer`, for `service`, and within their validity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// The absolute URL clients fetch tokens from, e.g. `https://registry.example.com/token`
    /// (berth's own endpoint at [`TokenConfig::path`]) or an external token server.
    pub realm: String,
    /// The service name: the `service` of challenges and the `aud` of tokens, usually the
    /// registry's host name.
    pub service: String,
    /// The `iss` berth writes and requires.
    pub issuer: String,
    /// The path of berth's token endpoint (default `/token`; outside `/v2/`, which belongs to
    /// the distribution API). Served only when `signing_key` is set.
    pub path: String,
    /// Berth's key for issuing tokens. `None`: berth only verifies tokens someone else issues.
    pub signing_key: Option<SigningKey>,
    /// Further keys whose tokens are accepted (an external issuer, a previous key during
    /// rotation). Tokens must still carry `issuer` and `service`.
    pub trusted_keys: Vec<VerificationKey>,
    /// Lifetime of issued tokens, in seconds (default 300).
    pub ttl_secs: u64,
}

impl TokenConfig {
    /// A token configuration with the defaults: path `/token`, TTL 300 s, no keys yet.
    pub fn new(
        realm: impl Into<String>,
        service: impl Into<String>,
        issuer: impl Into<String>,
    ) -> TokenConfig {
        TokenConfig {
            realm: realm.into(),
            service: service.into(),
            issuer: issuer.into(),
            path: "/token".to_owned(),
            signing_key: None,
            trusted_keys: Vec::new(),
            ttl_secs: 300,
        }
    }

    pub fn with_signing_key(mut self, key: SigningKey) -> TokenConfig {
        self.signing_key = Some(key);
        self
    }
}

/// Who may do what. [`AuthConfig::default`] configures nothing: see [`AuthConfig::is_configured`].
///
/// ```
/// use berth_engine::auth::{AuthConfig, Grant, SigningKey, TokenConfig, User};
///
/// let mut config = AuthConfig::default();
/// config.users.push(User::plain("ci", "s3cret", vec![Grant::parse("*:pull,push").unwrap()]));
/// config.users.push(User::plain("alice", "pw", vec![Grant::parse("team-a/*:*").unwrap()]));
/// config.anonymous.push(Grant::parse("public/*:pull").unwrap());
/// // In production: SigningKey::parse(&pem_or_jwk_text).
/// let key = SigningKey::es256_from_bytes(&[7; 32]).unwrap();
/// config.token = Some(
///     TokenConfig::new("https://registry.example.com/token", "registry.example.com", "berth")
///         .with_signing_key(key),
/// );
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// The realm of `Basic` challenges (default `berth`).
    pub realm: String,
    /// Users who log in with Basic credentials.
    pub users: Vec<User>,
    /// What callers without credentials may do (e.g. `public/*:pull`). Everyone, logged in or
    /// not, may do at least this.
    pub anonymous: Vec<Grant>,
    /// Keys that verify a JWT sent as the Basic *password* (serverless-registry's
    /// `JWT_REGISTRY_TOKENS_PUBLIC_KEY`); the token's `capabilities` claim says what it may do,
    /// on every repository.
    pub password_jwt_keys: Vec<VerificationKey>,
    /// The registry token flow, if enabled.
    pub token: Option<TokenConfig>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 30).
    pub leeway_secs: u64,
}

impl Default for AuthConfig {
    /// Nothing configured: no users, no anonymous access, no tokens.
    fn default() -> AuthConfig {
        AuthConfig {
            realm: "berth".to_owned(),
            users: Vec::new(),
            anonymous: Vec::new(),
            password_jwt_keys: Vec::new(),
            token: None,
            leeway_secs: 30,
        }
    }
}

/// Base64 in either alphabet, padded or not: what `@cfworker/base64url`'s loose decoding of a
/// `btoa` value accepts, and what people paste.
fn lenient_base64(text: &str) -> Option<Vec<u8>> {
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    GeneralPurpose::new(&alphabet::STANDARD, config)
        .decode(&compact)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, config).decode(&compact))
        .ok()
}

impl AuthConfig {
    /// Whether anything is configured. When not, the *runtime* decides what happens: the
    /// Worker refuses everything unless anonymous access is explicitly enabled, the server
    /// allows anonymous access only on loopback (and then uses [`AuthConfig::open`]). An
    /// [`super::Authenticator`] built from an unconfigured `AuthConfig` refuses every request
    /// (fail closed), so forgetting to configure never opens the registry.
    pub fn is_configured(&self) -> bool {
        !self.users.is_empty()
            || !self.anonymous.is_empty()
            || !self.password_jwt_keys.is_empty()
            || self.token.is_some()
    }

    /// Explicitly open: anyone may pull, push and delete anything. For a runtime that decided
    /// no authentication is wanted (the server on loopback).
    pub fn open() -> AuthConfig {
        AuthConfig {
            anonymous: vec![Grant::everything(Actions::ALL)],
            ..AuthConfig::default()
        }
    }

    /// Adds the users of an htpasswd file (its text), each with `grants`. The reference
    /// registry lets every htpasswd user do everything; pass `Grant::everything(Actions::ALL)`
    /// for that.
    pub fn add_htpasswd(&mut self, text: &str, grants: &[Grant]) -> Result<(), AuthConfigError> {
        for (name, hash) in parse_htpasswd(text)? {
            self.users
                .push(User::new(name, Secret::Bcrypt(hash), grants.to_vec()));
        }
        Ok(())
    }

    /// The configuration a cloudflare/serverless-registry deployment has, from its Worker
    /// variables, so that its secrets work unchanged:
    ///
    /// - `JWT_REGISTRY_TOKENS_PUBLIC_KEY`: the base64 of a public JWK (what its
    ///   `RegistryTokens.createPrivateAndPublicKey` produces: `btoa(JSON.stringify(jwk))` of a
    ///   P-256 key). Basic passwords are then JWTs (ES256) verified with it; the user name is
    ///   ignored. berth also accepts base64 of a PEM, or the JWK/PEM text itself.
    /// - else `USERNAME`/`PASSWORD`: a user who may pull, push and delete everything, and
    ///   `READONLY_USERNAME`/`READONLY_PASSWORD`: a user who may pull everything.
    ///
    /// As in serverless-registry, an empty variable counts as unset, and when the JWT key is
    /// set the user/password variables are ignored. Otherwise a user without its password (or
    /// the reverse) is an error. Nothing set gives an unconfigured `AuthConfig`.
    pub fn from_serverless_registry_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<AuthConfig, AuthConfigError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut config = AuthConfig::default();
        if let Some(key) = var("JWT_REGISTRY_TOKENS_PUBLIC_KEY") {
            config.password_jwt_keys = vec![parse_serverless_key(&key)?];
            return Ok(config);
        }
        // Half of a pair is refused rather than dropped: a runtime that then found nothing
        // configured could run open (the Worker with BERTH_ALLOW_ANONYMOUS, `berth serve` on
        // loopback) when its operator meant it to ask for credentials.
        for (user, password) in [
            ("USERNAME", "PASSWORD"),
            ("READONLY_USERNAME", "READONLY_PASSWORD"),
        ] {
            let (with, without) = match (var(user).is_some(), var(password).is_some()) {
                (true, false) => (user, password),
                (false, true) => (password, user),
                _ => continue,
            };
            return Err(AuthConfigError::new(format!(
                "{with} is set without {without}: set both or neither"
            )));
        }
        if let (Some(user), Some(password)) = (var("USERNAME"), var("PASSWORD")) {
            config.users.push(User::plain(
                user,
                password,
                vec![Grant::everything(Actions::ALL)],
            ));
        }
        if let (Some(user), Some(password)) = (var("READONLY_USERNAME"), var("READONLY_PASSWORD")) {
            // serverless-registry matches the first user with the name, so a read-only user
            // named like the read-write one can never log in; keep it that way.
            if config.users.iter().all(|u| u.name != user) {
                config.users.push(User::plain(
                    user,
                    password,
                    vec![Grant::everything(Actions::PULL)],
                ));
            }
        }
        Ok(config)
    }

    /// Checks every setting; [`super::Authenticator::new`] calls it.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        header_safe("realm", &self.realm)?;
        for (i, user) in self.users.iter().enumerate() {
            if user.name.is_empty()
                || user.name.contains(':')
                || user.name.chars().any(char::is_control)
            {
                return Err(AuthConfigError::new(format!(
                    "invalid user name {:?}: it must be non-empty, without ':' or control \
                     characters",
                    user.name
                )));
            }
            if self.users[..i].iter().any(|u| u.name == user.name) {
                return Err(AuthConfigError::new(format!(
                    "user {:?} is configured twice",
                    user.name
                )));
            }
        }
        if self.leeway_secs > 3600 {
            return Err(AuthConfigError::new(
                "leeway is more than an hour: that is not clock skew",
            ));
        }
        if let Some(token) = &self.token {
            header_safe("token realm", &token.realm)?;
            header_safe("token service", &token.service)?;
            if token.realm.is_empty() || token.service.is_empty() || token.issuer.is_empty() {
                return Err(AuthConfigError::new(
                    "token realm, service and issuer must all be set",
                ));
            }
            if token.signing_key.is_none() && token.trusted_keys.is_empty() {
                return Err(AuthConfigError::new(
                    "token auth needs a signing key (berth issues tokens) or trusted keys \
                     (another issuer does)",
                ));
            }
            if token.ttl_secs == 0 || token.ttl_secs > 24 * 3600 {
                return Err(AuthConfigError::new(format!(
                    "token TTL {} s is outside 1..=86400",
                    token.ttl_secs
                )));
            }
            if !token.path.starts_with('/')
                || token.path == "/v2"
                || token.path.starts_with("/v2/")
                || token.path.contains(['?', '#'])
            {
                return Err(AuthConfigError::new(format!(
                    "token endpoint path {:?} must start with '/' and lie outside /v2/",
                    token.path
                )));
            }
        }
        Ok(())
    }
}

/// Reads serverless-registry's `JWT_REGISTRY_TOKENS_PUBLIC_KEY`.
fn parse_serverless_key(value: &str) -> Result<VerificationKey, AuthConfigError> {
    let value = value.trim();
    let text = if value.starts_with('{') || value.starts_with("-----BEGIN") {
        value.to_owned()
    } else {
        lenient_base64(value)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                AuthConfigError::new(
                    "JWT_REGISTRY_TOKENS_PUBLIC_KEY is not base64 of a JWK or PEM key",
                )
            })?
    };
    VerificationKey::parse(&text)
        .map_err(|e| AuthConfigError::new(format!("JWT_REGISTRY_TOKENS_PUBLIC_KEY: {e}")))
}

/// Text that goes into a quoted `WWW-Authenticate` parameter.
fn header_safe(what: &str, value: &str) -> Result<(), AuthConfigError> {
    if value
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control() || !c.is_ascii())
    {
        Err(AuthConfigError::new(format!(
            "{what} {value:?} must be ASCII without quotes, backslashes or control characters"
        )))
    } else {
        Ok(())
    }
}
