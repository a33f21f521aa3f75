//! The gate every request passes before it is routed: the token endpoint, authentication and
//! authorization ([`crate::auth`]), and what an identity changes about the request it made
//! (which `_catalog` entries it sees, whether a mount may take its blob from elsewhere).

use std::sync::Arc;

use bytes::BytesMut;
use http::Method;

use crate::auth::{AuthError, Authenticator, Identity, MAX_TOKEN_FORM_LEN};
use crate::config::Config;
use crate::context::Cx;
use crate::error::RegistryError;
use crate::response::Response;
use crate::route::Route;

/// A refusal, or the answer to a request that never reached a route.
pub(crate) enum Refusal {
    Auth(AuthError),
    Other(RegistryError),
}

impl From<RegistryError> for Refusal {
    fn from(e: RegistryError) -> Refusal {
        Refusal::Other(e)
    }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Refusal {
        Refusal::Auth(e)
    }
}

impl Refusal {
    pub(crate) fn into_response(self) -> Response {
        match self {
            Refusal::Auth(e) => refused(e),
            Refusal::Other(e) => e.into_response(),
        }
    }
}

/// The response to an authentication or authorization refusal, carrying its
/// [`AuthFailure`](crate::auth::AuthFailure)
/// in the response's extensions for the runtime's log.
pub(crate) fn refused(e: AuthError) -> Response {
    let mut response = e.error.into_response();
    response.extensions_mut().insert(e.failure);
    response
}

/// Serves the token endpoint (`GET`, or `POST` with an OAuth2 form).
pub(crate) async fn token_endpoint(cx: &Cx, auth: &Authenticator) -> Result<Response, Refusal> {
    let body = if cx.method == Method::POST {
        read_form(cx).await?
    } else {
        Vec::new()
    };
    Ok(auth.issue_token(
        &cx.method,
        &cx.headers,
        &cx.query,
        &body,
        cx.now,
        &cx.entropy,
    )?)
}

/// The token request's form body, read through [`crate::Effect::ReadBody`]; at most one byte
/// more than [`MAX_TOKEN_FORM_LEN`] is kept (enough for `issue_token` to answer 413), and the
/// rest is left unread.
async fn read_form(cx: &Cx) -> Result<Vec<u8>, RegistryError> {
    let mut form = BytesMut::new();
    while let Some(chunk) = cx.store.read_body().await? {
        let room = MAX_TOKEN_FORM_LEN + 1 - form.len();
        form.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if form.len() > MAX_TOKEN_FORM_LEN {
            break;
        }
    }
    Ok(form.to_vec())
}

/// Decides a routed request, and adjusts it to the caller's rights: a cross-repository mount
/// whose source the caller may not pull from becomes a plain upload session (the spec's
/// fallback), and a mount without `from` searches other repositories only for a caller who
/// may pull from every repository.
pub(crate) fn admit(
    cx: &mut Cx,
    auth: &Authenticator,
    route: &Route,
) -> Result<Identity, AuthError> {
    let identity = auth.authorize(&cx.headers, route, &cx.method, &cx.query, cx.now)?;
    if let Route::UploadStart { .. } = route
        && cx.method == Method::POST
        && cx.query.get("mount").is_some()
    {
        if let Some(from) = cx.query.get("from")
            && !auth.can_mount_from(&identity, Some(from))
        {
            cx.query.remove("mount");
            cx.query.remove("from");
        }
        if cx.config.mount_without_from && !auth.can_mount_from(&identity, None) {
            cx.config = Arc::new(Config {
                mount_without_from: false,
                ..(*cx.config).clone()
            });
        }
    }
    Ok(identity)
}
