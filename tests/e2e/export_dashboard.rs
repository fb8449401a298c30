//! The Grafana dashboard (`tcptrace/dist/grafana/tcptrace.json`) against a real Prometheus:
//! the JSON parses as a Grafana 10+ dashboard with its Prometheus data source as a variable,
//! its query variables are expanded as Grafana does (label values, multi-value regex), and
//! every target of every panel must return data for a workload run in a namespace of the
//! test, where the exporter and two Prometheus servers (classic buckets, native histograms)
//! run too, so that its census sees the workload's sockets.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use crate::support::{
    DEADLINE, Netns, Peer, Tracer, privileged,
    prometheus::{LO, Options, Prometheus, tool},
    wait_until,
};

/// Connections of the workload, one a second, each held ESTABLISHED a while: the counters
/// grow over several scrapes, so that rates over the window are not zero.
const CONNECTIONS: u64 = 6;

/// What Grafana's built-in interval variables stand for here: the test's Prometheus scrapes
/// every second, so 30 s of rate window hold 30 scrapes (Grafana's own `$__rate_interval` is
/// at least four scrape intervals).
const INTERVALS: [(&str, &str); 3] = [
    ("$__rate_interval", "30s"),
    ("$__interval", "1s"),
    ("$__range", "5m"),
];

fn dashboard() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tcptrace/dist/grafana/tcptrace.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// A value as Grafana writes it into a Prometheus regex matcher (its
/// `prometheusSpecialRegexEscape`, inside a PromQL string: backslashes doubled).
fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\$^*{}[]'+?.()|".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// Replaces `$name` and `${name}` by their values; longest names first, so that `$__range`
/// is not read as `$__r…`.
fn expand(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    let mut out = expr.to_owned();
    for name in names {
        let bare = name.trim_start_matches('$');
        out = out
            .replace(&format!("${{{bare}}}"), &values[name])
            .replace(name.as_str(), &values[name]);
    }
    out
}

/// The query variables' values as Grafana's "All" gives them, each from
/// `label_values(SELECTOR, LABEL)` with the variables before it expanded.
fn variables(dashboard: &Value, prometheus: &Prometheus) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = INTERVALS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        match variable["type"].as_str().unwrap() {
            "datasource" => {
                assert_eq!(variable["query"], "prometheus", "{variable}");
                continue;
            }
            "query" => {}
            other => panic!("variable {name} of type {other}: the test expands none such"),
        }
        let query = variable["query"]["query"].as_str().unwrap();
        assert_eq!(variable["definition"], query, "{variable}");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{name}: not label_values(…): {query}"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let selector = expand(selector.trim(), &values);
        let found = prometheus.label_values(label.trim(), &selector);
        assert!(!found.is_empty(), "{name}: no value for {selector}");
        assert_eq!(variable["includeAll"], true, "{variable}");
        assert_eq!(variable["multi"], true, "{variable}");
        // "All" selected: every value, as one regex alternation.
        let alternatives: Vec<String> = found.iter().map(|v| regex_escape(v)).collect();
        let value = match alternatives.as_slice() {
            [one] => one.clone(),
            many => format!("({})", many.join("|")),
        };
        values.insert(format!("${name}"), value);
    }
    values
}

/// The Prometheus a target needs: classic buckets are stored by the one without native
/// histograms, native histograms (the same name without `_bucket`) by the other; the rest
/// by both.
fn servers<'a>(expr: &str, classic: &'a Prometheus, native: &'a Prometheus) -> Vec<&'a Prometheus> {
    if expr.contains("tcptrace_time_in_state_seconds_bucket") {
        vec![classic]
    } else if expr.contains("tcptrace_time_in_state_seconds{") {
        vec![native]
    } else {
        vec![classic, native]
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The workload, in `netns`: connections one a second (the client closes first), one left
/// in CLOSE_WAIT by a server that never closes, one connect refused. Returns the peers that
/// hold the sockets still open.
fn workload(netns: &Netns, server: &mut Peer, port: u16) -> Vec<Peer> {
    let mut client = Peer::spawn_in(netns);
    for _ in 0..CONNECTIONS {
        client.cmd(&format!("connect {LO} {port}"));
        server.cmd("accept");
        client.cmd("sleep 300");
        client.cmd("close");
        server.cmd("wait-eof");
        server.cmd("close");
        client.cmd("sleep 700");
    }
    let mut leaking = Peer::spawn_in(netns);
    let leak_port = leaking.port(&format!("listen {LO}"));
    client.cmd(&format!("connect {LO} {leak_port}"));
    leaking.cmd("accept");
    client.cmd("close");
    leaking.cmd("wait-eof");
    // Nothing listens on port 9 of a fresh namespace.
    assert!(client.try_cmd(&format!("connect {LO} 9")).is_err());
    vec![client, leaking]
}

#[test]
fn every_dashboard_query_returns_data_for_a_workload() {
    let dashboard = dashboard();
    // Grafana 10's schema: 37 and later.
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 37);
    assert!(!dashboard["uid"].as_str().unwrap().is_empty());
    let variables_list = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables_list
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "no data source variable"
    );
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut targets = Vec::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {panel}"
        );
        let grid = &panel["gridPos"];
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "{panel}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        let panel_targets = panel["targets"].as_array().unwrap();
        assert!(!panel_targets.is_empty(), "{}", panel["title"]);
        for target in panel_targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{target}");
            targets.push((
                panel["title"].as_str().unwrap().to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    if !privileged("every_dashboard_query_returns_data_for_a_workload") {
        return;
    }
    let Some(binary) = tool("prometheus") else {
        return;
    };
    let netns = Netns::new("export-dashboard");
    let mut server = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    let exporter = Tracer::start_in(
        &netns,
        &[
            "export",
            "--netns",
            &netns.inode(),
            "--port-label",
            &port.to_string(),
        ],
    );
    let start = |native| {
        Prometheus::start(
            &binary,
            10427,
            Options {
                native,
                netns: Some(&netns),
                ..Options::default()
            },
        )
    };
    let (classic, native) = (start(false), start(true));
    classic.wait_ready();
    native.wait_ready();
    let _held = workload(&netns, &mut server, port);
    // Evaluated a little after the workload, once both have scraped past that time.
    let at = unix_now() + 2.0;
    for prometheus in [&classic, &native] {
        wait_until("a scrape after the workload", || {
            let last = prometheus.scalar("timestamp(up{job=\"tcptrace\"})")?;
            (last >= at).then_some(())
        });
    }
    let values = variables(&dashboard, &classic);
    assert_eq!(values, variables(&dashboard, &native));
    let mut failing = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    for (title, expr) in &targets {
        let expanded = expand(expr, &values);
        assert!(
            !expanded.contains('$'),
            "{title}: unexpanded variable in {expanded}"
        );
        for prometheus in servers(expr, &classic, &native) {
            // Series of the census appear at the first scrape that sees them: give each
            // query until the deadline, later evaluation times included.
            let data = loop {
                let now = at.max(unix_now() - 1.0);
                let result = prometheus.query_at(&expanded, now);
                let finite = result.iter().any(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(f64::is_finite)
                });
                if finite || Instant::now() > deadline {
                    break finite.then_some(result);
                }
                std::thread::sleep(Duration::from_millis(500));
            };
            match data {
                Some(result) => eprintln!("{title}: {} series for {expanded}", result.len()),
                None => failing.push(format!("{title}: {expanded}")),
            }
        }
    }
    assert!(
        failing.is_empty(),
        "queries without data:\n{}",
        failing.join("\n")
    );
    drop((classic, native));
    let finished = exporter.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
}
