//! `barrage`: parse, then hand over to [`barrage_master::app`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = barrage_master::cli::Cli::parse();
    barrage_master::app::main(cli)
}
