//! `tcptrace explain`: the text of [`crate::explain`], printed.

use std::io::{self, Write};

use crate::{cli::ExplainArgs, render::explain};

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let text = if args.query.is_empty() {
        explain::overview()
    } else {
        let mut text = String::new();
        for (i, query) in explain::queries(&args.query).iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(&explain::explain(query)?);
        }
        text
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
