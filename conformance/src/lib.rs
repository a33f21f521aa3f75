//! The OCI distribution-spec conformance workflows (pull, push, content discovery, content
//! management) as a library: run them against any registry through any [`Transport`].
//!
//! Every test checks what the spec (`spec.md` of opencontainers/distribution-spec, v1.1 plus
//! what main added since: `digest-algorithm`, `?tag=` with `OCI-Tag`) requires, and a failure
//! says what was sent, what came back, and which requirement it broke, citing its section.
//!
//! ```no_run
//! use berth_conformance::{Config, Credentials, HttpTransport, Workflow, parse_expectations};
//!
//! let config = Config {
//!     namespace: "conformance/test".into(),
//!     crossmount_namespace: "conformance/test-mount".into(),
//!     credentials: Credentials::default(),
//!     workflows: Workflow::ALL.to_vec(),
//!     // Content is derived from this, so earlier runs' leftovers cannot make a test pass.
//!     run_id: "1".into(),
//!     expected_failures: parse_expectations("# none\n").unwrap(),
//! };
//! let transport = HttpTransport::new("http://127.0.0.1:5000");
//! let report = berth_conformance::run(&config, &transport, "local", |result| {
//!     println!("{} {:?}", result.name, result.status);
//! });
//! println!("{}", report.summary()); // "N passed, M failed, K skipped"
//! assert_eq!(report.failed(), 0);
//! ```
//!
//! Any [`Transport`] works: [`HttpTransport`] over the network, or an in-process one around a
//! registry engine. Authentication ([`Client`]) is a layer over it.

pub mod client;
pub mod headers;
pub mod report;
mod workflows;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use client::{Client, Credentials, HttpTransport, Transport, TransportError};

/// Where the spec lives; test citations link to its sections.
pub const SPEC_URL: &str = "https://github.com/opencontainers/distribution-spec/blob/main/spec.md";

/// The four workflows of the official suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workflow {
    Pull,
    Push,
    ContentDiscovery,
    ContentManagement,
}

impl Workflow {
    pub fn name(self) -> &'static str {
        match self {
            Workflow::Pull => "pull",
            Workflow::Push => "push",
            Workflow::ContentDiscovery => "discovery",
            Workflow::ContentManagement => "management",
        }
    }

    pub const ALL: [Workflow; 4] = [
        Workflow::Pull,
        Workflow::Push,
        Workflow::ContentDiscovery,
        Workflow::ContentManagement,
    ];
}

/// What to run, where, and as whom.
#[derive(Clone, Debug)]
pub struct Config {
    /// Repository the tests push to and read from.
    pub namespace: String,
    /// Second repository, for cross-repository mounts.
    pub crossmount_namespace: String,
    pub credentials: Credentials,
    pub workflows: Vec<Workflow>,
    /// Makes content unique per run so earlier runs' leftovers cannot make a test pass.
    pub run_id: String,
    /// Known failures: test name → reason. Such a failure is reported as expected; such a test
    /// passing is a failure ("remove it from the expectations").
    pub expected_failures: BTreeMap<String, String>,
}

/// How a test ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed(String),
    /// Failed, and listed in the expectations with this reason.
    ExpectedFailure {
        reason: String,
        failure: String,
    },
    /// Passed although listed as an expected failure.
    UnexpectedPass {
        reason: String,
    },
    Skipped(String),
}

impl Status {
    pub fn counts_as_failure(&self) -> bool {
        matches!(self, Status::Failed(_) | Status::UnexpectedPass { .. })
    }
}

/// A test as the suite knows it before running it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestInfo {
    pub workflow: Workflow,
    /// Stable name, `<workflow>/<what>`: expectations files and reports refer to it.
    pub name: &'static str,
    /// The section of spec.md whose requirements the test checks.
    pub spec_section: &'static str,
}

