//! The full-screen view's state, pure: the last snapshot shown, the trend of every transition
//! over the last minutes, what is selected and how the tables are sorted. Fed snapshots and
//! keys; the views draw from it. No clock, no terminal.

use std::collections::{HashMap, VecDeque};

use crate::{
    aggregate::{
        breakdowns::BreakdownKind,
        snapshot::{RowSnapshot, Snapshot},
    },
    core::{
        filter::{EventFilter, port_list},
        state::{Side, TcpState},
    },
    render::tui::keys::Command,
};

/// Points of trend kept per transition: one per snapshot, so ten minutes at one a second.
pub const TREND_POINTS: usize = 600;

/// Which command the view runs under: `transitions` shows every tab, `states --watch` its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Transitions,
    States,
}

/// The tabs, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Diagram,
    Table,
    Detail,
    Breakdown,
    States,
}

impl View {
    pub const ALL: [View; 5] = [
        Self::Diagram,
        Self::Table,
        Self::Detail,
        Self::Breakdown,
        Self::States,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Self::Diagram => "Diagram",
            Self::Table => "Table",
            Self::Detail => "Detail",
            Self::Breakdown => "Breakdown",
            Self::States => "States",
        }
    }
}

/// The table's sort order, cycled by `s`: along the diagram first, then by each column,
/// largest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Diagram,
    Count,
    Rate,
    P50,
    P99,
    Max,
}

impl Sort {
    pub fn next(self) -> Self {
        match self {
            Self::Diagram => Self::Count,
            Self::Count => Self::Rate,
            Self::Rate => Self::P50,
            Self::P50 => Self::P99,
            Self::P99 => Self::Max,
            Self::Max => Self::Diagram,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Diagram => "diagram",
            Self::Count => "count",
            Self::Rate => "rate",
            Self::P50 => "p50",
            Self::P99 => "p99",
            Self::Max => "max",
        }
    }

    fn key(self, r: &RowSnapshot) -> u64 {
        let stat = |f: fn(&crate::aggregate::histogram::TimeStats) -> u64| {
            r.time.stats.as_ref().map_or(0, f)
        };
        match self {
            Self::Diagram => 0,
            Self::Count => r.count,
            // Rates to a thousandth: enough to order, and a total order on integers.
            Self::Rate => (r.rate_per_s * 1000.0) as u64,
            Self::P50 => stat(|s| s.p50),
            Self::P99 => stat(|s| s.p99),
            Self::Max => stat(|s| s.max),
        }
    }
}

/// A transition's identity across snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub side: Side,
    pub from: TcpState,
    pub to: TcpState,
    pub abnormal: bool,
}

impl RowKey {
    pub fn of(r: &RowSnapshot) -> Self {
        Self {
            side: r.side,
            from: r.from,
            to: r.to,
            abnormal: r.abnormal,
        }
    }
}

/// One point of a transition's trend.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrendPoint {
    pub rate_per_s: f64,
    /// The p99 of the interval's times, as the upper bound of its log2 bucket, in
    /// microseconds; `None` when no transition of the interval had a time.
    pub p99_us: Option<u64>,
}

/// A transition's trend, and the cumulative log2 counts it was last computed from.
#[derive(Clone, Debug, Default)]
pub struct Trend {
    pub points: VecDeque<TrendPoint>,
    last_buckets: HashMap<u64, u64>,
}

impl Trend {
    fn push(&mut self, r: &RowSnapshot) {
        // The interval's distribution is the change of the cumulative one, bucket by bucket.
        let mut interval: Vec<(u64, u64)> = r
            .time
            .log2
            .iter()
            .map(|b| {
                let before = self.last_buckets.get(&b.hi_us).copied().unwrap_or(0);
                (b.hi_us, b.count.saturating_sub(before))
            })
            .collect();
        interval.retain(|(_, n)| *n > 0);
        self.last_buckets = r.time.log2.iter().map(|b| (b.hi_us, b.count)).collect();
        let total: u64 = interval.iter().map(|(_, n)| n).sum();
        let p99_us = (total > 0).then(|| {
            let want = total - total / 100;
            let mut seen = 0;
            interval
                .iter()
                .find(|(_, n)| {
                    seen += n;
                    seen >= want
                })
                .map_or(0, |(hi, _)| *hi)
        });
        if self.points.len() == TREND_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(TrendPoint {
            rate_per_s: r.rate_per_s,
            p99_us,
        });
    }
}

