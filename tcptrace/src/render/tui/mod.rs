//! The full-screen view of `transitions` (and of `states --watch`) on a terminal: the state
//! diagram, the table, the detail of a transition, its breakdowns and the states tab, drawn
//! from the aggregation's snapshots into a ratatui [`Buffer`]. Pure but for [`run`], which
//! owns the terminal (through [`crate::os::terminal`]) on a thread of its own, so that the
//! live loop never waits on drawing.

pub mod app;
mod breakdown;
mod chrome;
mod detail;
pub mod diagram;
#[cfg(test)]
mod fixture;
pub mod keys;
pub mod run;
mod states;
mod table;
#[cfg(test)]
mod tests;

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
};

use self::app::{App, View};

/// Draws the whole screen: header, tabs, the current view, footer, and the overlay.
pub fn draw(app: &App, area: Rect, buf: &mut Buffer) {
    let [header, tabs, body, footer] = Layout::vertical([
        Constraint::Length(chrome::HEADER_LINES),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    chrome::header(app, header, buf);
    chrome::tabs(app, tabs, buf);
    match app.view {
        View::Diagram => match &app.snapshot {
            Some(snap) => {
                let d = diagram::layout(Rect::new(0, 0, body.width, body.height), snap);
                diagram::draw(&d, body, buf, app.selected.as_ref());
                let used = d.items.iter().map(|i| i.y + 1).max().unwrap_or(0);
                if body.height > used + 1 {
                    let line = Rect::new(body.x, body.bottom() - 1, body.width, 1);
                    chrome::selection(app, line, buf);
                }
            }
            None => ratatui::widgets::Widget::render(
                ratatui::widgets::Paragraph::new("Waiting for the first interval…"),
                body,
                buf,
            ),
        },
        View::Table => table::draw(app, body, buf),
        View::Detail => detail::draw(app, body, buf),
        View::Breakdown => breakdown::draw(app, body, buf),
        View::States => states::draw(app, body, buf),
    }
    chrome::footer(app, footer, buf);
    if app.help {
        chrome::help(area, buf);
    }
}
