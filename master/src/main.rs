//! `barrage`: parse, then hand over to [`barrage_master::commands`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = barrage_master::cli::Cli::parse();
    barrage_master::commands::main(cli)
}
