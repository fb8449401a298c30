//! The breakdown view: the selected transition, or all of them (`a`), by service port,
//! process, remote address or namespace (`b` cycles), top keys with the rest as "other".

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    widgets::{Cell, Paragraph, Row, Table, Widget},
};

use crate::{
    aggregate::breakdowns::BreakdownSnapshot,
    render::tui::{app::App, table::row_label},
};

pub fn draw(app: &App, area: Rect, buf: &mut Buffer) {
    let kind = app.breakdown;
    let (what, breakdown): (String, Option<&BreakdownSnapshot>) = if app.breakdown_all {
        (
            "all transitions".to_owned(),
            app.snapshot.as_ref().and_then(|s| s.breakdown(kind)),
        )
    } else {
        match app.selected_row() {
            Some(r) => (row_label(r), r.breakdown(kind)),
            None => ("no transition selected".to_owned(), None),
        }
    };
    let [title, table] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    Paragraph::new(format!(
        "by {} — {what}   (b: next kind, a: all or selected)",
        kind.title().to_lowercase()
    ))
    .style(Style::new().add_modifier(Modifier::BOLD))
    .render(title, buf);
    let Some(b) = breakdown else {
        return;
    };
    let total = b.total().max(1);
    let bar_width = (area.width / 4) as usize;
    let share = |count: u64| {
        let bar = (count as usize * bar_width).div_ceil(total as usize);
        format!(
            "{:>5.1}% {}",
            count as f64 * 100.0 / total as f64,
            "█".repeat(bar)
        )
    };
    let mut rows: Vec<Row> = b
        .top
        .iter()
        .map(|(key, c)| {
            let style = if c.abnormal > 0 {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(key.to_string()),
                Cell::from(c.count.to_string()),
                Cell::from(c.interval_count.to_string()),
                Cell::from(c.abnormal.to_string()),
                Cell::from(share(c.count)),
            ])
            .style(style)
        })
        .collect();
    if b.other.count > 0 {
        rows.push(
            Row::new(vec![
                Cell::from(format!("other ({} keys)", b.other_keys)),
                Cell::from(b.other.count.to_string()),
                Cell::from(b.other.interval_count.to_string()),
                Cell::from(b.other.abnormal.to_string()),
                Cell::from(share(b.other.count)),
            ])
            .style(Style::new().fg(Color::DarkGray)),
        );
    }
    let rows: Vec<Row> = rows.into_iter().skip(app.scroll as usize).collect();
    Table::new(
        rows,
        [
            Constraint::Min(22),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(bar_width as u16 + 7),
        ],
    )
    .header(
        Row::new([kind.title(), "COUNT", "+NEW", "ABNORMAL", "SHARE"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .column_spacing(1)
    .render(table, buf);
}
