//! The keys of the full-screen view: what each does, and the lines of the footer and of the `?`
//! overlay, from one table so that they cannot disagree.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Up,
    Down,
    PageUp,
    PageDown,
    Enter,
    Back,
    NextView,
    PreviousView,
    Breakdown,
    BreakdownScope,
    Sort,
    Pause,
    Help,
    Quit,
}

/// The keys as the footer and the overlay show them: (keys, what they do).
pub const KEYS: &[(&str, &str)] = &[
    (
        "↑↓ j k",
        "select a transition (scroll in States, Breakdown)",
    ),
    ("PgUp PgDn", "select ten rows up or down"),
    ("Enter", "detail of the selected transition"),
    ("Esc", "back to the diagram"),
    ("Tab S-Tab", "next or previous view"),
    ("b", "breakdown; again: by port, process, remote, netns"),
    ("a", "breakdown of all transitions or of the selected one"),
    ("s", "sort the table: diagram, count, rate, p50, p99, max"),
    ("p", "pause the display (tracing goes on)"),
    ("?", "this help; any key closes it"),
    ("q Ctrl-C", "quit: restore the terminal, print the summary"),
];

/// The footer: the most used keys, shortest first.
pub const FOOTER: &[(&str, &str)] = &[
    ("↑↓", "select"),
    ("⏎", "detail"),
    ("Tab", "view"),
    ("b", "breakdown"),
    ("s", "sort"),
    ("p", "pause"),
    ("?", "help"),
    ("q", "quit"),
];

/// The footer of `states --watch`, which has one view.
pub const STATES_FOOTER: &[(&str, &str)] = &[
    ("↑↓", "scroll"),
    ("p", "pause"),
    ("?", "help"),
    ("q", "quit"),
];

/// What a key does; `None`: nothing.
pub fn command(key: &KeyEvent) -> Option<Command> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    Some(match key.code {
        KeyCode::Char('c') if ctrl => Command::Quit,
        KeyCode::Char('q') | KeyCode::Char('Q') => Command::Quit,
        KeyCode::Up | KeyCode::Char('k') => Command::Up,
        KeyCode::Down | KeyCode::Char('j') => Command::Down,
        KeyCode::PageUp => Command::PageUp,
        KeyCode::PageDown => Command::PageDown,
        KeyCode::Enter => Command::Enter,
        KeyCode::Esc | KeyCode::Backspace => Command::Back,
        KeyCode::Tab => Command::NextView,
        KeyCode::BackTab => Command::PreviousView,
        KeyCode::Char('b') => Command::Breakdown,
        KeyCode::Char('a') => Command::BreakdownScope,
        KeyCode::Char('s') => Command::Sort,
        KeyCode::Char('p') | KeyCode::Char(' ') => Command::Pause,
        KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => Command::Help,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Option<Command> {
        command(&KeyEvent::new(code, modifiers))
    }

    #[test]
    fn the_documented_keys_do_what_they_say() {
        let none = KeyModifiers::NONE;
        assert_eq!(key(KeyCode::Char('q'), none), Some(Command::Quit));
        assert_eq!(
            key(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Command::Quit)
        );
        assert_eq!(key(KeyCode::Char('c'), none), None);
        assert_eq!(key(KeyCode::Char('j'), none), Some(Command::Down));
        assert_eq!(key(KeyCode::Up, none), Some(Command::Up));
        assert_eq!(key(KeyCode::Enter, none), Some(Command::Enter));
        assert_eq!(key(KeyCode::Tab, none), Some(Command::NextView));
        assert_eq!(key(KeyCode::Char('b'), none), Some(Command::Breakdown));
        assert_eq!(key(KeyCode::Char('s'), none), Some(Command::Sort));
        assert_eq!(key(KeyCode::Char('p'), none), Some(Command::Pause));
        assert_eq!(key(KeyCode::Char('?'), none), Some(Command::Help));
    }

    #[test]
    fn releases_do_nothing() {
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(command(&release), None);
    }
}
