//! `berth-conformance`: runs the OCI distribution conformance workflows against a registry.
//! Reads the official suite's environment variables; flags override them.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_conformance::{
    Config, Credentials, HttpTransport, Status, Workflow, parse_expectations, report,
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
    #[arg(long, env = "OCI_ROOT_URL")]
    root_url: String,
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
    /// Run the pull workflow. When none of the four workflow switches is given, all run.
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
    /// Known failures of this target, one `test-name reason` per line.
    #[arg(long)]
    expectations: Option<PathBuf>,
    /// Makes pushed content unique to this run [default: the current time].
    #[arg(long)]
    run_id: Option<String>,
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

fn main() -> ExitCode {
    let args = Args::parse();
    let switches = [
        (Workflow::Pull, args.pull),
        (Workflow::Push, args.push),
        (Workflow::ContentDiscovery, args.content_discovery),
        (Workflow::ContentManagement, args.content_management),
    ];
    let any_set = switches.iter().any(|(_, s)| s.is_some());
    let workflows: Vec<Workflow> = switches
        .iter()
        .filter(|(_, s)| !any_set || s.is_some_and(|s| s.0))
        .map(|(w, _)| *w)
        .collect();
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
    let transport = HttpTransport::new(&args.root_url);
    println!(
        "berth-conformance: {} (namespace {})",
        args.root_url, config.namespace
    );
    let report = berth_conformance::run(
        &config,
        &transport,
        &args.root_url,
        |result| match &result.status {
            Status::Passed => println!("PASS  {}", result.name),
            Status::Failed(message) => println!(
                "FAIL  {}\n      {}",
                result.name,
                message.replace('\n', "\n      ")
            ),
            Status::ExpectedFailure { reason, .. } => println!("XFAIL {}  ({reason})", result.name),
            Status::UnexpectedPass { reason } => println!(
                "FAIL  {}  passed, but the expectations list it as failing ({reason}); remove it",
                result.name
            ),
            Status::Skipped(reason) => println!("SKIP  {}  ({reason})", result.name),
        },
    );
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
    println!("{}", report.summary());
    if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
