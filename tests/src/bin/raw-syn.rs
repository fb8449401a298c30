//! Sends bare TCP SYNs from a raw socket: `raw-syn ADDR PORT COUNT [--quiet]` (IPv4). With
//! `--quiet`, a SYN flood for the benchmark: no ports printed, one JSON line at the end (`sent`,
//! `elapsed_s`, `syn_per_s`).
//!
//! No socket of this host owns the source port, so when the server answers with a SYN-ACK the
//! kernel itself replies with a RST: the server's half-open request socket dies of an
//! embryonic reset (TcpExt EmbryonicRsts, SYN_RECV→LISTEN on RST) — the one path of the
//! diagram that needs no crafted RST. Prints the source ports used, one per line.

use std::{env, io, net::Ipv4Addr, process::ExitCode, time::Instant};

fn checksum(words: impl Iterator<Item = u16>) -> u16 {
    let mut sum: u32 = words.map(u32::from).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 20-byte TCP header with only SYN set, checksummed over the IPv4 pseudo-header.
fn syn_segment(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32) -> [u8; 20] {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4; // data offset: 5 words
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes()); // window
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]); // zero, protocol TCP, TCP length
    pseudo.extend_from_slice(&tcp);
    let sum = checksum(pseudo.chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]])));
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    tcp
}

/// A raw TCP socket, closed on drop.
struct RawSocket(libc::c_int);

impl RawSocket {
    fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is closed on drop.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(fd))
    }

    fn send(&self, dst: Ipv4Addr, dport: u16, sport: u16) -> io::Result<()> {
        let segment = syn_segment(dst, dst, sport, dport, 0x1000_0000 ^ u32::from(sport));
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: valid buffer and address of the sizes passed; the fd is open.
        let sent = unsafe {
            libc::sendto(
                self.0,
                segment.as_ptr().cast(),
                segment.len(),
                0,
                (&addr as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(self.0) };
    }
}

/// Source ports far from the ephemeral range's usual start: from a base distinct per process,
/// wrapping within 20,000..60,000 for floods longer than that.
fn source_port(base: u32, i: u32) -> u16 {
    (20_000 + (base + i) % 40_000) as u16
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().collect();
    let quiet = args.get(4).map(String::as_str) == Some("--quiet");
    let parsed = (|| {
        let dst: Ipv4Addr = args.get(1)?.parse().ok()?;
        let port: u16 = args.get(2)?.parse().ok()?;
        let count: u32 = args.get(3)?.parse().ok()?;
        (args.len() == 4 || quiet && args.len() == 5).then_some((dst, port, count))
    })();
    let Some((dst, port, count)) = parsed else {
        eprintln!("usage: raw-syn ADDR PORT COUNT [--quiet]");
        return ExitCode::from(2);
    };
    let socket = match RawSocket::open() {
        Ok(socket) => socket,
        Err(err) => {
            eprintln!("raw-syn: {err}");
            return ExitCode::FAILURE;
        }
    };
    let base = std::process::id() % 10_000;
    let started = Instant::now();
    for i in 0..count {
        let sport = source_port(base, i);
        if let Err(err) = socket.send(dst, port, sport) {
            eprintln!("raw-syn: {err}");
            return ExitCode::FAILURE;
        }
        if !quiet {
            println!("{sport}");
        }
    }
    if quiet {
        let elapsed_s = started.elapsed().as_secs_f64();
        println!(
            "{{\"sent\":{count},\"elapsed_s\":{elapsed_s},\"syn_per_s\":{}}}",
            f64::from(count) / elapsed_s.max(1e-9)
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_segment_verifies() {
        let src = Ipv4Addr::new(127, 0, 0, 1);
        let seg = syn_segment(src, src, 20000, 80, 1);
        // Summing the pseudo-header and the segment, checksum included, gives 0xffff: its
        // one's complement is zero.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        pseudo.extend_from_slice(&seg);
        assert_eq!(
            checksum(pseudo.chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]]))),
            0
        );
        assert_eq!(seg[13], 0x02);
        assert_eq!(u16::from_be_bytes([seg[2], seg[3]]), 80);
    }

    #[test]
    fn source_ports_stay_in_their_range() {
        assert_eq!(source_port(9_999, 0), 29_999);
        assert_eq!(source_port(9_999, 30_000), 59_999);
        assert_eq!(source_port(9_999, 30_001), 20_000);
        assert!((0..200_000).all(|i| (20_000..60_000).contains(&source_port(1234, i))));
    }
}