impl TestInfo {
    /// `spec.md § <section>` with a link to it.
    pub fn citation(&self) -> String {
        format!(
            "spec.md § {} <{SPEC_URL}#{}>",
            self.spec_section,
            spec_anchor(self.spec_section)
        )
    }
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to dashes, punctuation dropped.
pub fn spec_anchor(section: &str) -> String {
    section
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct TestResult {
    pub name: String,
    pub workflow: Workflow,
    /// The spec section the test checks (see [`TestInfo::spec_section`]).
    pub spec_section: &'static str,
    pub status: Status,
    pub duration: Duration,
}

/// The results of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub results: Vec<TestResult>,
    pub target: String,
}

impl Report {
    /// Tests that passed (an expected failure is not a pass: see [`Report::expected_failures`]).
    pub fn passed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.status == Status::Passed)
            .count()
    }

    /// Tests that failed as the expectations said they would; they do not fail the run.
    pub fn expected_failures(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.status, Status::ExpectedFailure { .. }))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.status.counts_as_failure())
            .count()
    }

    pub fn skipped(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.status, Status::Skipped(_)))
            .count()
    }

    /// Every result that is not a plain pass, one per line, for assertion messages.
    pub fn not_passed(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|r| r.status != Status::Passed)
            .map(|r| format!("{}: {:?}", r.name, r.status))
            .collect()
    }

    /// `N passed, M failed, K skipped` (the closing line test runners and CI parse). Expected
    /// failures are counted apart, by [`Report::expected_failures`].
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}

/// Parses an expectations file: the known failures of one target, as rustls runs BoGo.
///
/// One test per line, `<test-name> <reason>`; the reason is required, because an expectation
/// nobody can explain is one nobody will ever remove. `#` starts a comment line; blank lines are
/// ignored. A name listed twice, or one that is not a test of this suite, is an error: a stale
/// or mistyped entry would otherwise silently expect nothing.
pub fn parse_expectations(text: &str) -> Result<BTreeMap<String, String>, String> {
    let known: std::collections::BTreeSet<&str> = workflows::all().iter().map(|t| t.name).collect();
    let mut out = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let reason = reason.trim();
        let at = number + 1;
        if reason.is_empty() {
            return Err(format!(
                "line {at}: {name} has no reason; every known failure says why"
            ));
        }
        if !known.contains(name) {
            return Err(format!(
                "line {at}: {name} is not a test of this suite (berth-conformance --list shows them)"
            ));
        }
        if out.insert(name.to_owned(), reason.to_owned()).is_some() {
            return Err(format!("line {at}: {name} is listed twice"));
        }
    }
    Ok(out)
}

/// Every test, by workflow, in the order they run.
pub fn tests() -> Vec<TestInfo> {
    workflows::all()
        .into_iter()
        .map(|t| TestInfo {
            workflow: t.workflow,
            name: t.name,
            spec_section: t.spec,
        })
        .collect()
}

/// The names of every test, by workflow, in the order they run.
pub fn test_names() -> Vec<(Workflow, &'static str)> {
    workflows::all()
        .into_iter()
        .map(|t| (t.workflow, t.name))
        .collect()
}

