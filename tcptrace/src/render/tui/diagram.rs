//! The TCP state diagram, laid out for the space there is: the client path (active open) and
//! the server path (passive open) side by side, each from its birth through ESTABLISHED to its
//! two ways of closing (closing first: FIN_WAIT1, FIN_WAIT2, TIME_WAIT; the peer closing first:
//! CLOSE_WAIT, LAST_ACK, CLOSE). Each edge is labelled with its count and rate; an abnormal
//! close is marked beside the state it left, with its dominant cause; TIME_WAIT is marked
//! inferred; the request sockets' fates are beside SYN_RECV.
//!
//! Compact (plain state names, one line per edge) up to [`WIDE_MIN`]; boxed states and
//! percentiles on the edges beyond. [`layout`] is pure and tested; [`draw`] paints it.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::{Color, Modifier, Style},
};

use crate::{
    aggregate::snapshot::{RowSnapshot, Snapshot},
    core::state::{Side, TcpState},
    render::{
        tui::app::RowKey,
        units::{duration, rate},
    },
};

/// The least space for the wide form: two lanes of 80 columns, and the boxes' height.
pub const WIDE_MIN: (u16, u16) = (160, 36);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Compact,
    Wide,
}

impl Form {
    pub fn for_area(area: Rect) -> Self {
        if area.width >= WIDE_MIN.0 && area.height >= WIDE_MIN.1 {
            Self::Wide
        } else {
            Self::Compact
        }
    }
}

/// What an item of the drawing is, for its style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Title,
    State,
    /// A state box's border.
    Frame,
    /// Connector lines.
    Line,
    /// An edge's label: count and rate.
    Edge,
    /// An edge that no transition took yet.
    Idle,
    /// An abnormal close, beside its from-state.
    Abnormal,
    Note,
}

/// One piece of text at a place, clipped to `width` cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub text: String,
    pub kind: Kind,
    /// The transition it stands for, when it is an edge.
    pub row: Option<RowKey>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagram {
    pub items: Vec<Item>,
}

impl Diagram {
    fn put(&mut self, x: u16, y: u16, width: u16, text: impl Into<String>, kind: Kind) {
        self.items.push(Item {
            x,
            y,
            width,
            text: text.into(),
            kind,
            row: None,
        });
    }

    fn edge(&mut self, x: u16, y: u16, width: u16, text: String, kind: Kind, row: Option<RowKey>) {
        self.items.push(Item {
            x,
            y,
            width,
            text,
            kind,
            row,
        });
    }

    /// The items standing for a transition.
    pub fn of_row(&self, key: &RowKey) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(move |i| i.row.as_ref() == Some(key))
    }
}

/// The states of one lane, top to bottom: trunk (birth, open, ESTABLISHED), then the branch
/// that closes first and the branch whose peer does.
struct Lane {
    side: Side,
    title: &'static str,
    trunk: [TcpState; 3],
    active: [TcpState; 3],
    passive: [TcpState; 3],
}

const LANES: [Lane; 2] = [
    Lane {
        side: Side::Client,
        title: "CLIENT PATH (active open)",
        trunk: [TcpState::Close, TcpState::SynSent, TcpState::Established],
        active: [TcpState::FinWait1, TcpState::FinWait2, TcpState::TimeWait],
        passive: [TcpState::CloseWait, TcpState::LastAck, TcpState::Close],
    },
    Lane {
        side: Side::Server,
        title: "SERVER PATH (passive open)",
        trunk: [TcpState::Listen, TcpState::SynRecv, TcpState::Established],
        active: [TcpState::FinWait1, TcpState::FinWait2, TcpState::TimeWait],
        passive: [TcpState::CloseWait, TcpState::LastAck, TcpState::Close],
    },
];

fn find(snap: &Snapshot, side: Side, from: TcpState, to: TcpState) -> Option<&RowSnapshot> {
    snap.rows
        .iter()
        .find(|r| r.side == side && r.from == from && r.to == to && !r.abnormal)
}

fn state_name(state: TcpState) -> String {
    if state == TcpState::TimeWait {
        format!("{}*", state.name())
    } else {
        state.name().to_owned()
    }
}

