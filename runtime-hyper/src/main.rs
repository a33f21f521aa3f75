//! The `berth` command: `berth serve` and `berth maintain`. See the library's docs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use berth::config::Settings;

#[derive(Parser)]
#[command(name = "berth", version, about = "berth: an OCI distribution registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const AFTER_HELP: &str = "\
Precedence: flags override BERTH_* environment variables, which override the --config file, \
which overrides the defaults.

Authentication (--auth-* flags, BERTH_AUTH_* variables, an [auth] table in the file): Basic \
users (--auth-user, --auth-htpasswd), per-user and anonymous grants by repository pattern \
(--auth-grant, --auth-anonymous), registry tokens (--auth-token-*). cloudflare/serverless-registry's \
variables USERNAME/PASSWORD, READONLY_USERNAME/READONLY_PASSWORD and JWT_REGISTRY_TOKENS_PUBLIC_KEY \
are read unchanged from the environment. With none of these berth authenticates nothing and only \
listens on loopback unless --allow-unauthenticated-public is given. See the README's \
Authentication section for the [auth] table and examples.";

#[derive(Subcommand)]
enum Command {
    /// Serve the registry over HTTP(S). With no options: http://127.0.0.1:5000, storing under
    /// ./berth-data.
    #[command(after_help = AFTER_HELP)]
    Serve(Settings),
    /// Run one maintenance pass (remove expired uploads) against the storage, print its JSON
    /// summary and exit; for cron. Takes the same options as `serve`.
    #[command(after_help = AFTER_HELP)]
    Maintain(Settings),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(settings) => berth::serve::serve(settings).await,
            Command::Maintain(settings) => berth::serve::maintain_once(settings).await,
        }
    });
    // Blocking filesystem tasks of a request cut short must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("berth: {message}");
            ExitCode::FAILURE
        }
    }
}
