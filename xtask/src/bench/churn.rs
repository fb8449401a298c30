//! `cargo xtask bench --netns-churn`: the exporter's memory while 10,000 short-lived network
//! namespaces come and go, as pods and CI jobs do on a container host. Each namespace lives
//! for a couple of connections on its loopback (so that it has transitions, and series of its
//! own while the label limit lasts) and is gone when its thread ends. The exporter is scraped
//! every second throughout, with a short `--netns-ttl` so that labels are retired and reused
//! within the run; at every thousand namespaces: its resident memory, the samples a scrape
//! serves and the namespaces labelled.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use super::tracer::{self, Output, Running, Tracer};

/// Namespaces made and ended in the run.
pub const NAMESPACES: usize = 10_000;
/// Reported every this many.
const EVERY: usize = 1_000;
/// Connections in each namespace.
const CONNECTIONS: usize = 2;
/// The exporter's `--netns-ttl`: labels of ended namespaces retired within the run.
const TTL_S: u64 = 5;
/// The whole churn must end within this.
const DEADLINE: Duration = Duration::from_secs(900);

/// The calling thread's loopback up: a new network namespace starts with it down.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a datagram socket of our own, closed below; the ifreq is zeroed and names "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo") {
            *dst = *src as libc::c_char;
        }
        let mut result = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if result == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if result != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// One short-lived namespace: a thread that moves into a new one (network namespaces are a
/// thread's), opens and closes a few connections on its loopback, and ends, taking the
/// namespace with it.
fn one_namespace() -> anyhow::Result<()> {
    thread::spawn(|| -> anyhow::Result<()> {
        // SAFETY: unshare(2) of this thread's network namespace only.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        }
        loopback_up().context("bringing up lo")?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        for _ in 0..CONNECTIONS {
            let mut client = TcpStream::connect(addr)?;
            let (mut server, _) = listener.accept()?;
            client.write_all(b"x")?;
            let mut byte = [0u8; 1];
            server.read_exact(&mut byte)?;
            // The client closes first: FIN_WAIT → TIME_WAIT on its side, CLOSE_WAIT →
            // LAST_ACK on the server's.
            drop(client);
            let _ = server.read(&mut byte)?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("a namespace's thread panicked"))?
}

pub fn run() -> anyhow::Result<()> {
    let ttl = TTL_S.to_string();
    let mut running = Running::start(
        Tracer::Export,
        &["--netns-ttl".to_owned(), ttl],
        Output::Null,
    )?;
    let port = running.port().context("the exporter's port")?;
    let pid = running.pid().context("the exporter's pid")?;
    running.scrape_every_second();
    println!(
        "| namespaces made and ended | exporter RSS | samples served | namespaces labelled | elapsed |\n\
         | ---: | ---: | ---: | ---: | ---: |"
    );
    let started = Instant::now();
    let row = |made: usize| -> anyhow::Result<()> {
        let (samples, labelled) = tracer::served(port)?;
        println!(
            "| {made} | {:.1} MiB | {samples} | {labelled} | {:.0} s |",
            tracer::status_kib(pid, "VmRSS")? as f64 / 1024.0,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    };
    row(0)?;
    for made in 1..=NAMESPACES {
        one_namespace().with_context(|| format!("namespace {made}"))?;
        if made % EVERY == 0 {
            // A refresh of the exporter's snapshot: the last namespaces are in it.
            thread::sleep(Duration::from_millis(1100));
            row(made)?;
        }
        if started.elapsed() > DEADLINE {
            bail!("{made} namespaces in {} s: stopped", DEADLINE.as_secs());
        }
    }
    // The labels of the ended namespaces outlive them by the TTL, then go.
    thread::sleep(Duration::from_secs(TTL_S + 2));
    let (samples, labelled) = tracer::served(port)?;
    println!(
        "| {NAMESPACES} + {} s (TTL {TTL_S} s) | {:.1} MiB | {samples} | {labelled} | {:.0} s |",
        TTL_S + 2,
        tracer::status_kib(pid, "VmRSS")? as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );
    let finished = running.stop()?;
    let scrapes = finished.scrapes.unwrap_or_default();
    println!(
        "\nPeak RSS {:.1} MiB; {} transitions, {} lost; {} scrapes answered, {} failed, the \
         slowest {:.0} ms.",
        finished.peak_rss_kib as f64 / 1024.0,
        finished.observed.unwrap_or(0),
        finished.lost.unwrap_or(0),
        scrapes.ok,
        scrapes.failed,
        scrapes.slowest_ms
    );
    ensure!(
        finished.lost == Some(0),
        "the exporter lost transitions: {}",
        finished.stderr.trim()
    );
    Ok(())
}
