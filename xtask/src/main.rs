//! Developer tasks: set-up, build, run, test, bench, fuzz, layout check. `cargo xtask` alone
//! does the set-up.

mod bench;
mod fuzz;
mod layout;
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
    /// Install what the build needs (rust-src, bpf-linker for this toolchain's LLVM) and the
    /// test tools (iproute2, nftables, ...). Idempotent.
    Setup,
    /// Set up, then `cargo build --release`.
    Build,
    /// Set up, build, then run tcptrace (as root) with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then check formatting, the module layout and lints, run the unit tests and the
    /// privileged end-to-end tests.
    Test {
        /// Arguments passed to the end-to-end test binary (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, then benchmark (as root): a connection storm alone and under each
    /// tracer, in interleaved rounds. `--smoke`: the correctness check CI runs.
    Bench(bench::BenchArgs),
    /// Check the module layout of tcptrace/src: layers, import cycles, commands that import
    /// one another, files and sockets opened outside kernel/ and os/, files' `//!` comments.
    Layout,
    /// Set up, install cargo-fuzz if missing, then run each fuzz target of the parsers of
    /// kernel data for a bounded time; fails on any crash, hang or out-of-memory.
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task.unwrap_or(Task::Setup) {
        Task::Setup => setup::run_for_tests(),
        Task::Build => setup::run().and_then(|_| run::build()),
        Task::Run { args } => setup::run().and_then(|_| run::run(&args)),
        Task::Test { args } => setup::run_for_tests().and_then(|_| test::run(&args)),
        Task::Bench(args) => setup::run_for_tests().and_then(|_| bench::run(&args)),
        Task::Layout => layout::run(),
        Task::Fuzz(args) => setup::run().and_then(|_| fuzz::run(&args)),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}
