//! The detail of the selected transition: its full log2 histogram as bars, p50 to max, its
//! causes and retransmission counts, the trend of its rate and p99 over the last minutes, and
//! its exemplar sockets (the slowest and the most recent).

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, Widget},
};

use crate::{
    aggregate::{histogram::HistogramSummary, snapshot::RowSnapshot},
    render::{
        transitions::text::exemplar_cells,
        tui::{
            app::{App, RowKey},
            table::causes_text,
        },
        units::{duration, rate},
    },
};

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

pub fn draw(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(r) = app.selected_row() else {
        Paragraph::new("No transition yet: the table fills as transitions happen.")
            .render(area, buf);
        return;
    };
    let start_ns = app
        .snapshot
        .as_ref()
        .map_or(0, |s| s.at_ns.saturating_sub(s.elapsed_ns));
    let exemplar_lines = (r.exemplars.slowest.len() + r.exemplars.recent.len()) as u16 + 3;
    let [title, middle, bottom] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(6),
        Constraint::Length(exemplar_lines.min(area.height / 2)),
    ])
    .areas(area);
    summary(r, title, buf);
    let [histogram_area, side] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(middle);
    histogram(&r.time, r.from.name(), histogram_area, buf);
    let [causes_area, trend_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(6)]).areas(side);
    causes(r, causes_area, buf);
    trend(app, &RowKey::of(r), trend_area, buf);
    exemplars(r, start_ns, bottom, buf);
}

fn summary(r: &RowSnapshot, area: Rect, buf: &mut Buffer) {
    let name = format!(
        "{}: {} → {}{}",
        r.side.name(),
        r.from.name(),
        r.to.name(),
        if r.inferred { "* (inferred)" } else { "" }
    );
    let mut first = vec![
        Span::styled(
            name,
            if r.abnormal {
                bold().fg(Color::Red)
            } else {
                bold()
            },
        ),
        Span::raw(if r.abnormal { " abnormal" } else { "" }),
        Span::raw(format!(
            "  count {}  +{}  {}/s",
            r.count,
            r.interval_count,
            rate(r.rate_per_s)
        )),
    ];
    if r.untimed > 0 {
        first.push(Span::raw(format!("  {} untimed", r.untimed)));
    }
    let second = match &r.time.stats {
        Some(s) => format!(
            "p50 {}  p90 {}  p99 {}  max {}  min {}  mean {}  {} samples",
            duration(s.p50),
            duration(s.p90),
            duration(s.p99),
            duration(s.max),
            duration(s.min),
            duration(s.mean),
            r.time.samples
        ),
        None => format!(
            "no time in {}: the socket was born or first seen there",
            r.from.name()
        ),
    };
    Paragraph::new(vec![Line::from(first), Line::raw(second)]).render(area, buf);
}

/// One bar per log2 bucket, as bcc's histograms; the buckets that do not fit are counted.
fn histogram(h: &HistogramSummary, from: &str, area: Rect, buf: &mut Buffer) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(format!(" time in {from} (log2) "));
    let inner = block.inner(area);
    block.render(area, buf);
    if h.log2.is_empty() {
        return;
    }
    let peak = h.log2.iter().map(|b| b.count).max().unwrap_or(1).max(1);
    let label_width = 16usize;
    let count_width = h
        .log2
        .iter()
        .map(|b| b.count.to_string().len())
        .max()
        .unwrap_or(1);
    // A column of margin on the right, before the next panel.
    let bar_room = (inner.width as usize).saturating_sub(label_width + count_width + 3);
    let shown = inner.height as usize;
    let hidden = h.log2.len().saturating_sub(shown);
    // When they do not all fit, the first ones give way: the tail is where trouble shows.
    let skip = if hidden > 0 { hidden + 1 } else { 0 };
    let mut lines = Vec::new();
    if skip > 0 {
        lines.push(Line::styled(
            format!("… {skip} shorter buckets"),
            Style::new().fg(Color::DarkGray),
        ));
    }
    for b in h.log2.iter().skip(skip) {
        let bar = (b.count as usize * bar_room).div_ceil(peak as usize);
        let label = format!(
            "{}-{}",
            duration(b.lo_us * 1000),
            duration((b.hi_us + 1) * 1000)
        );
        lines.push(Line::from(vec![
            Span::raw(format!("{label:>label_width$} ")),
            Span::styled("█".repeat(bar), Style::new().fg(Color::Cyan)),
            Span::raw(format!(
                "{}{:>count_width$}",
                " ".repeat(bar_room - bar + 1),
                b.count
            )),
        ]));
    }
    Paragraph::new(lines).render(inner, buf);
}

