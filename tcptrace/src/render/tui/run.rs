//! The full-screen view's own thread: it owns the terminal (a [`Session`]) and the [`App`],
//! draws whenever a snapshot, a key or a resize comes, and tells the live loop when the user
//! quits. The live loop hands it snapshots without ever waiting: a view that falls behind
//! misses snapshots, tracing misses nothing.

use std::{
    io::{self, Write},
    sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError},
    thread::{self, JoinHandle},
    time::Duration,
};

use crate::{
    aggregate::snapshot::Snapshot,
    os::terminal::Session,
    render::{
        terminal::CLEAR,
        tui::{
            app::{App, Flow, View as ViewKind},
            draw,
            keys::command,
        },
    },
};

/// How long the thread waits for a key before it looks for snapshots again: what a new
/// snapshot may wait before it is drawn.
const POLL: Duration = Duration::from_millis(50);
/// Inputs waiting for the view: beyond, new ones are dropped rather than waited for.
const QUEUE: usize = 8;

/// What the view is handed.
pub enum Input {
    Snapshot(Box<Snapshot>),
    /// The text of a `states` frame.
    States(Vec<String>),
    /// The stream ended with this final snapshot; the view stays until the user quits.
    End(Box<Snapshot>),
    /// The stream ended: the view ends with it. Sent, not left to the channel's closing: the
    /// states tab's thread holds a sender too.
    Stop,
}

/// The running view.
pub struct View {
    inputs: SyncSender<Input>,
    thread: JoinHandle<io::Result<()>>,
}

impl View {
    /// Takes the terminal and starts drawing; `on_quit` runs on the view's thread when the
    /// user quits (or the thread ends for any other reason), to stop the live loop;
    /// `on_states_tab` is told whether the states tab is shown, whenever that changes, so that
    /// its snapshots are taken only while someone looks.
    pub fn start(
        app: App,
        on_quit: impl FnOnce() + Send + 'static,
        on_states_tab: impl FnMut(bool) + Send + 'static,
    ) -> io::Result<Self> {
        let (inputs, received) = mpsc::sync_channel(QUEUE);
        // Entered here, so that a terminal that cannot be taken fails the command at once.
        let session = Session::enter()?;
        let thread = thread::Builder::new()
            .name("tcptrace-view".to_owned())
            .spawn(move || {
                let result = run(session, app, &received, on_states_tab);
                on_quit();
                result
            })?;
        Ok(Self { inputs, thread })
    }

    /// Hands an input over without waiting; false when the view is gone.
    pub fn send(&self, input: Input) -> bool {
        match self.inputs.try_send(input) {
            Ok(()) | Err(TrySendError::Full(_)) => true,
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// A sender for another thread (the states tab's snapshots).
    pub fn sender(&self) -> SyncSender<Input> {
        self.inputs.clone()
    }

    /// Hands the final snapshot over (`Some`: the view stays until the user quits) and waits
    /// for the view to end and the terminal to be restored.
    pub fn finish(self, last: Option<Snapshot>) -> io::Result<()> {
        // Waited for: it is the last input, and the view must see it (an error: the view is
        // gone already).
        let _ = self.inputs.send(match last {
            Some(last) => Input::End(Box::new(last)),
            None => Input::Stop,
        });
        drop(self.inputs);
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => Err(io::Error::other("the full-screen view panicked")),
        }
    }
}

fn run(
    mut session: Session,
    mut app: App,
    inputs: &Receiver<Input>,
    mut on_states_tab: impl FnMut(bool),
) -> io::Result<()> {
    let mut dirty = true;
    let mut states_shown = app.view == ViewKind::States;
    on_states_tab(states_shown);
    loop {
        if (app.view == ViewKind::States) != states_shown {
            states_shown = !states_shown;
            on_states_tab(states_shown);
        }
        if dirty {
            session
                .terminal()
                .draw(|frame| draw(&app, frame.area(), frame.buffer_mut()))?;
            dirty = false;
        }
        match session.next_event(POLL)? {
            Some(ratatui::crossterm::event::Event::Key(key)) => {
                if let Some(cmd) = command(&key) {
                    dirty = true;
                    if app.on_command(cmd) == Flow::Quit {
                        return Ok(());
                    }
                }
            }
            Some(ratatui::crossterm::event::Event::Resize(..)) => dirty = true,
            _ => {}
        }
        loop {
            match inputs.try_recv() {
                Ok(Input::Snapshot(snapshot)) => app.on_snapshot(*snapshot),
                Ok(Input::States(lines)) => app.on_states(lines),
                Ok(Input::End(snapshot)) => app.on_end(*snapshot),
                Ok(Input::Stop) => return Ok(()),
                Err(TryRecvError::Empty) => break,
                // The live stream stopped (a signal, the duration): the view ends with it,
                // unless it was handed an end to show.
                Err(TryRecvError::Disconnected) if app.ended => break,
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
            dirty = true;
        }
    }
}

/// The text a command writes for a terminal, frame by frame (each starting with the clear
/// sequence), handed to the view's states tab at each flush instead of being printed.
pub struct Frames {
    text: Vec<u8>,
    view: SyncSender<Input>,
}

impl Frames {
    pub fn new(view: SyncSender<Input>) -> Self {
        Self {
            text: Vec::new(),
            view,
        }
    }
}

impl Write for Frames {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.text.is_empty() {
            return Ok(());
        }
        let start = self
            .text
            .windows(CLEAR.len())
            .rposition(|w| w == CLEAR)
            .map_or(0, |at| at + CLEAR.len());
        let lines = String::from_utf8_lossy(&self.text[start..])
            .lines()
            .map(str::to_owned)
            .collect();
        self.text.clear();
        match self.view.try_send(Input::States(lines)) {
            Ok(()) | Err(TrySendError::Full(_)) => Ok(()),
            // The view is gone (the user quit): the command is ending.
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_hand_the_last_frame_over_without_its_clear_sequence() {
        let (view, received) = mpsc::sync_channel(4);
        let mut frames = Frames::new(view);
        frames.write_all(CLEAR).unwrap();
        frames.write_all(b"old\n").unwrap();
        frames.write_all(CLEAR).unwrap();
        frames.write_all(b"STATE  COUNT\nLISTEN 1\n").unwrap();
        frames.flush().unwrap();
        match received.try_recv().unwrap() {
            Input::States(lines) => assert_eq!(lines, ["STATE  COUNT", "LISTEN 1"]),
            _ => panic!("not the states"),
        }
        frames.flush().unwrap();
        assert!(received.try_recv().is_err(), "nothing new, nothing sent");
    }
}