/// Whether the loop goes on after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

pub struct App {
    pub mode: Mode,
    pub view: View,
    /// The snapshot shown (the last one received, unless paused).
    pub snapshot: Option<Snapshot>,
    /// Snapshots received while paused, of which the last is shown on resume.
    held: Option<Snapshot>,
    pub paused: bool,
    pub help: bool,
    /// The stream ended (a replay done): the view stays until quit.
    pub ended: bool,
    pub sort: Sort,
    pub selected: Option<RowKey>,
    pub breakdown: BreakdownKind,
    /// The breakdown of all transitions rather than the selected one.
    pub breakdown_all: bool,
    /// Lines scrolled in the views that scroll (states, detail, breakdown).
    pub scroll: u16,
    /// Per transition.
    trends: HashMap<RowKey, Trend>,
    /// The filters in force, as the command line gave them.
    pub filters: String,
    /// The text of the last `states` frame, line by line.
    pub states: Vec<String>,
}

impl App {
    pub fn new(mode: Mode, filters: String) -> Self {
        Self {
            mode,
            view: match mode {
                Mode::Transitions => View::Diagram,
                Mode::States => View::States,
            },
            snapshot: None,
            held: None,
            paused: false,
            help: false,
            ended: false,
            sort: Sort::Diagram,
            selected: None,
            breakdown: BreakdownKind::Port,
            breakdown_all: false,
            scroll: 0,
            trends: HashMap::new(),
            filters,
            states: Vec::new(),
        }
    }

    /// A new snapshot: its trend points are kept even while paused, so that the trend has no
    /// hole on resume.
    pub fn on_snapshot(&mut self, snapshot: Snapshot) {
        for r in &snapshot.rows {
            self.trends.entry(RowKey::of(r)).or_default().push(r);
        }
        if self.paused {
            self.held = Some(snapshot);
        } else {
            self.snapshot = Some(snapshot);
        }
        self.keep_selection();
    }

    /// The stream ended (a replay done): its final snapshot, with the rates of the whole run
    /// as the summary gives them, shown until quit. Not a point of the trends: its interval is
    /// whatever was left after the last one.
    pub fn on_end(&mut self, snapshot: Snapshot) {
        self.ended = true;
        self.paused = false;
        self.held = None;
        self.snapshot = Some(snapshot.over_the_run());
        self.keep_selection();
    }

    pub fn on_states(&mut self, lines: Vec<String>) {
        if !self.paused {
            self.states = lines;
        }
    }

    pub fn trend(&self, key: &RowKey) -> Option<&VecDeque<TrendPoint>> {
        self.trends.get(key).map(|t| &t.points)
    }

