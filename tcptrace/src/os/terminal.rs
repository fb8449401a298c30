//! The terminal as the full-screen view uses it: raw mode, the alternate screen and a hidden
//! cursor while a [`Session`] lives, and the terminal's keys and resizes as events. Restored
//! on every way out: the session's drop (a return, an error, the end of a thread), and a
//! panic, through a hook that restores before the panic message is printed. Signals end the
//! live loop, whose end drops the session.

use std::{
    io::{self, Stdout},
    sync::Once,
    time::Duration,
};

use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor,
        event::{self, Event},
        execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};

pub type Backend = CrosstermBackend<Stdout>;

/// Leaves the alternate screen, shows the cursor and ends raw mode; harmless when none of
/// them is in force.
pub fn restore() -> io::Result<()> {
    let raw = terminal::disable_raw_mode();
    execute!(io::stdout(), LeaveAlternateScreen, cursor::Show)?;
    raw
}

/// Restores the terminal before any panic message, so that the message is readable and the
/// shell usable. Installed once; the previous hook runs after.
fn restore_on_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = restore();
            previous(info);
        }));
    });
}

/// The terminal, full-screen, while it lives.
pub struct Session {
    terminal: Terminal<Backend>,
}

impl Session {
    pub fn enter() -> io::Result<Self> {
        restore_on_panic();
        terminal::enable_raw_mode()?;
        let entered = execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match entered {
            Ok(terminal) => Ok(Self { terminal }),
            Err(err) => {
                let _ = restore();
                Err(err)
            }
        }
    }

    pub fn terminal(&mut self) -> &mut Terminal<Backend> {
        &mut self.terminal
    }

    /// The next key or resize, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        if event::poll(timeout)? {
            event::read().map(Some)
        } else {
            Ok(None)
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = restore();
    }
}
