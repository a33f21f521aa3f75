//! `berth-conformance`: runs the OCI distribution conformance workflows against a registry.
//!
//! Reads the official suite's environment variables (so CI jobs written for it can switch);
//! flags override them. Prints a line per test, then `N passed, M failed, K skipped`, writes
//! `junit.xml` and `report.html`, and exits non-zero on any failure.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_conformance::{
    Config, Credentials, HttpTransport, Status, Workflow, parse_expectations, report, tests,
};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "berth-conformance",
    version,
    about = "OCI distribution-spec conformance tests"
)]
struct Args {
    /// Registry base URL, e.g. http://127.0.0.1:5000.
    #[arg(long, env = "OCI_ROOT_URL", required_unless_present = "list")]
    root_url: Option<String>,
    /// Repository the tests push to and pull from.
    #[arg(long, env = "OCI_NAMESPACE", default_value = "berth-conformance/test")]
    namespace: String,
    /// Second repository, for cross-repository mounts [default: <namespace>-mount].
    #[arg(long, env = "OCI_CROSSMOUNT_NAMESPACE")]
    crossmount_namespace: Option<String>,
    #[arg(long, env = "OCI_USERNAME")]
    username: Option<String>,
    #[arg(long, env = "OCI_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Run the pull workflow (`1`/`true` enables, `0`/`false` disables). When any of the four
    /// workflow switches is true, only those run; otherwise all run but those set false (so
    /// with none set, all four run).
    #[arg(long, env = "OCI_TEST_PULL")]
    pull: Option<Switch>,
    /// Run the push workflow.
    #[arg(long, env = "OCI_TEST_PUSH")]
    push: Option<Switch>,
    /// Run the content discovery workflow.
    #[arg(long, env = "OCI_TEST_CONTENT_DISCOVERY")]
    content_discovery: Option<Switch>,
    /// Run the content management workflow.
    #[arg(long, env = "OCI_TEST_CONTENT_MANAGEMENT")]
    content_management: Option<Switch>,
    /// Directory for junit.xml and report.html.
    #[arg(long, env = "OCI_REPORT_DIR", default_value = ".")]
    report_dir: PathBuf,
    /// Known failures of this target, one `test-name reason` per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    expectations: Option<PathBuf>,
    /// Makes pushed content unique to this run [default: the current time in milliseconds].
    #[arg(long)]
    run_id: Option<String>,
    /// Print every test with the spec section it checks, and exit.
    #[arg(long)]
    list: bool,
}

/// `1`/`true`/`yes` or `0`/`false`/`no`, as the official suite's variables are set.
#[derive(Clone, Copy, Debug)]
struct Switch(bool);

impl std::str::FromStr for Switch {
    type Err = String;
    fn from_str(s: &str) -> Result<Switch, String> {
        match s.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Switch(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Switch(false)),
            other => Err(format!("{other:?} is not a boolean")),
        }
    }
}

