//! The kernel's TCP states that the programs compare (include/net/tcp_states.h).

pub(crate) const TCP_ESTABLISHED: i32 = 1;
pub(crate) const TCP_SYN_SENT: i32 = 2;
pub(crate) const TCP_SYN_RECV: i32 = 3;
pub(crate) const TCP_FIN_WAIT1: i32 = 4;
pub(crate) const TCP_CLOSE: i32 = 7;
pub(crate) const TCP_CLOSE_WAIT: i32 = 8;
pub(crate) const TCP_LAST_ACK: i32 = 9;
pub(crate) const TCP_LISTEN: i32 = 10;