fn causes(r: &RowSnapshot, area: Rect, buf: &mut Buffer) {
    let block = Block::new().borders(Borders::TOP).title(" causes ");
    let inner = block.inner(area);
    block.render(area, buf);
    let mut lines = Vec::new();
    if r.abnormal {
        lines.push(Line::styled(causes_text(r), Style::new().fg(Color::Red)));
        for (retries, n) in &r.retransmits {
            let plus = if *retries as usize >= crate::aggregate::snapshot::RETRANSMIT_SLOTS - 1 {
                "+"
            } else {
                ""
            };
            lines.push(Line::raw(format!("{n} after {retries}{plus} retransmits")));
        }
    } else {
        lines.push(Line::raw("a normal edge: no cause"));
    }
    Paragraph::new(lines).render(inner, buf);
}

fn trend(app: &App, key: &RowKey, area: Rect, buf: &mut Buffer) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(" trend per interval ");
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(points) = app.trend(key) else {
        return;
    };
    let width = inner.width.saturating_sub(16) as usize;
    let recent: Vec<_> = points.iter().rev().take(width).rev().collect();
    let rates: Vec<u64> = recent
        .iter()
        .map(|p| (p.rate_per_s * 1000.0) as u64)
        .collect();
    let p99s: Vec<Option<u64>> = recent.iter().map(|p| p.p99_us).collect();
    let [rate_area, p99_area] =
        Layout::vertical([Constraint::Length(2), Constraint::Length(2)]).areas(inner);
    let [rate_label, rate_spark] =
        Layout::horizontal([Constraint::Length(16), Constraint::Min(1)]).areas(rate_area);
    let [p99_label, p99_spark] =
        Layout::horizontal([Constraint::Length(16), Constraint::Min(1)]).areas(p99_area);
    let last = recent.last();
    Paragraph::new(format!(
        "rate {}/s",
        rate(last.map_or(0.0, |p| p.rate_per_s))
    ))
    .render(rate_label, buf);
    // The last interval that had a time: a quiet interval has no p99.
    let last_p99 = recent.iter().rev().find_map(|p| p.p99_us);
    Sparkline::default()
        .data(&rates)
        .style(Style::new().fg(Color::Green))
        .render(rate_spark, buf);
    Paragraph::new(format!(
        "p99 {}",
        last_p99.map_or("-".to_owned(), |us| format!(
            "<{}",
            duration((us + 1) * 1000)
        ))
    ))
    .render(p99_label, buf);
    Sparkline::default()
        .data(p99s.iter().map(|p| p.unwrap_or(0)).collect::<Vec<u64>>())
        .style(Style::new().fg(Color::Magenta))
        .render(p99_spark, buf);
}

fn exemplars(r: &RowSnapshot, start_ns: u64, area: Rect, buf: &mut Buffer) {
    let wide = area.width >= 120;
    let mut rows = Vec::new();
    for (kind, list) in [("slow", &r.exemplars.slowest), ("new", &r.exemplars.recent)] {
        for e in list {
            let c = exemplar_cells(e, start_ns);
            let mut cells = vec![
                kind.to_owned(),
                c[0].clone(),
                c[1].clone(),
                c[2].clone(),
                c[3].clone(),
            ];
            if wide {
                cells.extend([c[4].clone(), c[5].clone()]);
            }
            cells.push(c[6].clone());
            rows.push(Row::new(cells.into_iter().map(Cell::from)));
        }
    }
    let mut titles = vec!["", "IN FROM", "LOCAL", "REMOTE", "PID/COMM"];
    let mut widths = vec![
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(if wide { 24 } else { 17 }),
        Constraint::Length(if wide { 24 } else { 17 }),
        Constraint::Length(15),
    ];
    if wide {
        titles.extend(["NETNS", "AT"]);
        widths.extend([Constraint::Length(11), Constraint::Length(9)]);
    }
    titles.push("CAUSE");
    widths.push(Constraint::Min(6));
    Table::new(rows, widths)
        .header(Row::new(titles).style(bold()))
        .block(
            Block::new()
                .borders(Borders::TOP)
                .title(" exemplars: slowest, most recent "),
        )
        .column_spacing(1)
        .render(area, buf);
}
