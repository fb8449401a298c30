//! `tcptrace export`: the transitions aggregation, running continuously, and the sockets per
//! state, served as Prometheus metrics over HTTP.
//!
//! The event loop owns the aggregator, as in `transitions`, and hands a whole snapshot to the
//! HTTP side every `--refresh` through a watch channel: a scrape clones the latest `Arc` and
//! never waits on the loop, and the loop never waits on a scraper. The HTTP server runs on a
//! thread of its own; each scrape starts a census of the sockets on a thread of its own and
//! waits for it within half the scraper's timeout, else serves the last census that finished
//! (`tcptrace_census_age_seconds` says how old).
//!
//! Once the probe is attached, every thread holds only what reading other processes' /proc
//! entries needs (CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH): the server's from its start, the event
//! loop's from the attach.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use tokio::sync::watch;

use crate::{
    aggregate::{Aggregator, Config, SocketState},
    census::{self, Context, close_wait::CloseWaitAges, selection::Selection},
    cli::{ExportArgs, UsageError},
    core::{cgroup, pipeline::PipelineConfig, state::TcpState},
    kernel::probe::ProbeConfig,
    os::{
        capabilities, clock,
        diag::{DiagSocket, Families, SocketEntry},
        http::{self, Handler, Limits, Request, Response, ServerStats},
        netns, owners, sysctl,
        web_config::{self, WebSetup},
    },
    render::metrics::{
        self, CensusFacts, Exposition, ListenerQueue, Published, landing,
        namespaces::NamespaceLabels, negotiate,
    },
    stream::{
        self, LiveConfig, Totals, Update,
        aggregating::{self, Fed},
        latest_census::{LatestCensus, Served},
        snapshot,
    },
};

type Latest = watch::Receiver<Option<Arc<Published>>>;

/// What the scrapes share: the latest snapshot, and what persists from one scrape to the next.
struct Scrapes {
    latest: Latest,
    /// The census, taken one at a time on a thread of its own.
    census: Arc<LatestCensus<CensusFacts>>,
    labels: Mutex<NamespaceLabels>,
    /// CLOSE_WAIT sockets timed from the first scrape that listed them.
    ages: Mutex<CloseWaitAges>,
    labelled_ports: Vec<u16>,
    stats: Arc<ServerStats>,
}

/// How long a scrape waits for its census when the scraper does not say its timeout.
const CENSUS_BUDGET: Duration = Duration::from_secs(2);

/// How long a scrape waits for its census: half the scraper's timeout (the rest for the
/// encoding and the network), so that a slow census never makes the scrape fail.
fn census_budget(scrape_timeout: Option<Duration>) -> Duration {
    scrape_timeout.map_or(CENSUS_BUDGET, |timeout| timeout / 2)
}

impl Scrapes {
    fn metrics(
        self: &Arc<Self>,
        accept: Option<&str>,
        scrape_timeout: Option<Duration>,
    ) -> Response {
        let format = negotiate::negotiate(accept);
        let stream = self.latest.borrow().clone();
        let scrapes = Arc::clone(self);
        let (census, census_age) =
            match self.census.serve(census_budget(scrape_timeout), move || {
                scrapes.census().map_err(|err| format!("{err:#}"))
            }) {
                Served::Census { value, taken } => (Some(value), Some(taken.elapsed())),
                Served::None => (None, None),
            };
        let namespaces = {
            let alive: HashMap<u32, cgroup::Placement> = netns::of_processes()
                .iter()
                .map(|ns| {
                    let placement = netns::cgroup_of(ns)
                        .map(|text| cgroup::placement(&text))
                        .unwrap_or_default();
                    (ns.inode, placement)
                })
                .collect();
            let mut labels = self.labels.lock().unwrap_or_else(|p| p.into_inner());
            stream
                .as_ref()
                .map(|published| {
                    labels.export(
                        &published.snapshot.namespaces,
                        &alive,
                        clock::monotonic_ns(),
                    )
                })
                .unwrap_or_default()
        };
        let exposition = Exposition {
            stream,
            census,
            census_age,
            namespaces,
            labelled_ports: self.labelled_ports.clone(),
            max_processes: MAX_PROCESSES,
            version: env!("CARGO_PKG_VERSION"),
            connections_refused: self.stats.refused.load(Ordering::Relaxed),
        };
        match metrics::encode(format, Arc::new(exposition)) {
            Ok(body) => Response {
                status: 200,
                content_type: format.content_type(),
                body: body.into(),
            },
            Err(err) => {
                log::error!("{err}");
                text(500, "encoding the metrics failed\n")
            }
        }
    }

    fn census(&self) -> anyhow::Result<CensusFacts> {
        let mut socket = DiagSocket::open()?;
        let start_ns = clock::monotonic_ns();
        let taken =
            snapshot::census_snapshot(&mut socket, &Selection::default(), Families::BOTH, false)?;
        let port_range = sysctl::port_range();
        let mut ages = self.ages.lock().unwrap_or_else(|p| p.into_inner());
        ages.snapshot(&taken.sockets, start_ns);
        let ctx = Context {
            owners: taken.owners.as_ref(),
            port_range,
            close_wait_ages: Some((&ages, clock::monotonic_ns())),
            sees_every_process: owners::sees_every_process(),
            kernel: Some(taken.kernel),
            ..Context::default()
        };
        let mut census = census::count(&taken.sockets, None, &ctx, None);
        census.interrupted = taken.interrupted;
        Ok(CensusFacts {
            census,
            listeners: listeners(&taken.sockets),
            port_range,
        })
    }
}