fn edge_label(r: Option<&RowSnapshot>, form: Form) -> (String, Kind) {
    let Some(r) = r else {
        return ("│".to_owned(), Kind::Idle);
    };
    let mut text = format!("│ {} · {}/s", r.count, rate(r.rate_per_s));
    if form == Form::Wide
        && let Some(stats) = &r.time.stats
    {
        text = format!(
            "│ {} {}/s p50 {} p99 {}",
            r.count,
            rate(r.rate_per_s),
            duration(stats.p50),
            duration(stats.p99)
        );
    }
    (text, Kind::Edge)
}

/// `✗N cause` for the abnormal closes from `from` on `side`: the dominant cause only when
/// compact, all of them when wide.
fn abnormal_label(
    snap: &Snapshot,
    side: Side,
    from: TcpState,
    form: Form,
) -> Option<(String, RowKey)> {
    let r = snap
        .rows
        .iter()
        .find(|r| r.side == side && r.from == from && r.abnormal)?;
    let causes = match form {
        Form::Compact => r
            .causes
            .iter()
            .max_by_key(|(cause, n)| (*n, std::cmp::Reverse(*cause)))
            .map(|(cause, _)| cause.name().to_owned())
            .unwrap_or_default(),
        Form::Wide => r
            .causes
            .iter()
            .map(|(cause, n)| format!("{} {n}", cause.name()))
            .collect::<Vec<_>>()
            .join(", "),
    };
    Some((format!("✗{} →CLOSE {causes}", r.count), RowKey::of(r)))
}

/// The request sockets' fates, from the kernel's counters: one line when compact, two (beside
/// the box's top and bottom lines) when wide.
fn request_label(snap: &Snapshot, form: Form) -> Option<Vec<String>> {
    let rs = snap.request_sockets.as_ref()?;
    let t = &rs.total;
    Some(match form {
        Form::Compact => vec![format!(
            "req: {} rst {} ovf {} drop",
            t.embryonic_rsts,
            t.listen_overflows,
            t.listen_drops + t.req_q_full_drop
        )],
        Form::Wide => vec![
            format!(
                "request sockets: {} reset, {} overflows, {} drops",
                t.embryonic_rsts,
                t.listen_overflows,
                t.listen_drops + t.req_q_full_drop,
            ),
            format!(
                "{} SYN cookies, {} SYN-ACK retransmits",
                t.syncookies_sent, rs.synack_retransmits
            ),
        ],
    })
}

/// Lays the diagram out in `area` (its own coordinates: the items' x and y are offsets).
pub fn layout(area: Rect, snap: &Snapshot) -> Diagram {
    let form = Form::for_area(area);
    let mut d = Diagram::default();
    let lane_width = area.width / 2;
    for (i, lane) in LANES.iter().enumerate() {
        let x0 = lane_width * i as u16;
        lay_lane(&mut d, lane, x0, lane_width.saturating_sub(1), form, snap);
    }
    notes(&mut d, snap, Geometry::of(form).notes_y(), area.width, form);
    d.items
        .retain(|item| item.y < area.height && item.x < area.width);
    for item in &mut d.items {
        item.width = item.width.min(area.width - item.x);
    }
    d
}

/// Where a lane's rows go: its nodes' top lines and the lines of its edges' labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Height of a state (1, or 3 when boxed).
    pub node_h: u16,
    /// Lines between two states: the label, and the arrow head when wide.
    pub gap: u16,
}

impl Geometry {
    pub fn of(form: Form) -> Self {
        match form {
            Form::Compact => Self { node_h: 1, gap: 1 },
            Form::Wide => Self { node_h: 3, gap: 2 },
        }
    }

    fn step(self) -> u16 {
        self.node_h + self.gap
    }

    /// The top line of the trunk's state `k` (birth, open, ESTABLISHED).
    pub fn trunk_y(self, k: u16) -> u16 {
        1 + k * self.step()
    }

    /// The line that forks below ESTABLISHED.
    pub fn fork_y(self) -> u16 {
        self.trunk_y(2) + self.node_h
    }