    /// The tabs this mode shows.
    pub fn views(&self) -> &'static [View] {
        match self.mode {
            Mode::Transitions => &View::ALL,
            Mode::States => &[View::States],
        }
    }

    /// The rows in the table's order.
    pub fn rows(&self) -> Vec<&RowSnapshot> {
        let Some(snap) = &self.snapshot else {
            return Vec::new();
        };
        let mut rows: Vec<&RowSnapshot> = snap.rows.iter().collect();
        if self.sort != Sort::Diagram {
            // Stable: equal keys stay along the diagram.
            rows.sort_by_key(|r| std::cmp::Reverse(self.sort.key(r)));
        }
        rows
    }

    pub fn selected_row(&self) -> Option<&RowSnapshot> {
        let key = self.selected?;
        self.snapshot
            .as_ref()?
            .rows
            .iter()
            .find(|r| RowKey::of(r) == key)
    }

    /// Position of the selection in the table's order.
    pub fn selected_index(&self) -> Option<usize> {
        let key = self.selected?;
        self.rows().iter().position(|r| RowKey::of(r) == key)
    }

    /// Selects the first row when nothing (or a row that is gone) is selected.
    fn keep_selection(&mut self) {
        if self.selected_index().is_none() {
            self.selected = self.rows().first().map(|r| RowKey::of(r));
        }
    }

    fn move_selection(&mut self, by: isize) {
        let keys: Vec<RowKey> = self.rows().iter().map(|r| RowKey::of(r)).collect();
        if keys.is_empty() {
            return;
        }
        let at = self.selected_index().unwrap_or(0) as isize;
        let to = (at + by).clamp(0, keys.len() as isize - 1) as usize;
        self.selected = Some(keys[to]);
    }

    fn scrolls(&self) -> bool {
        matches!(self.view, View::States | View::Detail | View::Breakdown)
    }

    pub fn on_command(&mut self, command: Command) -> Flow {
        if self.help && !matches!(command, Command::Quit) {
            // Any key closes the overlay.
            self.help = false;
            return Flow::Continue;
        }
        match command {
            Command::Quit => return Flow::Quit,
            Command::Help => self.help = true,
            Command::Up | Command::Down if self.scrolls() && self.view != View::Detail => {
                self.scroll = if command == Command::Up {
                    self.scroll.saturating_sub(1)
                } else {
                    self.scroll.saturating_add(1)
                };
            }
            Command::Up => self.move_selection(-1),
            Command::Down => self.move_selection(1),
            Command::PageUp => self.move_selection(-10),
            Command::PageDown => self.move_selection(10),
            Command::Enter if self.mode == Mode::Transitions => {
                self.view = View::Detail;
                self.scroll = 0;
            }
            Command::Back if self.mode == Mode::Transitions => {
                self.view = View::Diagram;
                self.scroll = 0;
            }
            Command::NextView | Command::PreviousView => {
                let views = self.views();
                let at = views.iter().position(|v| *v == self.view).unwrap_or(0);
                let step = if command == Command::NextView {
                    1
                } else {
                    views.len() - 1
                };
                self.view = views[(at + step) % views.len()];
                self.scroll = 0;
            }
            Command::Breakdown if self.mode == Mode::Transitions => {
                if self.view == View::Breakdown {
                    self.breakdown = self.breakdown.next();
                } else {
                    self.view = View::Breakdown;
                }
                self.scroll = 0;
            }
            Command::BreakdownScope => self.breakdown_all = !self.breakdown_all,
            Command::Sort => {
                self.sort = self.sort.next();
                self.keep_selection();
            }
            Command::Pause => {
                self.paused = !self.paused;
                if !self.paused
                    && let Some(held) = self.held.take()
                {
                    self.snapshot = Some(held);
                    self.keep_selection();
                }
            }
            Command::Enter | Command::Back | Command::Breakdown => {}
        }
        Flow::Continue
    }
}

/// The filters in force, as the command line gave them.
pub fn describe_filter(filter: &EventFilter) -> String {
    let mut parts = Vec::new();
    if let Some(family) = filter.family {
        parts.push(match family {
            crate::core::event::Family::Inet => "-4".to_owned(),
            crate::core::event::Family::Inet6 => "-6".to_owned(),
        });
    }
    if !filter.lports.is_empty() {
        parts.push(format!("--lport {}", port_list(&filter.lports)));
    }
    if !filter.rports.is_empty() {
        parts.push(format!("--rport {}", port_list(&filter.rports)));
    }
    if let Some(pid) = filter.pid {
        parts.push(format!("--pid {pid}"));
    }
    if let Some(comm) = &filter.comm {
        parts.push(format!("--comm {comm}"));
    }
    if let Some(netns) = filter.netns {
        parts.push(format!("--netns {netns}"));
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(" ")
    }
}
