//! Developer tasks: set-up, build, run, test. `cargo xtask` alone does the set-up.

mod bench;
mod run;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tcptrace's build, run and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Option<Task>,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build needs (rust-src, bpf-linker for this toolchain's LLVM). Idempotent.
    Setup,
    /// Set up, then `cargo build --release`.
    Build,
    /// Set up, build, then run tcptrace (as root) with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Time a snapshot of 100,000+ sockets: tcptrace against ss and netstat (as root; makes
    /// its own network namespace).
    Bench {
        /// Established connections (two sockets each).
        #[arg(long, default_value_t = 9_000)]
        pairs: usize,
        /// TIME_WAIT sockets.
        #[arg(long, default_value_t = 100_000)]
        time_wait: usize,
        /// Runs of each command.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..100))]
        runs: u64,
    },
    /// Set up, then check formatting and lints, run the unit tests and the privileged
    /// end-to-end tests.
    Test {
        /// Arguments passed to the end-to-end test binary (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task.unwrap_or(Task::Setup) {
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|_| run::build()),
        Task::Run { args } => setup::run().and_then(|_| run::run(&args)),
        Task::Bench {
            pairs,
            time_wait,
            runs,
        } => setup::run().and_then(|_| bench::run(pairs, time_wait, runs as usize)),
        Task::Test { args } => setup::run().and_then(|_| test::run(&args)),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}
