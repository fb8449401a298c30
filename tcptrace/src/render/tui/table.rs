//! The table view: every transition with its count, rate and percentiles, sortable, the
//! selection kept in view.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Cell, Row, StatefulWidget, Table, TableState},
};

use crate::{
    aggregate::snapshot::RowSnapshot,
    core::state::Side,
    render::{
        tui::app::App,
        units::{duration, rate},
    },
};

/// Short enough to leave the numbers room at 80 columns.
pub fn side_tag(side: Side) -> &'static str {
    match side {
        Side::Client => "cli",
        Side::Server => "srv",
        Side::Listener => "lsn",
        Side::Unknown => "mid",
    }
}

/// `srv ESTABLISHED→CLOSE ✗`: side, edge, `*` when inferred, `✗` when abnormal.
pub fn row_label(r: &RowSnapshot) -> String {
    format!(
        "{} {}→{}{}{}",
        side_tag(r.side),
        r.from.name(),
        r.to.name(),
        if r.inferred { "*" } else { "" },
        if r.abnormal { " ✗" } else { "" }
    )
}

/// The dominant cause, then the others.
pub fn causes_text(r: &RowSnapshot) -> String {
    let mut causes = r.causes.clone();
    causes.sort_by_key(|(cause, n)| (std::cmp::Reverse(*n), *cause));
    causes
        .iter()
        .map(|(cause, n)| format!("{} {n}", cause.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn draw(app: &App, area: Rect, buf: &mut Buffer) {
    let wide = area.width >= 110;
    let rows = app.rows();
    let stat = |r: &RowSnapshot, f: fn(&crate::aggregate::histogram::TimeStats) -> u64| {
        r.time
            .stats
            .as_ref()
            .map_or("-".to_owned(), |s| duration(f(s)))
    };
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            let number = |text: String| Cell::from(Line::from(text).right_aligned());
            let mut cells = vec![
                Cell::from(row_label(r)),
                number(r.count.to_string()),
                number(r.interval_count.to_string()),
                number(rate(r.rate_per_s)),
                number(stat(r, |s| s.p50)),
            ];
            if wide {
                cells.push(number(stat(r, |s| s.p90)));
            }
            cells.push(number(stat(r, |s| s.p99)));
            cells.push(number(stat(r, |s| s.max)));
            if wide {
                cells.push(Cell::from(causes_text(r)));
            }
            let style = if r.abnormal {
                Style::new().fg(Color::Red)
            } else if r.unusual {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            };
            Row::new(cells).style(style)
        })
        .collect();
    let mut titles = vec!["TRANSITION", "COUNT", "+NEW", "RATE/s", "P50"];
    let mut widths = vec![
        Constraint::Min(24),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    if wide {
        titles.push("P90");
        widths.push(Constraint::Length(7));
    }
    titles.extend(["P99", "MAX"]);
    widths.extend([Constraint::Length(7), Constraint::Length(7)]);
    if wide {
        titles.push("CAUSES");
        widths.push(Constraint::Min(20));
    }
    let sorted = app.sort.name().to_uppercase();
    let header = Row::new(titles.into_iter().map(|t| {
        let style = if t.replace("RATE/s", "RATE").eq_ignore_ascii_case(&sorted) {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        let line = if t == "TRANSITION" || t == "CAUSES" {
            Line::from(t)
        } else {
            Line::from(t).right_aligned()
        };
        Cell::from(line).style(style)
    }));
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶");
    let mut state = TableState::default().with_selected(app.selected_index());
    StatefulWidget::render(table, area, buf, &mut state);
}