/// Runs the configured workflows against the registry behind `transport`, calling
/// `on_result` (the live reporter) as each test ends, and returns every result.
///
/// `target` only names the registry in reports. Tests run in a fixed order, and a test may
/// rely on content an earlier test of its workflow pushed (as in the official suite); each
/// pushes what it needs if that has not happened yet, so any workflow runs alone.
pub fn run(
    config: &Config,
    transport: &dyn Transport,
    target: &str,
    mut on_result: impl FnMut(&TestResult),
) -> Report {
    let client = Client::new(transport, config.credentials.clone());
    let mut context = workflows::Context::new(config, client);
    let mut report = Report {
        results: Vec::new(),
        target: target.to_owned(),
    };
    for test in workflows::all() {
        if !config.workflows.contains(&test.workflow) {
            continue;
        }
        let started = Instant::now();
        let outcome = (test.run)(&mut context);
        let expected = config.expected_failures.get(test.name);
        let info = TestInfo {
            workflow: test.workflow,
            name: test.name,
            spec_section: test.spec,
        };
        let explain =
            |failure: workflows::Failure| format!("{failure}\n  spec: {}", info.citation());
        let status = match (outcome, expected) {
            (Ok(()), None) => Status::Passed,
            (Ok(()), Some(reason)) => Status::UnexpectedPass {
                reason: reason.clone(),
            },
            (Err(failure), None) => Status::Failed(explain(failure)),
            (Err(failure), Some(reason)) => Status::ExpectedFailure {
                reason: reason.clone(),
                failure: explain(failure),
            },
        };
        let result = TestResult {
            name: test.name.to_owned(),
            workflow: test.workflow,
            spec_section: test.spec,
            status,
            duration: started.elapsed(),
        };
        on_result(&result);
        report.results.push(result);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_parse_names_and_reasons() {
        let parsed = parse_expectations(
            "# known failures\n\npull/blob-range  \tno Range support here  \n  discovery/tags-list-n n is ignored\n",
        )
        .unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed["pull/blob-range"], "no Range support here");
        assert_eq!(parsed["discovery/tags-list-n"], "n is ignored");
        assert!(parse_expectations("").unwrap().is_empty());
    }

    #[test]
    fn expectations_reject_missing_reasons_unknown_tests_and_duplicates() {
        let missing = parse_expectations("pull/blob-range\n").unwrap_err();
        assert!(
            missing.contains("line 1") && missing.contains("no reason"),
            "{missing}"
        );
        let unknown = parse_expectations("# c\npull/no-such-test  why\n").unwrap_err();
        assert!(
            unknown.contains("line 2") && unknown.contains("not a test"),
            "{unknown}"
        );
        let twice = parse_expectations("pull/blob-range a\npull/blob-range b\n").unwrap_err();
        assert!(twice.contains("listed twice"), "{twice}");
    }

    #[test]
    fn spec_anchors_are_githubs() {
        assert_eq!(
            spec_anchor("Pushing a blob in chunks"),
            "pushing-a-blob-in-chunks"
        );
        assert_eq!(spec_anchor("POST then PUT"), "post-then-put");
        assert_eq!(
            spec_anchor("Checking if content exists in the registry"),
            "checking-if-content-exists-in-the-registry"
        );
    }

    #[test]
    fn counts_keep_expected_failures_apart() {
        let result = |status| TestResult {
            name: "pull/x".into(),
            workflow: Workflow::Pull,
            spec_section: "Pulling blobs",
            status,
            duration: Duration::ZERO,
        };
        let report = Report {
            target: "t".into(),
            results: vec![
                result(Status::Passed),
                result(Status::Failed("f".into())),
                result(Status::ExpectedFailure {
                    reason: "r".into(),
                    failure: "f".into(),
                }),
                result(Status::UnexpectedPass { reason: "r".into() }),
                result(Status::Skipped("s".into())),
            ],
        };
        assert_eq!(report.summary(), "1 passed, 2 failed, 1 skipped");
        assert_eq!(report.expected_failures(), 1);
    }

    #[test]
    fn test_names_are_unique_and_prefixed_by_their_workflow() {
        let names = test_names();
        let mut seen = std::collections::BTreeSet::new();
        for (workflow, name) in &names {
            assert!(name.starts_with(&format!("{}/", workflow.name())), "{name}");
            assert!(seen.insert(*name), "duplicate {name}");
        }
        assert!(names.len() > 50, "{}", names.len());
    }

    /// A "registry" that only answers `GET /v2/`: everything else is a 500.
    struct OnlyBase;

    impl Transport for OnlyBase {
        fn send(
            &self,
            request: http::Request<Vec<u8>>,
        ) -> Result<http::Response<Vec<u8>>, TransportError> {
            let status = if request.uri().path() == "/v2/" {
                200
            } else {
                500
            };
            Ok(http::Response::builder()
                .status(status)
                .body(Vec::new())
                .unwrap())
        }
    }

    #[test]
    fn run_applies_expectations_both_ways() {
        let expected_failures = parse_expectations(
            "pull/base-endpoint-200  thought broken\npull/blob-get  known broken\n",
        )
        .unwrap();
        let config = Config {
            namespace: "n".into(),
            crossmount_namespace: "m".into(),
            credentials: Credentials::default(),
            workflows: vec![Workflow::Pull],
            run_id: "unit".into(),
            expected_failures,
        };
        let mut live = Vec::new();
        let report = run(&config, &OnlyBase, "fake", |r| live.push(r.name.clone()));
        let pull_tests = tests()
            .iter()
            .filter(|t| t.workflow == Workflow::Pull)
            .count();
        assert_eq!(live.len(), pull_tests, "the reporter hears every test");
        let status = |name: &str| {
            report
                .results
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.status.clone())
                .unwrap()
        };
        assert_eq!(
            status("pull/base-endpoint-200"),
            Status::UnexpectedPass {
                reason: "thought broken".into()
            }
        );
        let Status::ExpectedFailure { reason, failure } = status("pull/blob-get") else {
            panic!("pull/blob-get should be an expected failure");
        };
        assert_eq!(reason, "known broken");
        assert!(failure.contains("spec: spec.md § "), "{failure}");
        let Status::Failed(message) = status("pull/manifest-by-tag") else {
            panic!("pull/manifest-by-tag should fail");
        };
        assert!(message.contains("got:  500"), "{message}");
        assert_eq!(report.passed(), 0);
        assert_eq!(report.expected_failures(), 1);
        assert_eq!(report.failed(), pull_tests - 1);
        assert_eq!(report.skipped(), 0);
    }
}
