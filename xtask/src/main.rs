//! `cargo xtask`: build, run, test, size and bench Stardust images. See README.md; each
//! subcommand is a module of `xtask::cmd`.

use std::process::ExitCode;

use clap::Parser;

use xtask::cmd::{self, Cmd};
use xtask::workspace::Workspace;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run, test, size and bench Stardust images"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

fn main() -> ExitCode {
    // First, before any thread: SIGTERM, SIGINT and SIGHUP kill every QEMU xtask started, then
    // end xtask by that signal (see xtask/xenlab/src/child.rs).
    xtask::child::stop_on_signals();
    // `run` exits with the guest's status, so its own failures (bad options, a failed build)
    // must not look like one: they are "the guest never ran" (125), as `timeout(1)` does.
    let run = std::env::args().nth(1).as_deref() == Some("run");
    let failure = if run {
        ExitCode::from(xtask::status::NEVER_RAN)
    } else {
        ExitCode::FAILURE
    };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match (e.use_stderr(), run) {
                (false, _) => ExitCode::SUCCESS, // --help, --version
                (true, true) => failure,
                (true, false) => ExitCode::from(2),
            };
        }
    };
    let ws = Workspace::locate();
    match cmd::dispatch(&ws, cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            failure
        }
    }
}
