//! The NETLINK_SOCK_DIAG socket: one dump request per address family, replies read in large
//! batches and handed to the pure parser.
//!
//! Hand-written over libc rather than `netlink-packet-sock-diag` + `netlink-sys`: the request
//! is one fixed 72-byte message, the reply layout is the kernel's stable inet_diag ABI, and the
//! parser must not allocate per socket or per attribute to stay fast on hosts with hundreds of
//! thousands of sockets; the crates decode every attribute into owned enums.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use thiserror::Error;

use super::parse::{
    self, NLMSG_HDRLEN, ParseError, SOCK_DIAG_BY_FAMILY, SocketEntry, TCPDIAG_GETSOCK,
};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// `struct inet_diag_req`, of the first interface: family, lengths and ext (4 bytes), the
/// socket id (48), the states (4), `idiag_dbs` (4).
const REQ_V1_LEN: usize = 60;
/// Every state bit, including TIME_WAIT (6) and NEW_SYN_RECV (12).
pub const ALL_STATES: u32 = u32::MAX;
/// Receive buffer of one `recv`: the kernel fills at most 32 KiB per dump step
/// (net/netlink/af_netlink.c caps its allocation), so a larger buffer only wastes memory.
const RECV_BUF: usize = 64 * 1024;
/// Socket receive queue, so the kernel can run ahead of us while we parse.
const SO_RCVBUF_BYTES: libc::c_int = 4 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum DiagError {
    #[error(
        "cannot open a NETLINK_SOCK_DIAG socket: {0} (is the inet_diag/tcp_diag module available?)"
    )]
    Open(io::Error),
    #[error("cannot send the socket dump request: {0}")]
    Send(io::Error),
    #[error("cannot read the socket dump: {0}")]
    Recv(io::Error),
    #[error("bad socket dump reply: {0}")]
    Parse(#[from] ParseError),
}

/// What to ask the kernel for.
#[derive(Clone, Copy, Debug)]
pub struct DumpRequest {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Ask for `tcp_info` too (needed for netstat's exact timer counters; ~3× the bytes).
    pub tcp_info: bool,
    /// The states wanted, one bit per `TCP_*` value ([`ALL_STATES`]). The kernel still walks
    /// the sockets of the others, but neither fills nor sends them: leaving out TIME_WAIT
    /// makes a dump of a host with 100,000 timewait sockets several times faster.
    pub states: u32,
}

/// The request's bytes: `nlmsghdr` + `inet_diag_req_v2` for all TCP sockets of one family.
pub fn request_bytes(request: DumpRequest, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + REQ_LEN;
    let mut b = Vec::with_capacity(len);
    b.extend((len as u32).to_ne_bytes());
    b.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend(seq.to_ne_bytes());
    b.extend(0u32.to_ne_bytes());
    let ext: u8 = if request.tcp_info {
        1 << (parse::INET_DIAG_INFO - 1)
    } else {
        0
    };
    b.extend([request.family, libc::IPPROTO_TCP as u8, ext, 0]);
    b.extend(request.states.to_ne_bytes());
    // inet_diag_sockid all zero: no address filter.
    b.resize(len, 0);
    b
}

/// The request of inet_diag's first interface for every TCP socket in `states`, of both
/// address families at once (the kernel ignores its family field and dumps both in one walk
/// of its tables, where two requests of the current interface walk them twice).
pub fn both_families_request_bytes(states: u32, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + REQ_V1_LEN;
    let mut b = Vec::with_capacity(len);
    b.extend((len as u32).to_ne_bytes());
    b.extend(TCPDIAG_GETSOCK.to_ne_bytes());
    b.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend(seq.to_ne_bytes());
    b.extend(0u32.to_ne_bytes());
    // Family (unused), source and destination lengths, ext; the socket id all zero.
    b.resize(NLMSG_HDRLEN + 4 + 48, 0);
    b.extend(states.to_ne_bytes());
    b.resize(len, 0);
    b
}

/// An open NETLINK_SOCK_DIAG socket.
pub struct DiagSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

impl DiagSocket {
    pub fn open() -> Result<Self, DiagError> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(DiagError::Open(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A bigger queue is an optimisation only: without it the dump is just slower.
        // SAFETY: the option value points to a live c_int of the size passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&SO_RCVBUF_BYTES as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(Self {
            fd,
            buf: vec![0; RECV_BUF],
            seq: 0,
        })
    }

    /// Dumps every TCP socket of one family, appending them to `out`. Returns true when the
    /// kernel flagged the dump as interrupted by concurrent changes (the counts may be off by
    /// the sockets that moved meanwhile, as with `ss`).
    pub fn dump(
        &mut self,
        request: DumpRequest,
        out: &mut Vec<SocketEntry>,
    ) -> Result<bool, DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = request_bytes(request, self.seq);
        self.dump_bytes(&bytes, out)
    }

    /// Dumps every TCP socket in `states` of both families in one walk of the kernel's tables
    /// ([`both_families_request_bytes`]), appending them to `out`; returns as [`Self::dump`].
    pub fn dump_both_families(
        &mut self,
        states: u32,
        out: &mut Vec<SocketEntry>,
    ) -> Result<bool, DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = both_families_request_bytes(states, self.seq);
        self.dump_bytes(&bytes, out)
    }

    fn dump_bytes(&mut self, bytes: &[u8], out: &mut Vec<SocketEntry>) -> Result<bool, DiagError> {
        // SAFETY: sockaddr_nl is plain data; all-zero is the kernel's address (pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the buffer and the address are live for the call, with the lengths passed.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(DiagError::Send(io::Error::last_os_error()));
        }
        let mut interrupted = false;
        loop {
            // SAFETY: `buf` is a live, writable buffer of the length passed.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(DiagError::Recv(err));
            }
            if n == 0 {
                return Err(DiagError::Recv(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the kernel closed the dump before its end",
                )));
            }
            let batch = parse::parse_batch(&self.buf[..n as usize], out)?;
            interrupted |= batch.interrupted;
            if batch.done {
                return Ok(interrupted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_kernel_layout() {
        let b = request_bytes(
            DumpRequest {
                family: libc::AF_INET6 as u8,
                tcp_info: true,
                states: ALL_STATES,
            },
            9,
        );
        assert_eq!(b.len(), 72);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 20);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 9);
        // family, protocol, ext (bit of INET_DIAG_INFO), pad
        assert_eq!(&b[16..20], &[libc::AF_INET6 as u8, 6, 0b10, 0]);
        assert_eq!(&b[20..24], &[0xff; 4]);
        assert!(b[24..].iter().all(|&byte| byte == 0));
        let plain = request_bytes(
            DumpRequest {
                family: libc::AF_INET as u8,
                tcp_info: false,
                states: 1 << 10,
            },
            1,
        );
        assert_eq!(&plain[16..20], &[libc::AF_INET as u8, 6, 0, 0]);
        let both = both_families_request_bytes(1 << 10, 3);
        assert_eq!(both.len(), 76);
        assert_eq!(u32::from_ne_bytes(both[0..4].try_into().unwrap()), 76);
        assert_eq!(u16::from_ne_bytes([both[4], both[5]]), 18);
        assert_eq!(u16::from_ne_bytes([both[6], both[7]]), 0x301);
        assert!(both[16..68].iter().all(|&byte| byte == 0));
        assert_eq!(&both[68..72], &(1u32 << 10).to_ne_bytes());
        assert_eq!(&both[72..76], &[0; 4]);
        assert_eq!(&plain[20..24], &(1u32 << 10).to_ne_bytes());
    }
}
