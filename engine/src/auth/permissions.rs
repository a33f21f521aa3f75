//! What may be done: actions, repository patterns, grants, and what each request requires.

use http::Method;

use super::config::AuthConfigError;
use crate::route::Route;

/// One thing a caller may do to a repository. The three are independent: a grant of `push`
/// does not imply `delete`, and neither implies `pull`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers (GET, HEAD).
    Pull,
    /// Upload blobs and write manifests and tags (POST, PATCH, PUT; cancelling an upload).
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// Every action, in the canonical order used in tokens and messages.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    /// The name used in token scopes (`repository:<name>:pull,push`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// The action a scope or grant names, if it names one of the three.
    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }
}

impl core::fmt::Display for Action {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Action`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const PULL: Actions = Actions(1);
    pub const PUSH: Actions = Actions(2);
    pub const DELETE: Actions = Actions(4);
    /// Pull, push and delete.
    pub const ALL: Actions = Actions(7);

    pub fn of(actions: &[Action]) -> Actions {
        actions.iter().fold(Actions::NONE, |set, &a| set.with(a))
    }

    pub fn with(self, action: Action) -> Actions {
        Actions(self.0 | action.bit())
    }

    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub fn intersection(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions in the set, in canonical order (pull, push, delete).
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |&a| self.contains(a))
    }

    /// Parses a comma-separated list (`pull,push`), or `*` for all three. Whitespace around
    /// items is ignored; an unknown action is an error (a typo must not silently grant less, or
    /// more, than meant).
    pub fn parse(text: &str) -> Result<Actions, AuthConfigError> {
        let mut set = Actions::NONE;
        for item in text.split(',').map(str::trim) {
            if item == "*" {
                set = Actions::ALL;
            } else if let Some(action) = Action::parse(item) {
                set = set.with(action);
            } else {
                return Err(AuthConfigError::new(format!(
                    "unknown action {item:?} in {text:?}: actions are pull, push, delete or *"
                )));
            }
        }
        Ok(set)
    }
}

impl core::fmt::Display for Actions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, action) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(action.as_str())?;
        }
        Ok(())
    }
}

impl core::fmt::Debug for Actions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Actions({self})")
    }
}

/// A repository name pattern: an exact name (`team-a/app`), or a glob in which `*` matches any
/// run of characters, `/` included (`team-a/*` covers `team-a/app` and `team-a/x/app`, but not
/// `team-a` itself; `*` alone covers every repository).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoPattern(String);

impl RepoPattern {
    /// Validates a pattern: repository-name characters (`a-z 0-9 . _ - /`) and `*`, at most
    /// 255 characters. Upper case is refused rather than folded: repository names are lower
    /// case, so such a pattern could never match and is surely a mistake.
    pub fn new(pattern: &str) -> Result<RepoPattern, AuthConfigError> {
        let valid = !pattern.is_empty()
            && pattern.len() <= 255
            && pattern.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-' | b'/' | b'*')
            });
        if valid {
            Ok(RepoPattern(pattern.to_owned()))
        } else {
            Err(AuthConfigError::new(format!(
                "invalid repository pattern {pattern:?}: use repository-name characters \
                 (a-z 0-9 . _ - /) and * as a wildcard, at most 255 characters"
            )))
        }
    }

    /// The pattern that covers every repository.
    pub fn everything() -> RepoPattern {
        RepoPattern("*".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern covers every possible repository name.
    pub fn is_everything(&self) -> bool {
        !self.0.is_empty() && self.0.bytes().all(|b| b == b'*')
    }

    pub fn matches(&self, repository: &str) -> bool {
        glob(self.0.as_bytes(), repository.as_bytes())
    }
}

impl core::fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*`-only glob matching, linear in practice: on a mismatch only the last `*` is retried.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Permission to do some actions on the repositories a pattern covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    pub pattern: RepoPattern,
    pub actions: Actions,
}

impl Grant {
    pub fn new(pattern: RepoPattern, actions: Actions) -> Grant {
        Grant { pattern, actions }
    }

    /// These actions on every repository.
    pub fn everything(actions: Actions) -> Grant {
        Grant::new(RepoPattern::everything(), actions)
    }

    /// Parses `<pattern>:<actions>`, e.g. `team-a/*:pull,push`, `*:pull`, `tools/ci:*` — the
    /// form runtimes accept in flags and environment variables.
    pub fn parse(text: &str) -> Result<Grant, AuthConfigError> {
        let Some((pattern, actions)) = text.rsplit_once(':') else {
            return Err(AuthConfigError::new(format!(
                "grant {text:?} is not <pattern>:<actions> (e.g. team-a/*:pull,push)"
            )));
        };
        Ok(Grant::new(
            RepoPattern::new(pattern.trim())?,
            Actions::parse(actions)?,
        ))
    }

    pub fn allows(&self, action: Action, repository: &str) -> bool {
        self.actions.contains(action) && self.pattern.matches(repository)
    }
}

impl core::fmt::Display for Grant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.pattern, self.actions)
    }
}

/// Whether any grant in the list allows `action` on `repository`.
pub(crate) fn grants_allow(grants: &[Grant], action: Action, repository: &str) -> bool {
    grants.iter().any(|g| g.allows(action, repository))
}

/// The actions a list of grants allows on one repository.
pub(crate) fn grants_actions(grants: &[Grant], repository: &str) -> Actions {
    grants
        .iter()
        .filter(|g| g.pattern.matches(repository))
        .fold(Actions::NONE, |set, g| set.union(g.actions))
}

/// What a request needs before the engine may serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `/v2/`: an authenticated identity. Anonymous callers get a 401 challenge unless the
    /// configuration has nothing but anonymous grants, because clients (docker in particular)
    /// learn from this endpoint's challenge whether and how to send credentials: a 200 here
    /// would make them never authenticate, and every later push would fail.
    Base,
    /// `/v2/_catalog`: an authenticated identity, or anonymous when anonymous grants exist;
    /// a bearer token needs the `registry:catalog:*` scope. The listing is then filtered with
    /// [`super::Authenticator::can_see`].
    Catalog,
    /// An action on one repository.
    Repository { name: String, action: Action },
}

/// Maps a route and method to what it requires.
///
/// - GET/HEAD on manifests, blobs, tags and referrers: pull.
/// - POST/PATCH/PUT/GET/DELETE on uploads, PUT on manifests: push (an upload session, its
///   status and its cancellation all belong to pushing).
/// - DELETE on manifests and blobs: delete.
///
/// Methods a route does not answer map to push (the strongest non-destructive requirement);
/// the engine refuses them with 405 anyway. A cross-repository mount additionally needs pull
/// on its `from` repository: see [`super::Authenticator::can_mount_from`].
pub fn requirement(route: &Route, method: &Method) -> Requirement {
    let read = *method == Method::GET || *method == Method::HEAD;
    let action = match route {
        Route::Base => return Requirement::Base,
        Route::Catalog => return Requirement::Catalog,
        Route::Manifest { .. } | Route::Blob { .. } => {
            if read {
                Action::Pull
            } else if *method == Method::DELETE {
                Action::Delete
            } else {
                Action::Push
            }
        }
        Route::Tags { .. } | Route::Referrers { .. } => {
            if read {
                Action::Pull
            } else {
                Action::Push
            }
        }
        Route::UploadStart { .. } | Route::Upload { .. } => Action::Push,
    };
    Requirement::Repository {
        name: route.repository().unwrap_or_default().to_owned(),
        action,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        let p = |s: &str| RepoPattern::new(s).unwrap();
        assert!(p("*").matches("a"));
        assert!(p("*").matches("a/b/c"));
        assert!(p("team-a/*").matches("team-a/app"));
        assert!(p("team-a/*").matches("team-a/x/app"));
        assert!(!p("team-a/*").matches("team-a"));
        assert!(!p("team-a/*").matches("team-ab/app"));
        assert!(p("team-a/app").matches("team-a/app"));
        assert!(!p("team-a/app").matches("team-a/app2"));
        assert!(p("*/app").matches("x/y/app"));
        assert!(p("a*b*c").matches("abc"));
        assert!(p("a*b*c").matches("axxbyyc"));
        assert!(!p("a*b*c").matches("axxbyy"));
        assert!(p("**").is_everything());
        assert!(!p("a*").is_everything());
        assert!(RepoPattern::new("Team/*").is_err());
        assert!(RepoPattern::new("").is_err());
        assert!(RepoPattern::new("a b").is_err());
    }

    #[test]
    fn grants_parse() {
        let g = Grant::parse("team-a/*:pull,push").unwrap();
        assert_eq!(g.pattern.as_str(), "team-a/*");
        assert_eq!(g.actions, Actions::PULL.union(Actions::PUSH));
        assert_eq!(Grant::parse("*:*").unwrap().actions, Actions::ALL);
        assert!(Grant::parse("x:pul").is_err());
        assert!(Grant::parse("x").is_err());
        assert_eq!(g.to_string(), "team-a/*:pull,push");
    }
}
