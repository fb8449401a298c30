//! `tcptrace record`: the raw transition stream written to a file, for `--replay`.

use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{
    cli::RecordArgs,
    kernel::probe::ProbeConfig,
    os::record_file,
    stream::{self, LiveConfig, record},
};

pub async fn run(args: RecordArgs) -> anyhow::Result<()> {
    let filter = args.filter.to_filter();
    if filter.pid.is_some() || filter.comm.is_some() || filter.netns.is_some() {
        bail!(
            "record keeps only the kernel's filters (-4/-6, --lport, --rport): apply --pid, \
             --comm and --netns when replaying"
        );
    }
    let kernel_filter = filter.kernel();
    let live = LiveConfig {
        probe: ProbeConfig {
            filter: kernel_filter,
            // Recorded always, so that both `trace` and `transitions` replay from the file.
            causes: true,
            drops: true,
            ..ProbeConfig::default()
        },
        // A reading of the counters every second: the intervals of a replay.
        interval: Some(Duration::from_secs(1)),
        duration: args.duration,
        tcp_counters: true,
        // Its seeds are recorded, for the replay's socket table.
        census: Some(filter.clone()),
        stop: None,
        drop_capabilities: false,
    };
    let origin = stream::live_origin();
    let header = record::header(&origin, true, filter.kernel_text());
    let writer = record_file::create(&args.output, &header)?;
    let mut recorder = record::Recorder::new(writer);
    stream::run_live(live, &mut recorder)
        .await
        .with_context(|| format!("recording to {}", args.output.display()))?;
    eprintln!(
        "{} events recorded to {}",
        recorder.records,
        args.output.display()
    );
    Ok(())
}
