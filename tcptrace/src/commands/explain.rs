//! `tcptrace explain`: the text of [`crate::explain`], printed.

use std::io::{self, Write};

use crate::{cli::ExplainArgs, render::explain};

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let text = if args.query.is_empty() {
        explain::overview()
    } else {
        explain::explain(&args.query.join(" "))?
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
