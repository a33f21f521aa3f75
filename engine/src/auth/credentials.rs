//! Reading the `Authorization` header.

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderMap;

/// Longest `Authorization` header read, in bytes. Tokens berth issues are well under 2 KiB.
pub const MAX_AUTHORIZATION_LEN: usize = 8192;

/// Standard base64, padded or not (clients differ).
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a request presented.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    Basic { user: String, password: Vec<u8> },
    Bearer(String),
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Credentials::Basic { user, .. } => write!(f, "Basic({user:?}, <password>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<token>)"),
        }
    }
}

/// Why an `Authorization` header could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// Not Basic or Bearer; the scheme, cut to 32 characters.
    UnsupportedScheme(String),
    Malformed(&'static str),
}

/// The credentials in the request's `Authorization` header, if it has one.
pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<Credentials>, HeaderProblem> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HeaderProblem::Malformed(
            "more than one Authorization header",
        ));
    }
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(HeaderProblem::Malformed("Authorization header too long"));
    }
    let value = value
        .to_str()
        .map_err(|_| HeaderProblem::Malformed("Authorization header is not visible ASCII"))?
        .trim();
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(if value.is_empty() {
            HeaderProblem::Malformed("empty Authorization header")
        } else {
            HeaderProblem::Malformed("Authorization header has no scheme and credentials")
        });
    };
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        basic(rest)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        bearer(rest).map(Some)
    } else {
        Err(HeaderProblem::UnsupportedScheme(
            scheme.chars().take(32).collect(),
        ))
    }
}

/// Basic credentials; `None` for an empty user name with an empty password (`Basic Og==`),
/// which is how skopeo and podman answer a Basic challenge when they have no credentials
/// (even with `--src-no-creds`): that is an anonymous request, not a login as user `""`, so it
/// gets what anonymous callers may do and no failed login is reported.
fn basic(encoded: &str) -> Result<Option<Credentials>, HeaderProblem> {
    let decoded = BASIC_BASE64
        .decode(encoded)
        .map_err(|_| HeaderProblem::Malformed("Basic credentials are not base64"))?;
    if decoded == b":" {
        return Ok(None);
    }
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(HeaderProblem::Malformed("Basic credentials have no ':'"))?;
    // RFC 7617: neither part may contain control characters.
    if decoded.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(HeaderProblem::Malformed(
            "Basic credentials contain control characters",
        ));
    }
    let (user, password) = decoded.split_at(colon);
    let user = String::from_utf8(user.to_vec())
        .map_err(|_| HeaderProblem::Malformed("Basic user name is not UTF-8"))?;
    Ok(Some(Credentials::Basic {
        user,
        password: password[1..].to_vec(),
    }))
}

fn bearer(token: &str) -> Result<Credentials, HeaderProblem> {
    // RFC 6750 token68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    let valid = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if valid {
        Ok(Credentials::Bearer(token.to_owned()))
    } else {
        Err(HeaderProblem::Malformed("Bearer token is not a token68"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &[u8]) -> Result<Option<Credentials>, HeaderProblem> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(value).unwrap(),
        );
        from_headers(&headers)
    }

    #[test]
    fn basic_and_bearer() {
        // "alice:pa:ss" — the password may contain colons.
        assert_eq!(
            parse(b"Basic YWxpY2U6cGE6c3M=").unwrap(),
            Some(Credentials::Basic {
                user: "alice".into(),
                password: b"pa:ss".to_vec()
            })
        );
        assert_eq!(
            parse(b"basic   YWxpY2U6cGE6c3M").unwrap(),
            Some(Credentials::Basic {
                user: "alice".into(),
                password: b"pa:ss".to_vec()
            })
        );
        assert_eq!(
            parse(b"Bearer abc.def.ghi").unwrap(),
            Some(Credentials::Bearer("abc.def.ghi".into()))
        );
        assert_eq!(from_headers(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn empty_basic_credentials_are_none() {
        for value in [&b"Basic Og=="[..], b"Basic Og", b"basic  Og=="] {
            assert_eq!(
                parse(value).unwrap(),
                None,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        // Only both parts empty: a user without a password, or a password without a user
        // (a serverless-registry JWT password ignores the user name), are credentials.
        assert_eq!(
            parse(b"Basic YWxpY2U6").unwrap(),
            Some(Credentials::Basic {
                user: "alice".into(),
                password: Vec::new()
            })
        );
        assert_eq!(
            parse(b"Basic OnB3").unwrap(),
            Some(Credentials::Basic {
                user: String::new(),
                password: b"pw".to_vec()
            })
        );
    }

    #[test]
    fn malformed() {
        for value in [
            &b"YWxpY2U6cGFzcw=="[..],
            b"Basic",
            b"Basic !!!",
            b"Basic YWxpY2U=",
            b"Bearer a b",
            b"Basic YWxpY2U6cGEKc3M=",
        ] {
            assert!(
                matches!(parse(value), Err(HeaderProblem::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        assert_eq!(
            parse(b"Digest x=y"),
            Err(HeaderProblem::UnsupportedScheme("Digest".into()))
        );
        let huge = format!("Basic {}", "A".repeat(MAX_AUTHORIZATION_LEN));
        assert_eq!(
            parse(huge.as_bytes()),
            Err(HeaderProblem::Malformed("Authorization header too long"))
        );
    }
}
