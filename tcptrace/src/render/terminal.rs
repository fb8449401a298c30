//! Terminal control, in one place: the live views redraw in place by clearing the screen and
//! going home (a plain redraw, no full-screen mode), which a pipe or a file never sees.

/// Clears the screen and homes the cursor.
pub const CLEAR: &[u8] = b"\x1b[H\x1b[2J";
