//! The commands of the `barrage` binary, one file per subcommand, and [`main`], which
//! starts the runtime and dispatches to them. Each command lowers its flags through
//! [`crate::setup`] and returns its exit code ([`crate::exit`]).

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::exit::{EXIT_CLUSTER, Failure};

mod demo;
mod hunt;
mod local_workers;
mod master;
mod mock;
mod report;
mod run;
mod validate;
mod worker;

/// Runs one `barrage` command line to its end: logging, the async runtime, the
/// command; an error is printed and mapped to its exit code (1 unless it is a [`Failure`]).
pub fn main(cli: Cli) -> ExitCode {
    barrage_common::telemetry::init(match &cli.command {
        Command::Worker(_) => "info",
        _ => "warn,barrage_master=info",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_CLUSTER);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e.downcast_ref::<Failure>().map_or(1, |f| f.code);
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Master(args) => master::command(args).await,
        Command::Worker(args) => worker::command(args).await,
        Command::Run(args) => run::command(args).await,
        Command::Demo(args) => demo::command(args).await,
        Command::Mock(args) => mock::command(args).await,
        Command::Validate(args) => validate::command(args),
        Command::Hunt(args) => hunt::command(args).await,
        Command::Report(args) => report::command(args),
    }
}