    /// The top line of a branch's state `j`.
    pub fn branch_y(self, j: u16) -> u16 {
        self.fork_y() + 1 + self.gap + j * self.step()
    }

    /// The line of the edges off the drawn paths.
    pub fn extras_y(self) -> u16 {
        self.branch_y(2) + self.node_h
    }

    /// The notes under the lanes.
    pub fn notes_y(self) -> u16 {
        self.extras_y() + 1
    }
}

fn lay_lane(d: &mut Diagram, lane: &Lane, x0: u16, width: u16, form: Form, snap: &Snapshot) {
    let side = lane.side;
    let g = Geometry::of(form);
    d.put(x0, 0, width, lane.title, Kind::Title);
    let branch = width / 2;
    // Connectors run under the boxes' second column when wide.
    let offset = match form {
        Form::Compact => 0,
        Form::Wide => 2,
    };
    let node = |d: &mut Diagram, x: u16, y: u16, state: TcpState, room: u16| {
        let name = state_name(state);
        let end_x = match form {
            Form::Compact => {
                d.put(x, y, room, name.clone(), Kind::State);
                x + name.chars().count() as u16
            }
            Form::Wide => {
                let w = name.chars().count() as u16 + 4;
                let bar = "─".repeat(w as usize - 2);
                d.put(x, y, w, format!("┌{bar}┐"), Kind::Frame);
                d.put(x, y + 1, w, format!("│ {name} │"), Kind::State);
                d.put(x, y + 2, w, format!("└{bar}┘"), Kind::Frame);
                x + w
            }
        };
        let label_y = y + g.node_h / 2;
        let mut at = end_x + 1;
        if state != TcpState::Close
            && state != TcpState::TimeWait
            && let Some((text, key)) = abnormal_label(snap, side, state, form)
        {
            let w = text.chars().count() as u16;
            d.edge(
                at,
                label_y,
                (x + room).saturating_sub(at),
                text,
                Kind::Abnormal,
                Some(key),
            );
            at += w + 1;
        }
        if side == Side::Server
            && state == TcpState::SynRecv
            && let Some(lines) = request_label(snap, form)
        {
            match form {
                Form::Compact => {
                    at += 1;
                    for text in lines {
                        d.put(at, label_y, (x + room).saturating_sub(at), text, Kind::Note);
                    }
                }
                // Beside the box's top and bottom lines, clear of an abnormal close's mark.
                Form::Wide => {
                    let at = end_x + 2;
                    for (text, y) in lines.into_iter().zip([y, y + 2]) {
                        d.put(at, y, (x + room).saturating_sub(at), text, Kind::Note);
                    }
                }
            }
        }
        if side == Side::Server && state == TcpState::Listen {
            let count = |from, to| {
                snap.rows
                    .iter()
                    .find(|r| r.side == Side::Listener && r.from == from && r.to == to)
                    .map_or(0, |r| r.count)
            };
            let text = format!(
                "listeners +{} −{}",
                count(TcpState::Close, TcpState::Listen),
                count(TcpState::Listen, TcpState::Close)
            );
            let key = snap
                .rows
                .iter()
                .find(|r| r.side == Side::Listener)
                .map(RowKey::of);
            at += 1;
            d.edge(
                at,
                label_y,
                (x + room).saturating_sub(at),
                text,
                Kind::Note,
                key,
            );
        }
    };
    // The edge from `from` into the state whose top line is `to_y`.
    let edge = |d: &mut Diagram, x: u16, to_y: u16, from: TcpState, to: TcpState, room: u16| {
        let r = find(snap, side, from, to);
        let (text, kind) = edge_label(r, form);
        let x = x + offset;
        d.edge(
            x,
            to_y - g.gap,
            room.saturating_sub(offset),
            text,
            kind,
            r.map(RowKey::of),
        );
        if form == Form::Wide {
            d.put(x, to_y - 1, 1, "▼", Kind::Line);
        }
    };
    for (k, state) in lane.trunk.iter().enumerate() {
        let k = k as u16;
        if k > 0 {
            edge(
                d,
                x0,
                g.trunk_y(k),
                lane.trunk[k as usize - 1],
                *state,
                width,
            );
        }
        node(d, x0, g.trunk_y(k), *state, width);
    }
    let fork_len = branch.saturating_sub(1) as usize;
    d.put(
        x0 + offset,
        g.fork_y(),
        fork_len as u16 + 2,
        format!("├{}┐", "─".repeat(fork_len)),
        Kind::Line,
    );
    for (x, column, room) in [
        (x0, &lane.active, branch.saturating_sub(1)),
        (x0 + branch, &lane.passive, width - branch),
    ] {
        let mut from = TcpState::Established;
        for (j, state) in column.iter().enumerate() {
            let y = g.branch_y(j as u16);
            // The row of FIN_WAIT2 -> CLOSE says TIME_WAIT, inferred: found as drawn.
            edge(d, x, y, from, *state, room);
            node(d, x, y, *state, room);
            from = *state;
        }
    }
    // Edges off the drawn paths (simultaneous close, simultaneous open, lost events), and the
    // abnormal closes from CLOSING.
    let drawn = |r: &RowSnapshot| {
        let on = |states: &[TcpState]| states.windows(2).any(|w| w[0] == r.from && w[1] == r.to);
        let with_est = |column: &[TcpState; 3]| {
            let mut states = vec![TcpState::Established];
            states.extend_from_slice(column);
            states
        };
        on(&lane.trunk) || on(&with_est(&lane.active)) || on(&with_est(&lane.passive))
    };
    let mut x = x0;
    let mut first = true;
    for r in snap.rows.iter().filter(|r| {
        r.side == side
            && ((!r.abnormal && !drawn(r)) || (r.abnormal && r.from == TcpState::Closing))
    }) {
        let text = if r.abnormal {
            format!("{}CLOSING ✗{}", if first { "also " } else { "" }, r.count)
        } else {
            format!(
                "{}{}→{} {}",
                if first { "also " } else { "" },
                r.from.name(),
                state_name(r.to),
                r.count
            )
        };
        let w = text.chars().count() as u16;
        if x + w > x0 + width {
            break;
        }
        let kind = if r.abnormal {
            Kind::Abnormal
        } else {
            Kind::Edge
        };
        d.edge(x, g.extras_y(), w, text, kind, Some(RowKey::of(r)));
        x += w + 1;
        first = false;
    }
}

