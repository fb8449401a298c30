//! tcptrace: how this machine's TCP connections move through the TCP state diagram, live.

use std::{
    io::{self, Write as _},
    process::ExitCode,
};

use clap::Parser as _;

use tcptrace::{
    cli::{Cli, Command, UsageError},
    commands,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.command.verbose());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tcptrace: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // `tcptrace trace | head`: the reader is gone, which is no failure of ours.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        // Input found bad once parsed: the same status as clap's bad flags.
        Err(err) if err.chain().any(|cause| cause.is::<UsageError>()) => {
            eprintln!("tcptrace: {err:#}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("tcptrace: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Trace(args) => commands::trace::run(args).await,
        Command::States(args) => commands::states::run(args).await,
        Command::Sockets(args) => commands::sockets::run(args),
        Command::Explain(args) => commands::explain::run(args),
        Command::Transitions(args) => commands::transitions::run(args).await,
        Command::Record(args) => commands::record::run(args).await,
        Command::Export(args) => commands::export::run(args).await,
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Warnings by default; `-v` adds info and the kernel probe's own log, `-vv` debug.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    let mut builder = env_logger::Builder::new();
    // `tcptrace: warning: …`: what a user reads, not the module that wrote it.
    builder.filter_level(level).format(|out, record| {
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug | log::Level::Trace => "debug",
        };
        let origin = if record.target().starts_with("tcptrace_ebpf") {
            "kernel probe: "
        } else {
            ""
        };
        writeln!(out, "tcptrace: {level}: {origin}{}", record.args())
    });
    if verbose == 0 {
        // The kernel side logs through aya-log at error level; keep it for -v.
        builder.filter_module("tcptrace_ebpf", log::LevelFilter::Off);
    }
    builder.init();
}
