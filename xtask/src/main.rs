//! Developer tasks: set-up, build, run, test, bench, fuzz, layout check. `cargo xtask` alone
//! does the set-up.

mod bench;
mod container;
mod fuzz;
mod layout;
mod matrix;
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
    /// Set up, then check formatting, the module layout and lints, run the unit tests, the
    /// bounded fuzzing, the privileged end-to-end tests and the smoke check, then the
    /// end-to-end tests and the smoke check again inside each kernel of the matrix.
    Test {
        /// Skip the kernel matrix: the host's tests only, for a quick local loop (CI never
        /// skips it).
        #[arg(long, conflicts_with_all = ["kernels"])]
        no_matrix: bool,
        #[command(flatten)]
        matrix: matrix::MatrixArgs,
        /// Arguments passed to the end-to-end test binary (e.g. a test name filter), on the
        /// host and in each guest.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, then run the end-to-end tests and the smoke check inside each kernel of
    /// the matrix, booted in QEMU (virtme-ng; KVM when it works, else TCG); installs QEMU,
    /// virtme-ng and the kernel packages when missing. One summary line per kernel.
    Matrix {
        #[command(flatten)]
        matrix: matrix::MatrixArgs,
        /// Arguments passed to the end-to-end test binary in each guest (e.g. a test filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Inside a guest of the matrix: the smoke check on the host's builds, its counts as a
    /// line for the host to read.
    #[command(hide = true)]
    GuestSmoke,
    /// Set up, build, then benchmark (as root): a connection storm alone and under each
    /// tracer, in interleaved rounds. `--smoke`: the correctness check CI runs.
    Bench(bench::BenchArgs),
    /// Set up, build, then build the container image of tcptrace/dist/container (offline:
    /// FROM scratch, the binary and its libraries) with podman, installing it when missing,
    /// and run `tcptrace export --help` in it.
    Container,
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
        Task::Test {
            no_matrix,
            matrix,
            args,
        } => setup::run_for_tests().and_then(|_| test::run(&args, (!no_matrix).then_some(&matrix))),
        Task::Matrix { matrix, args } => {
            setup::run_for_tests().and_then(|_| matrix::run_alone(&matrix, &args))
        }
        Task::GuestSmoke => matrix::guest_smoke(),
        Task::Bench(args) => setup::run_for_tests().and_then(|_| bench::run(&args)),
        Task::Container => setup::run().and_then(|_| container::run()),
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
