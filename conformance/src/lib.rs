//! The OCI distribution-spec conformance workflows (pull, push, content discovery, content
//! management) as a library: run them against any registry through any [`Transport`].
//!
//! Every test checks what the spec (`spec.md` of opencontainers/distribution-spec, v1.1 plus
//! what main added since: `digest-algorithm`, `?tag=` with `OCI-Tag`) requires, and a failure
//! says what was sent, what came back, and which requirement it broke.

pub mod client;
pub mod report;
mod workflows;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use client::{Client, Credentials, HttpTransport, Transport, TransportError};

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

#[derive(Clone, Debug)]
pub struct TestResult {
    pub name: String,
    pub workflow: Workflow,
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
    pub fn passed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.status, Status::Passed | Status::ExpectedFailure { .. }))
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

    /// `N passed, M failed, K skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}

/// Parses an expectations file: one `test-name  reason...` per line; `#` starts a comment.
pub fn parse_expectations(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(format!(
                "line {}: {name} has no reason; every known failure says why",
                number + 1
            ));
        }
        out.insert(name.to_owned(), reason.to_owned());
    }
    Ok(out)
}

/// The names of every test, by workflow, in the order they run.
pub fn test_names() -> Vec<(Workflow, &'static str)> {
    workflows::all()
        .into_iter()
        .map(|t| (t.workflow, t.name))
        .collect()
}

/// Runs the configured workflows, calling `on_result` as each test ends.
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
        let status = match (outcome, expected) {
            (Ok(()), None) => Status::Passed,
            (Ok(()), Some(reason)) => Status::UnexpectedPass {
                reason: reason.clone(),
            },
            (Err(failure), None) => Status::Failed(failure.to_string()),
            (Err(failure), Some(reason)) => Status::ExpectedFailure {
                reason: reason.clone(),
                failure: failure.to_string(),
            },
        };
        let result = TestResult {
            name: test.name.to_owned(),
            workflow: test.workflow,
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
    fn expectations_need_a_reason() {
        let parsed = parse_expectations("# known\npull/x  no referrers API\n\n").unwrap();
        assert_eq!(parsed["pull/x"], "no referrers API");
        assert!(
            parse_expectations("pull/y\n")
                .unwrap_err()
                .contains("no reason")
        );
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
}
