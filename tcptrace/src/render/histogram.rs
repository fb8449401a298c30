//! Histograms drawn, in one place: the compact bar of the live tables (a character per decade)
//! and bcc's log2 layout of the summaries.

use std::io::{self, Write};

use crate::aggregate::histogram::{DECADES, HistogramSummary};

/// Levels of the compact bar, from empty to full.
const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Width of the bars of the log2 histograms.
const BAR_WIDTH: u64 = 40;

/// One character per decade of time in state, from `<10us` to `>=1000s`, scaled to the row's
/// fullest decade.
pub fn bar(h: &HistogramSummary) -> String {
    let max = h.decades.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return " ".repeat(DECADES);
    }
    h.decades
        .iter()
        .map(|&count| {
            if count == 0 {
                LEVELS[0]
            } else {
                // Any sample shows at least the lowest level.
                let level = (count * (LEVELS.len() as u64 - 1)).div_ceil(max);
                LEVELS[level as usize]
            }
        })
        .collect()
}

/// bcc's layout: `lo -> hi : count |****|`.
pub fn log2_histogram(out: &mut impl Write, h: &HistogramSummary) -> io::Result<()> {
    let max = h.log2.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    writeln!(out, "{:>20}     : count    distribution", "usecs")?;
    for b in &h.log2 {
        let stars = (b.count * BAR_WIDTH).div_ceil(max) as usize;
        writeln!(
            out,
            "{:>10} -> {:<10}: {:<8} |{:<40}|",
            b.lo_us,
            b.hi_us,
            b.count,
            "*".repeat(stars)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_fullest_decade() {
        let mut h = HistogramSummary::default();
        assert_eq!(bar(&h), " ".repeat(DECADES));
        h.decades[0] = 8;
        h.decades[3] = 1;
        h.decades[9] = 4;
        assert_eq!(bar(&h), "█  ▁     ▄");
    }
}