/// The workflows to run: if any switch is true, exactly those; otherwise all but the ones
/// explicitly switched off (so with none set, all four run).
fn select_workflows(switches: &[(Workflow, Option<Switch>)]) -> Vec<Workflow> {
    let any_on = switches.iter().any(|(_, s)| s.is_some_and(|s| s.0));
    switches
        .iter()
        .filter(|(_, s)| match s {
            Some(Switch(on)) => *on,
            None => !any_on,
        })
        .map(|(w, _)| *w)
        .collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for test in tests() {
            println!("{:<56} {}", test.name, test.citation());
        }
        return ExitCode::SUCCESS;
    }
    let root_url = args.root_url.clone().unwrap_or_default();
    let switches = [
        (Workflow::Pull, args.pull),
        (Workflow::Push, args.push),
        (Workflow::ContentDiscovery, args.content_discovery),
        (Workflow::ContentManagement, args.content_management),
    ];
    let workflows = select_workflows(&switches);
    if workflows.is_empty() {
        eprintln!(
            "berth-conformance: every workflow is switched off (OCI_TEST_* / --pull …); nothing to run"
        );
        return ExitCode::FAILURE;
    }
    let expected_failures = match &args.expectations {
        None => Default::default(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_expectations(&t))
        {
            Ok(map) => map,
            Err(e) => {
                eprintln!("berth-conformance: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let run_id = args.run_id.clone().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .to_string()
    });
    let config = Config {
        crossmount_namespace: args
            .crossmount_namespace
            .clone()
            .unwrap_or_else(|| format!("{}-mount", args.namespace)),
        namespace: args.namespace.clone(),
        credentials: Credentials {
            username: args.username.clone(),
            password: args.password.clone(),
        },
        workflows,
        run_id,
        expected_failures,
    };
    let transport = HttpTransport::new(&root_url);
    println!(
        "berth-conformance: {root_url} (namespace {}, cross-mount namespace {}, run {}; workflows: {})",
        config.namespace,
        config.crossmount_namespace,
        config.run_id,
        config
            .workflows
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let report = berth_conformance::run(&config, &transport, &root_url, |result| {
        let indent = |text: &str| text.replace('\n', "\n      ");
        match &result.status {
            Status::Passed => println!("PASS  {}", result.name),
            Status::Failed(message) => println!("FAIL  {}\n      {}", result.name, indent(message)),
            Status::ExpectedFailure { reason, .. } => {
                println!("XFAIL {}  (expected failure: {reason})", result.name)
            }
            Status::UnexpectedPass { reason } => println!(
                "FAIL  {}  unexpectedly passed — remove it from the expectations (listed as: {reason})",
                result.name
            ),
            Status::Skipped(reason) => println!("SKIP  {}  ({reason})", result.name),
        }
    });
    if let Err(e) = std::fs::create_dir_all(&args.report_dir)
        .and_then(|()| std::fs::write(args.report_dir.join("junit.xml"), report::junit(&report)))
        .and_then(|()| std::fs::write(args.report_dir.join("report.html"), report::html(&report)))
    {
        eprintln!(
            "berth-conformance: writing reports to {}: {e}",
            args.report_dir.display()
        );
        return ExitCode::FAILURE;
    }
    if report.expected_failures() > 0 {
        println!(
            "{} expected failures (listed in {}), not counted as failures",
            report.expected_failures(),
            args.expectations
                .as_deref()
                .map_or("the expectations".into(), |p| p.display().to_string())
        );
    }
    println!(
        "reports: {} and {}",
        args.report_dir.join("junit.xml").display(),
        args.report_dir.join("report.html").display()
    );
    println!("{}", report.summary());
    if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(values: [Option<bool>; 4]) -> Vec<&'static str> {
        let switches: Vec<(Workflow, Option<Switch>)> = Workflow::ALL
            .iter()
            .zip(values)
            .map(|(w, v)| (*w, v.map(Switch)))
            .collect();
        select_workflows(&switches)
            .iter()
            .map(|w| w.name())
            .collect()
    }

    #[test]
    fn workflow_switches_select_like_the_official_variables() {
        assert_eq!(pick([None; 4]), ["pull", "push", "discovery", "management"]);
        assert_eq!(
            pick([Some(true), None, None, Some(true)]),
            ["pull", "management"]
        );
        assert_eq!(pick([Some(true), Some(false), None, None]), ["pull"]);
        assert_eq!(
            pick([None, Some(false), None, None]),
            ["pull", "discovery", "management"]
        );
        assert!(pick([Some(false); 4]).is_empty());
    }

    #[test]
    fn switches_parse_the_usual_spellings() {
        for on in ["1", "true", "TRUE", "yes", "on"] {
            assert!(on.parse::<Switch>().unwrap().0, "{on}");
        }
        for off in ["0", "false", "no", "off", ""] {
            assert!(!off.parse::<Switch>().unwrap().0, "{off}");
        }
        assert!("maybe".parse::<Switch>().is_err());
    }
}
