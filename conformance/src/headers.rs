//! Parsers for the HTTP header values the suite reads, and the resolution of `Location` values.
//!
//! Each is written to the RFC the distribution spec points at, and is lenient only where real
//! registries differ harmlessly (e.g. `Range: bytes=0-99` where the spec says `Range: 0-99`),
//! so that a failure the suite reports is the registry's and not the parser's.

use std::collections::HashMap;

/// A `WWW-Authenticate` challenge (RFC 9110 §11.6.1): a scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    /// Parameter names are lower-cased (they are case-insensitive); values are unquoted.
    pub params: HashMap<String, String>,
}

/// Parses one challenge, `Scheme k="v", k2=token`. Quoted values may contain commas and
/// backslash-escaped quotes (`scope="repository:a/b:pull,push"` is one parameter).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, mut rest) = match value.find(char::is_whitespace) {
        Some(at) => (&value[..at], value[at..].trim_start()),
        None => (value, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        rest = rest[eq + 1..].trim_start();
        let (val, remaining) = if let Some(quoted) = rest.strip_prefix('"') {
            parse_quoted(quoted)?
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            (rest[..end].trim().to_owned(), &rest[end..])
        };
        params.insert(key, val);
        rest = remaining;
    }
    Some(Challenge {
        scheme: scheme.to_owned(),
        params,
    })
}

/// Reads a quoted-string whose opening quote is already consumed: the unescaped value and
/// what follows the closing quote.
fn parse_quoted(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[at + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

/// One link of a `Link` header (RFC 8288 §3): its target and parameters (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    pub params: HashMap<String, String>,
}

/// Parses a `Link` header value, which may hold several comma-separated links. Targets are in
/// angle brackets and may themselves contain commas and semicolons.
pub fn parse_links(value: &str) -> Option<Vec<Link>> {
    let mut links = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            return Some(links);
        }
        let inner = rest.strip_prefix('<')?;
        let close = inner.find('>')?;
        let target = inner[..close].trim().to_owned();
        rest = &inner[close + 1..];
        let mut params = HashMap::new();
        loop {
            rest = rest.trim_start();
            let Some(after) = rest.strip_prefix(';') else {
                break;
            };
            rest = after.trim_start();
            let name_end = rest
                .find(|c: char| c == '=' || c == ';' || c == ',' || c.is_whitespace())
                .unwrap_or(rest.len());
            let name = rest[..name_end].to_ascii_lowercase();
            rest = rest[name_end..].trim_start();
            let mut val = String::new();
            if let Some(after) = rest.strip_prefix('=') {
                rest = after.trim_start();
                if let Some(quoted) = rest.strip_prefix('"') {
                    let (v, remaining) = parse_quoted(quoted)?;
                    val = v;
                    rest = remaining;
                } else {
                    let end = rest.find([';', ',']).unwrap_or(rest.len());
                    val = rest[..end].trim().to_owned();
                    rest = &rest[end..];
                }
            }
            if !name.is_empty() {
                params.insert(name, val);
            }
        }
        links.push(Link { target, params });
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
}

/// The target of the link whose relation types (`rel`, a space-separated list compared
/// case-insensitively) include `next`.
pub fn next_link(value: &str) -> Option<String> {
    parse_links(value)?
        .into_iter()
        .find(|link| {
            link.params.get("rel").is_some_and(|rel| {
                rel.split_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
            })
        })
        .map(|link| link.target)
}

/// An upload's `Range: 0-<end-of-range>` (spec: "Pushing a blob in chunks"): the first and
/// last byte offsets. Accepts the `bytes=` prefix some registries add.
pub fn parse_upload_range(value: &str) -> Option<(u64, u64)> {
    let value = value.trim();
    let value = value.strip_prefix("bytes=").unwrap_or(value);
    let (first, last) = value.split_once('-')?;
    Some((parse_digits(first)?, parse_digits(last)?))
}

/// A `Content-Range` response header (RFC 9110 §14.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes first-last/complete` (`complete` is `None` for `*`).
    Bytes {
        first: u64,
        last: u64,
        complete: Option<u64>,
    },
    /// `bytes */complete`, sent with a 416.
    Unsatisfied { complete: u64 },
}

pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?.trim_start();
    let (range, complete) = rest.split_once('/')?;
    if range == "*" {
        return Some(ContentRange::Unsatisfied {
            complete: parse_digits(complete)?,
        });
    }
    let (first, last) = range.split_once('-')?;
    let (first, last) = (parse_digits(first)?, parse_digits(last)?);
    let complete = match complete {
        "*" => None,
        n => Some(parse_digits(n)?),
    };
    if last < first || complete.is_some_and(|c| last >= c) {
        return None;
    }
    Some(ContentRange::Bytes {
        first,
        last,
        complete,
    })
}

fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Whether a `Warning` header value is what the spec allows ("Warnings"): one or more
/// `299 - "<text>"`, with `warn-code` 299, `warn-agent` `-` and no `warn-date`.
pub fn is_spec_warning(value: &str) -> bool {
    let mut rest = value.trim();
    loop {
        let Some(after) = rest.strip_prefix("299 - \"") else {
            return false;
        };
        let Some((_, remaining)) = parse_quoted(after) else {
            return false;
        };
        rest = remaining.trim_start();
        if rest.is_empty() {
            return true;
        }
        let Some(after) = rest.strip_prefix(',') else {
            // Anything after the text but another warning is a warn-date or garbage.
            return false;
        };
        rest = after.trim_start();
    }
}

/// Resolves a `Location` (or `Link` target) against the URI of the request it answered
/// (RFC 3986 §5.2). The spec lets a `Location` be absolute or relative; the request URI is
/// either absolute or a path, and a path-only base yields a path-only result.
pub fn resolve_reference(base: &str, reference: &str) -> String {
    let reference = reference.trim();
    if has_scheme(reference) {
        return reference.to_owned();
    }
    let (origin, base_path) = split_origin(base);
    if let Some(rest) = reference.strip_prefix("//") {
        let scheme = origin
            .and_then(|o| o.split_once("://"))
            .map_or("http", |(s, _)| s);
        return format!("{scheme}://{rest}");
    }
    let origin = origin.unwrap_or("");
    let base_path = base_path.split(['?', '#']).next().unwrap_or("");
    if reference.starts_with('/') {
        return format!("{origin}{}", remove_dot_segments(reference));
    }
    if reference.is_empty() {
        return base.to_owned();
    }
    if reference.starts_with('?') {
        return format!("{origin}{base_path}{reference}");
    }
    let directory = match base_path.rfind('/') {
        Some(at) => &base_path[..=at],
        None => "/",
    };
    format!(
        "{origin}{}",
        remove_dot_segments(&format!("{directory}{reference}"))
    )
}

fn has_scheme(text: &str) -> bool {
    match text.find(':') {
        Some(at) if at > 0 => {
            let scheme = &text[..at];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !text[..at].contains('/')
        }
        _ => false,
    }
}

/// `scheme://authority` and the rest, for an absolute URI; `None` and the whole for a path.
fn split_origin(uri: &str) -> (Option<&str>, &str) {
    if !has_scheme(uri) {
        return (None, uri);
    }
    let Some(start) = uri.find("://").map(|at| at + 3) else {
        return (None, uri);
    };
    let end = uri[start..]
        .find(['/', '?', '#'])
        .map_or(uri.len(), |at| start + at);
    (Some(&uri[..end]), &uri[end..])
}

/// RFC 3986 §5.2.4, on a path that may carry a query.
fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find(['?', '#']) {
        Some(at) => path_and_query.split_at(at),
        None => (path_and_query, ""),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i == segments.len() - 1;
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("{}{query}", out.join("/"))
}

