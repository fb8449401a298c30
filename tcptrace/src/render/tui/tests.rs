//! Snapshot tests of every view at 80×24 and 200×60, drawn through ratatui's `TestBackend`
//! from the recorded storm replayed as `transitions --replay` replays it, compared cell for
//! cell (as text) with `tests/e2e/testdata/tui/`. After an intended change of a view,
//! `UPDATE_GOLDEN=1 cargo test -p tcptrace tui` rewrites them; review the diff.

use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

use super::{
    app::{App, Flow, Mode, RowKey, View},
    draw,
    fixture::storm_snapshots,
    keys::Command,
};
use crate::{
    aggregate::breakdowns::BreakdownKind,
    census::{
        Context, count,
        tests::{owners, population},
    },
    core::{
        filter::EventFilter,
        state::{Side, TcpState},
    },
    render::{
        states::{frame::Frame, text::text},
        tui::app::describe_filter,
    },
};

const SIZES: [(u16, u16); 2] = [(80, 24), (200, 60)];

/// The text of a buffer, one line per row, trailing blanks cut.
fn text_of(buf: &Buffer) -> String {
    let width = buf.area.width as usize;
    let mut out = String::new();
    for row in buf.content.chunks(width) {
        let line: String = row.iter().map(|cell| cell.symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| draw(app, frame.area(), frame.buffer_mut()))
        .unwrap();
    text_of(terminal.backend().buffer())
}

fn golden(name: &str, actual: &str) {
    crate::render::golden_file::check("../tests/e2e/testdata/tui", name, actual);
}

/// The storm's view as `transitions --lport 47012` shows it, every interval received.
fn storm_app() -> App {
    let filter = EventFilter {
        lports: vec![47012],
        ..EventFilter::default()
    };
    let mut app = App::new(Mode::Transitions, describe_filter(&filter));
    let mut snapshots = storm_snapshots();
    let last = snapshots.pop().unwrap();
    for snapshot in snapshots {
        app.on_snapshot(snapshot);
    }
    // As at the end of `transitions --replay` on a terminal.
    app.on_end(last);
    app
}

const RESET: RowKey = RowKey {
    side: Side::Server,
    from: TcpState::Established,
    to: TcpState::Close,
    abnormal: true,
};

fn select(app: &mut App, key: RowKey) {
    // As a user would: down until it is selected.
    for _ in 0..app.rows().len() {
        if app.selected == Some(key) {
            return;
        }
        app.on_command(Command::Down);
    }
    assert_eq!(
        app.selected,
        Some(key),
        "{key:?} is reachable with the keys"
    );
}

fn each_size(name: &str, app: &App) -> Vec<String> {
    SIZES
        .iter()
        .map(|(w, h)| {
            let drawn = render(app, *w, *h);
            golden(&format!("{name}-{w}x{h}.txt"), &drawn);
            drawn
        })
        .collect()
}

#[test]
fn diagram_view() {
    let mut app = storm_app();
    select(&mut app, RESET);
    for drawn in each_size("diagram", &app) {
        // The header, whole, on the first line; the diagram's both paths; the abnormal edge.
        let first = drawn.lines().next().unwrap();
        assert!(first.contains("162 transitions"), "{first}");
        assert!(first.contains("0 lost"), "{first}");
        assert!(drawn.contains("filters: --lport 47012"));
        assert!(drawn.contains("SERVER PATH"));
        assert!(drawn.contains("CLIENT PATH"));
        assert!(drawn.contains("TIME_WAIT*"));
        assert!(drawn.contains("✗20 →CLOSE reset_"));
        assert!(drawn.contains("q quit"));
        assert!(
            drawn.contains("selected: srv ESTABLISHED→CLOSE ✗"),
            "{drawn}"
        );
    }
}

#[test]
fn table_view_sorted_by_count() {
    let mut app = storm_app();
    app.view = View::Table;
    app.on_command(Command::Sort);
    for drawn in each_size("table-by-count", &app) {
        let rows: Vec<&str> = drawn
            .lines()
            .filter(|l| l.contains("srv ") || l.contains("lsn "))
            .collect();
        assert!(rows[0].contains("40"), "{rows:?}");
        assert!(drawn.contains("srv ESTABLISHED→CLOSE ✗"));
    }
}

#[test]
fn detail_view_of_the_abnormal_close() {
    let mut app = storm_app();
    select(&mut app, RESET);
    app.on_command(Command::Enter);
    assert_eq!(app.view, View::Detail);
    for drawn in each_size("detail", &app) {
        assert!(drawn.contains("count 20"), "{drawn}");
        assert!(
            drawn.contains("127.0.0.1:47012"),
            "an exemplar on the storm's port"
        );
        assert!(drawn.contains("reset_received"));
        assert!(drawn.contains("time in ESTABLISHED"));
    }
}

#[test]
fn breakdown_views() {
    let mut app = storm_app();
    select(&mut app, RESET);
    app.on_command(Command::Breakdown);
    assert_eq!(
        (app.view, app.breakdown),
        (View::Breakdown, BreakdownKind::Port)
    );
    for drawn in each_size("breakdown-port", &app) {
        assert!(drawn.contains("47012"), "{drawn}");
    }
    app.on_command(Command::Breakdown);
    app.on_command(Command::Breakdown);
    app.on_command(Command::BreakdownScope);
    assert_eq!(app.breakdown, BreakdownKind::Remote);
    for drawn in each_size("breakdown-all-remote", &app) {
        assert!(drawn.contains("all transitions"));
        assert!(
            drawn
                .lines()
                .any(|l| l.contains("127.0.0.1") && l.contains("160")),
            "{drawn}"
        );
    }
}

#[test]
fn states_view() {
    let owners = owners();
    let ctx = Context {
        owners: Some(&owners),
        ..Context::default()
    };
    let census = count(&population(), None, &ctx, None);
    let mut out = Vec::new();
    text(
        &mut out,
        &Frame {
            census: &census,
            previous: None,
            by: None,
            interrupted: false,
            live: None,
        },
    )
    .unwrap();
    let lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut app = storm_app();
    app.on_states(lines.clone());
    app.on_command(Command::PreviousView);
    assert_eq!(app.view, View::States);
    for drawn in each_size("states", &app) {
        assert!(drawn.contains("CLOSE_WAIT"));
        assert!(drawn.contains("Findings:"));
    }
    // `states --watch` on a terminal: the states tab alone.
    let mut states = App::new(Mode::States, "none".to_owned());
    states.on_states(lines);
    assert_eq!(states.views(), &[View::States]);
    states.on_command(Command::NextView);
    assert_eq!(states.view, View::States);
    for drawn in each_size("states-watch", &states) {
        assert!(drawn.starts_with("tcptrace states --watch"));
    }
}

#[test]
fn help_overlay() {
    let mut app = storm_app();
    app.on_command(Command::Help);
    for drawn in each_size("help", &app) {
        assert!(drawn.contains("pause the display"));
        assert!(drawn.contains("--plain"));
    }
    assert_eq!(app.on_command(Command::Down), Flow::Continue);
    assert!(!app.help, "any key closes the overlay");
    assert_eq!(app.on_command(Command::Quit), Flow::Quit);
}

#[test]
fn pause_holds_the_view_and_keeps_the_trend() {
    let snapshots = storm_snapshots();
    let mut app = App::new(Mode::Transitions, "none".to_owned());
    app.on_snapshot(snapshots[0].clone());
    app.on_command(Command::Pause);
    for s in &snapshots[1..] {
        app.on_snapshot(s.clone());
    }
    assert_eq!(app.snapshot.as_ref(), Some(&snapshots[0]));
    let key = RowKey::of(&snapshots.last().unwrap().rows[0]);
    app.on_command(Command::Pause);
    assert_eq!(app.snapshot.as_ref(), snapshots.last());
    assert!(app.trend(&key).unwrap().len() >= 2);
}

#[test]
fn the_trend_gives_each_interval_its_own_p99() {
    let snapshots = storm_snapshots();
    let mut app = App::new(Mode::Transitions, "none".to_owned());
    for s in &snapshots {
        app.on_snapshot(s.clone());
    }
    let last = snapshots.last().unwrap();
    let row = last.rows.iter().find(|r| RowKey::of(r) == RESET).unwrap();
    let trend = app.trend(&RESET).unwrap();
    // The intervals' counts add up to the row's, and every interval with transitions has a p99
    // no larger than the whole run's largest bucket.
    let total: f64 = snapshots
        .iter()
        .filter_map(|s| s.rows.iter().find(|r| RowKey::of(r) == RESET))
        .map(|r| r.interval_count as f64)
        .sum();
    assert_eq!(total as u64, row.count);
    let top = row.time.log2.last().unwrap().hi_us;
    assert!(trend.iter().any(|p| p.p99_us.is_some()));
    assert!(trend.iter().all(|p| p.p99_us.is_none_or(|us| us <= top)));
}

#[test]
fn every_view_draws_at_any_size_without_panicking() {
    let mut app = storm_app();
    select(&mut app, RESET);
    let mut states = App::new(Mode::States, "none".to_owned());
    states.on_states(vec!["STATE  COUNT".to_owned(); 50]);
    for view in View::ALL {
        app.view = view;
        for help in [false, true] {
            app.help = help;
            for (w, h) in [
                (1, 1),
                (2, 3),
                (10, 4),
                (30, 8),
                (79, 23),
                (120, 30),
                (161, 40),
            ] {
                render(&app, w, h);
                render(&states, w, h);
            }
        }
    }
}