/// Under the lanes: the sockets first seen mid-life, and what the marks mean.
fn notes(d: &mut Diagram, snap: &Snapshot, y: u16, width: u16, form: Form) {
    let midlife: u64 = snap
        .rows
        .iter()
        .filter(|r| r.side == Side::Unknown)
        .map(|r| r.count)
        .sum();
    let mut line = String::new();
    if midlife > 0 {
        line.push_str(&format!(
            "first seen mid-life: {midlife} transitions (Table)   "
        ));
    }
    line.push_str(match form {
        Form::Compact => "* inferred  ✗ abnormal close, dominant cause",
        Form::Wide => {
            "* TIME_WAIT inferred: Linux reports the hand-over to a timewait socket as ->CLOSE   \
             ✗ abnormal close and its causes   req: request sockets (kernel counters)"
        }
    });
    d.put(0, y, width, line, Kind::Note);
}

/// Paints the diagram into `buf` at `area`, the selected transition reversed.
pub fn draw(d: &Diagram, area: Rect, buf: &mut Buffer, selected: Option<&RowKey>) {
    for item in &d.items {
        let mut style = match item.kind {
            Kind::Title => Style::new().add_modifier(Modifier::BOLD),
            Kind::State => Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            Kind::Frame | Kind::Line | Kind::Idle => Style::new().fg(Color::DarkGray),
            Kind::Edge => Style::new(),
            Kind::Abnormal => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Kind::Note => Style::new().fg(Color::DarkGray),
        };
        if item.row.is_some() && item.row.as_ref() == selected {
            style = style.add_modifier(Modifier::REVERSED);
        }
        let x = area.x + item.x;
        let y = area.y + item.y;
        if y >= area.bottom() || x >= area.right() {
            continue;
        }
        buf.set_stringn(
            x,
            y,
            &item.text,
            item.width.min(area.right() - x) as usize,
            style,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tui::fixture::storm_snapshots;

    fn check_sound(d: &Diagram, area: Rect) {
        for item in &d.items {
            assert!(
                item.x + item.width <= area.width,
                "{item:?} past the right edge"
            );
            assert!(item.y < area.height, "{item:?} past the bottom");
        }
        // No two items share a cell, as far as they are drawn.
        let mut cells = std::collections::HashSet::new();
        for item in &d.items {
            let drawn = (item.text.chars().count() as u16).min(item.width);
            for dx in 0..drawn {
                assert!(
                    cells.insert((item.x + dx, item.y)),
                    "{item:?} overlaps another item"
                );
            }
        }
    }

    fn edge_text(d: &Diagram, snap: &Snapshot, from: TcpState, to: TcpState) -> String {
        let r = find(snap, Side::Server, from, to).unwrap();
        d.of_row(&RowKey::of(r)).map(|i| i.text.clone()).collect()
    }

    #[test]
    fn compact_at_80x24_fits_and_labels_every_edge_of_the_storm() {
        let snap = storm_snapshots().pop().unwrap();
        let area = Rect::new(0, 0, 80, 20);
        assert_eq!(Form::for_area(area), Form::Compact);
        let d = layout(area, &snap);
        check_sound(&d, area);
        for r in snap.rows.iter().filter(|r| r.side == Side::Server) {
            let shown: String = d.of_row(&RowKey::of(r)).map(|i| i.text.clone()).collect();
            assert!(
                shown.contains(&r.count.to_string()),
                "{:?} {:?}->{:?} is not labelled with its count: {shown:?}",
                r.side,
                r.from,
                r.to
            );
        }
        assert!(edge_text(&d, &snap, TcpState::SynRecv, TcpState::Established).contains("40"));
        // The abnormal close, with its dominant cause, beside ESTABLISHED.
        let abnormal: Vec<&Item> = d
            .items
            .iter()
            .filter(|i| i.kind == Kind::Abnormal)
            .collect();
        assert_eq!(abnormal.len(), 1);
        assert!(
            abnormal[0].text.starts_with("✗20 →CLOSE reset_"),
            "{abnormal:?}"
        );
        assert!(d.items.iter().any(|i| i.text == "TIME_WAIT*"));
        assert!(d.items.iter().any(|i| i.text.starts_with("req: 0 rst")));
        // Both lanes' titles, on the first line.
        let titles: Vec<_> = d.items.iter().filter(|i| i.kind == Kind::Title).collect();
        assert_eq!(titles.len(), 2);
        assert!(titles.iter().all(|t| t.y == 0));
    }

    #[test]
    fn wide_at_200x60_boxes_the_states_and_adds_percentiles() {
        let snap = storm_snapshots().pop().unwrap();
        let area = Rect::new(0, 0, 200, 56);
        assert_eq!(Form::for_area(area), Form::Wide);
        let d = layout(area, &snap);
        check_sound(&d, area);
        assert!(d.items.iter().any(|i| i.text == "│ ESTABLISHED │"));
        let label = edge_text(&d, &snap, TcpState::SynRecv, TcpState::Established);
        assert!(label.contains("p99"), "{label}");
        let abnormal = d.items.iter().find(|i| i.kind == Kind::Abnormal).unwrap();
        assert!(abnormal.text.contains("reset_received 10"), "{abnormal:?}");
        assert!(abnormal.text.contains("reset_sent 10"), "{abnormal:?}");
        assert!(
            d.items
                .iter()
                .any(|i| i.text.starts_with("request sockets:"))
        );
    }

    #[test]
    fn too_small_an_area_clips_without_panicking() {
        let snap = storm_snapshots().pop().unwrap();
        for (w, h) in [(1, 1), (20, 5), (79, 23)] {
            let area = Rect::new(0, 0, w, h);
            let d = layout(area, &snap);
            for item in &d.items {
                assert!(item.y < h && item.x + item.width <= w);
            }
        }
    }
}