/// The repository a `/v2/<name>/...` path addresses, for choosing credentials per
/// repository: `<name>` may contain slashes, so it ends at the last API segment.
pub fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|marker| rest.rfind(marker))
        .max()
        .map(|end| &rest[..end])
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_keep_commas_inside_quotes() {
        let c = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull,push""#).unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
    }

    #[test]
    fn challenges_accept_tokens_spaces_escapes_and_mixed_case_names() {
        let c = parse_challenge(r#"Basic Realm=berth , charset="UTF-8""#).unwrap();
        assert_eq!(c.scheme, "Basic");
        assert_eq!(c.params["realm"], "berth");
        assert_eq!(c.params["charset"], "UTF-8");
        let c = parse_challenge(r#"Bearer realm="a \"quoted\" realm""#).unwrap();
        assert_eq!(c.params["realm"], r#"a "quoted" realm"#);
        let bare = parse_challenge("Negotiate").unwrap();
        assert!(bare.params.is_empty());
        assert_eq!(parse_challenge(""), None);
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
    }

    #[test]
    fn link_headers_give_the_next_target() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=1&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=1&last=b")
        );
        assert_eq!(
            next_link(r#"<https://x/a>; rel="prev", <https://x/b>; rel="next""#).as_deref(),
            Some("https://x/b")
        );
        assert_eq!(
            next_link("<https://x/c,d;e>;title=\"a, b\";rel=NEXT").as_deref(),
            Some("https://x/c,d;e")
        );
        assert_eq!(next_link(r#"<x>; rel="prev next""#).as_deref(), Some("x"));
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
        assert_eq!(next_link("<x>; rel=\"nextpage\""), None);
        assert_eq!(next_link("x; rel=next"), None);
    }

    #[test]
    fn links_parse_every_parameter() {
        let links = parse_links(r#"<a>; rel="next"; type=text, <b>"#).unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].params["type"], "text");
        assert_eq!(links[1].target, "b");
        assert!(links[1].params.is_empty());
        assert_eq!(parse_links("<a> junk"), None);
    }

    #[test]
    fn upload_ranges_are_first_and_last_offsets() {
        assert_eq!(parse_upload_range("0-99"), Some((0, 99)));
        assert_eq!(parse_upload_range("bytes=0-0"), Some((0, 0)));
        assert_eq!(
            parse_upload_range(" 0-18446744073709551615 "),
            Some((0, u64::MAX))
        );
        assert_eq!(parse_upload_range("0-"), None);
        assert_eq!(parse_upload_range("-5"), None);
        assert_eq!(parse_upload_range("0-+5"), None);
        assert_eq!(parse_upload_range("a-b"), None);
    }

    #[test]
    fn content_ranges_follow_rfc_9110() {
        assert_eq!(
            parse_content_range("bytes 10-19/4096"),
            Some(ContentRange::Bytes {
                first: 10,
                last: 19,
                complete: Some(4096)
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-0/*"),
            Some(ContentRange::Bytes {
                first: 0,
                last: 0,
                complete: None
            })
        );
        assert_eq!(
            parse_content_range("bytes */4096"),
            Some(ContentRange::Unsatisfied { complete: 4096 })
        );
        assert_eq!(parse_content_range("bytes 19-10/4096"), None);
        assert_eq!(parse_content_range("bytes 0-4096/4096"), None);
        assert_eq!(parse_content_range("10-19/4096"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range("bytes 1-2"), None);
    }

    #[test]
    fn warnings_must_be_299_dash_and_no_date() {
        assert!(is_spec_warning(
            r#"299 - "Your auth token will expire in 30 seconds.""#
        ));
        assert!(is_spec_warning(r#"299 - "a, b", 299 - "c \"d\"""#));
        assert!(!is_spec_warning(r#"199 - "misc""#));
        assert!(!is_spec_warning(r#"299 registry "agent""#));
        assert!(!is_spec_warning(
            r#"299 - "dated" "Sat, 25 Aug 2012 23:34:45 GMT""#
        ));
        assert!(!is_spec_warning(r#"299 - "unterminated"#));
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base = "/v2/a/b/blobs/uploads/";
        assert_eq!(
            resolve_reference(base, "/v2/a/b/blobs/uploads/u1?state=x"),
            "/v2/a/b/blobs/uploads/u1?state=x"
        );
        assert_eq!(
            resolve_reference(base, "u1?_state=x"),
            "/v2/a/b/blobs/uploads/u1?_state=x"
        );
        assert_eq!(
            resolve_reference("/v2/a/blobs/uploads/u1?x=1", "../sha256:ab"),
            "/v2/a/blobs/sha256:ab"
        );
        assert_eq!(
            resolve_reference(base, "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u2"),
            "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u2"
        );
        assert_eq!(
            resolve_reference(
                "https://r.example:5000/v2/a/blobs/uploads/",
                "/v2/a/blobs/uploads/u3"
            ),
            "https://r.example:5000/v2/a/blobs/uploads/u3"
        );
        assert_eq!(
            resolve_reference("https://r.example/v2/a/blobs/uploads/", "//cdn.example/u4"),
            "https://cdn.example/u4"
        );
        assert_eq!(
            resolve_reference("/v2/a/blobs/uploads/u1?x=1", "?x=2"),
            "/v2/a/blobs/uploads/u1?x=2"
        );
        assert_eq!(
            resolve_reference("/v2/a/tags/list", "./list?n=1&last=b"),
            "/v2/a/tags/list?n=1&last=b"
        );
    }

    #[test]
    fn repositories_are_read_from_api_paths() {
        assert_eq!(repository_of("/v2/a/b/manifests/latest"), Some("a/b"));
        assert_eq!(repository_of("/v2/a/blobs/uploads/u1"), Some("a"));
        assert_eq!(
            repository_of("/v2/x/blobs/y/blobs/sha256:1"),
            Some("x/blobs/y")
        );
        assert_eq!(repository_of("/v2/a/tags/list"), Some("a"));
        assert_eq!(repository_of("/v2/"), None);
        assert_eq!(repository_of("/token"), None);
    }
}