/// Process names told apart in the CLOSE_WAIT series.
const MAX_PROCESSES: usize = 20;

/// Listeners' accept queues; a port held by several listeners (IPv4 and IPv6, SO_REUSEPORT)
/// is listed once per listener.
fn listeners(sockets: &[SocketEntry]) -> Vec<ListenerQueue> {
    sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| ListenerQueue {
            port: s.local.port(),
            queued: s.recv_q,
            backlog: s.send_q,
        })
        .collect()
}

fn text(status: u16, body: &'static str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

fn route(scrapes: &Arc<Scrapes>, request: Request) -> http::ResponseFuture {
    let scrapes = scrapes.clone();
    Box::pin(async move {
        if request.method != "GET" && request.method != "HEAD" {
            return text(405, "only GET and HEAD\n");
        }
        match request.path.as_str() {
            "/metrics" => {
                let accept = request.accept.clone();
                let timeout = request.scrape_timeout;
                // inet_diag, /proc and the encoding block: off the server's only thread.
                tokio::task::spawn_blocking(move || scrapes.metrics(accept.as_deref(), timeout))
                    .await
                    .unwrap_or_else(|_| text(500, "the scrape failed\n"))
            }
            "/" => Response {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: landing::page(env!("CARGO_PKG_VERSION")).into(),
            },
            "/healthz" if scrapes.latest.borrow().is_some() => text(200, "ok\n"),
            "/healthz" => text(503, "the probe is not attached yet\n"),
            _ => text(404, "not found; the metrics are at /metrics\n"),
        }
    })
}

fn publish(
    tx: &watch::Sender<Option<Arc<Published>>>,
    aggregator: &mut Aggregator,
    totals: &Totals,
    programs_attached: u32,
) {
    let snapshot = aggregating::snapshot(aggregator, totals);
    // Replaces the value whether or not anyone listens.
    tx.send_replace(Some(Arc::new(Published {
        snapshot,
        programs_attached,
    })));
}

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    // Before anything listens: a bad file must not leave a server without its TLS.
    let web = match &args.web_config {
        Some(path) => web_config::load(path)
            .map_err(|err| UsageError(format!("--web-config {}: {err}", path.display())))?,
        None => WebSetup::default(),
    };
    let scheme = if web.tls.is_some() { "https" } else { "http" };
    let listener = http::bind(args.listen)
        .map_err(|err| UsageError(format!("cannot listen on {}: {err}", args.listen)))?;
    let filter = args.filter.to_filter();
    let (tx, latest) = watch::channel(None);
    let stats = Arc::new(ServerStats::default());
    let scrapes = Arc::new(Scrapes {
        latest,
        census: Arc::new(LatestCensus::new()),
        labels: Mutex::new(NamespaceLabels::new(
            args.netns_limit,
            args.netns_ttl.as_nanos().try_into().unwrap_or(u64::MAX),
        )),
        ages: Mutex::new(CloseWaitAges::default()),
        labelled_ports: args.port_label.clone().map(|p| p.0).unwrap_or_default(),
        stats: stats.clone(),
    });
    let handler: Handler = Arc::new(move |request| route(&scrapes, request));
    let limits = Limits {
        max_connections: args.max_connections,
        ..Limits::default()
    };
    // The server never touches the probe: it gives up at once what only attaching needs.
    http::spawn(listener, limits, handler, stats, web, || {
        if let Err(err) = capabilities::keep_only(&capabilities::AFTER_ATTACH) {
            log::warn!("the HTTP server cannot give up its capabilities: {err}");
        }
    })?;

    let live = LiveConfig {
        probe: ProbeConfig {
            filter: filter.kernel(),
            causes: true,
            ..ProbeConfig::default()
        },
        interval: Some(args.refresh),
        duration: args.duration,
        tcp_counters: true,
        census: Some(filter.clone()),
        stop: None,
        drop_capabilities: true,
    };
    let pipeline = PipelineConfig {
        filter: filter.clone(),
        max_sockets: args.max_sockets,
        ..PipelineConfig::default()
    };
    // No exemplars nor breakdowns: no metric shows them.
    let mut aggregator = Aggregator::new(Config {
        buckets: true,
        top_signatures: 0,
        exemplars: 0,
        breakdowns: false,
        ..Config::default()
    });
    let mut programs_attached = 0;
    let listen = args.listen;
    let on_update = |update: Update<'_, SocketState>| -> std::io::Result<()> {
        // The probe attaches no program on skb:kfree_skb here: the fates have no metrics.
        match aggregating::feed(&mut aggregator, &filter, update) {
            Fed::Started(origin, totals) => {
                programs_attached = origin.programs_attached;
                publish(&tx, &mut aggregator, totals, programs_attached);
                log::info!("serving the metrics on {scheme}://{listen}/metrics");
            }
            Fed::Taken => {}
            Fed::Tick(totals) => publish(&tx, &mut aggregator, totals, programs_attached),
        }
        Ok(())
    };
    let totals = stream::run(live, pipeline, on_update).await?;
    eprintln!("{}", totals.summary_line());
    Ok(())
}
