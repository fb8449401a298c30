//! What every view has around it: the header (always visible: elapsed, transitions and events
//! per second, losses highlighted with their breakdown, sockets followed, filters), the tabs,
//! the keys in the footer and the `?` overlay.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Widget, Wrap},
};

use crate::render::{
    tui::{
        app::{App, Mode},
        keys::{FOOTER, KEYS, STATES_FOOTER},
    },
    units::{duration, rate},
};

/// Lines of the header.
pub const HEADER_LINES: u16 = 2;

fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

pub fn header(app: &App, area: Rect, buf: &mut Buffer) {
    let title = match app.mode {
        Mode::Transitions => "tcptrace transitions",
        Mode::States => "tcptrace states --watch",
    };
    let mut first = vec![Span::styled(
        title,
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let mut second = Vec::new();
    if app.paused {
        second.push(Span::styled(
            "PAUSED",
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
        second.push(Span::raw(" "));
    }
    if app.ended {
        second.push(Span::styled(
            "ENDED",
            Style::new().fg(Color::Black).bg(Color::Cyan),
        ));
        second.push(Span::raw(" "));
    }
    second.push(Span::raw(format!("filters: {}", app.filters)));
    if let Some(snap) = &app.snapshot {
        second.push(Span::raw(format!(
            "  {} sockets followed",
            snap.sockets.tracked
        )));
        let lost = snap.losses.lost_events();
        first.extend([
            Span::raw(format!("  {} elapsed", duration(snap.elapsed_ns))),
            Span::raw(format!("  {} transitions", snap.transitions)),
            Span::raw(format!("  {} events/s", rate(snap.events_per_s))),
            Span::raw("  "),
            if lost > 0 {
                Span::styled(
                    format!("{lost} lost"),
                    Style::new()
                        .fg(Color::White)
                        .bg(Color::Red)
                        .add_modifier(Modifier::BOLD),
                )
            } else {
                Span::raw("0 lost")
            },
        ]);
        if lost > 0 || snap.losses.invalid_records > 0 || snap.losses.sockets_forgotten > 0 {
            second.push(Span::raw("  "));
            second.push(Span::styled(
                format!("lost: {}", snap.losses.line()),
                Style::new().fg(Color::Red),
            ));
        }
    }
    Paragraph::new(vec![Line::from(first), Line::from(second)]).render(area, buf);
}

pub fn tabs(app: &App, area: Rect, buf: &mut Buffer) {
    let mut spans = Vec::new();
    for (i, view) in app.views().iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" │ ", dim()));
        }
        let style = if *view == app.view {
            Style::new().fg(Color::Black).bg(Color::Cyan)
        } else {
            Style::new()
        };
        spans.push(Span::styled(view.title(), style));
    }
    if app.mode == Mode::Transitions {
        spans.push(Span::styled(
            format!("   sort: {}  by: {}", app.sort.name(), app.breakdown.name()),
            dim(),
        ));
    }
    Paragraph::new(Line::from(spans)).render(area, buf);
}

pub fn footer(app: &App, area: Rect, buf: &mut Buffer) {
    let keys = match app.mode {
        Mode::Transitions => FOOTER,
        Mode::States => STATES_FOOTER,
    };
    let mut spans = Vec::new();
    for (i, (key, what)) in keys.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled(
            *key,
            Style::new().fg(Color::Black).bg(Color::Gray),
        ));
        spans.push(Span::raw(format!(" {what}")));
    }
    Paragraph::new(Line::from(spans)).render(area, buf);
}

/// The `?` overlay, centred.
pub fn help(area: Rect, buf: &mut Buffer) {
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {key:<10} "),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        " --plain, a pipe or a file: the text tables instead of this view",
        dim(),
    ));
    let width = area.width.min(72);
    let height = area.height.min(lines.len() as u16 + 2);
    let popup = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    Clear.render(popup, buf);
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::new().borders(Borders::ALL).title(" keys "))
        .render(popup, buf);
}

/// The selected transition in one line, under the diagram: what Enter opens.
pub fn selection(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(r) = app.selected_row() else {
        return;
    };
    let mut text = format!(
        "selected: {}  {} · {}/s",
        crate::render::tui::table::row_label(r),
        r.count,
        rate(r.rate_per_s)
    );
    if let Some(s) = &r.time.stats {
        text.push_str(&format!(
            " · p50 {} p99 {} max {}",
            duration(s.p50),
            duration(s.p99),
            duration(s.max)
        ));
    }
    text.push_str("  (Enter: detail)");
    Paragraph::new(text)
        .style(Style::new().add_modifier(Modifier::REVERSED))
        .render(area, buf);
}
