//! The states tab: the per-state counts and findings of `states --watch`, as its text renderer
//! wrote them, scrollable.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::{Color, Style},
    text::Line,
    widgets::{Paragraph, Widget},
};

use crate::render::tui::app::App;

pub fn draw(app: &App, area: Rect, buf: &mut Buffer) {
    if app.states.is_empty() {
        Paragraph::new("Waiting for the first snapshot of the sockets (inet_diag)…")
            .style(Style::new().fg(Color::DarkGray))
            .render(area, buf);
        return;
    }
    let lines: Vec<Line> = app.states.iter().map(|l| Line::raw(l.as_str())).collect();
    let max_scroll = (lines.len() as u16).saturating_sub(area.height);
    Paragraph::new(lines)
        .scroll((app.scroll.min(max_scroll), 0))
        .render(area, buf);
}
