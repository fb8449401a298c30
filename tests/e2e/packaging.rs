//! The deployment files under `tcptrace/dist/`: the systemd unit (`systemd-analyze verify`,
//! its offline security score, and its capability set actually enough: the exporter run as
//! nobody with exactly those capabilities attaches and serves), and the Kubernetes manifest
//! (the Kubernetes schemas of `kubernetes-validate`, strict; the PodMonitor, a custom
//! resource without a schema there, checked against the DaemonSet it scrapes).

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::Duration,
};

use crate::support::{
    Peer, Tracer, privileged,
    prometheus::{LO, Place, TempDir, free_port},
    tcptrace_bin, wait_until,
};

fn dist(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tcptrace/dist")
        .join(path)
}

/// A tool the packaging checks need: present, or a loud skip outside CI (a failure in CI,
/// where `cargo xtask test` installs it).
fn needed(path: Option<PathBuf>, name: &str, how: &str) -> Option<PathBuf> {
    if let Some(path) = path.filter(|p| p.exists()) {
        return Some(path);
    }
    assert!(
        env::var("CI").as_deref() != Ok("true"),
        "{name} is missing: {how}"
    );
    eprintln!("SKIPPED: {name} is missing ({how})");
    None
}

fn report(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const UNIT: &str = "systemd/tcptrace-export.service";

/// The unit with its ExecStart pointing at the binary under test (verify checks that the
/// command exists and is executable).
fn unit_under_test(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(dist(UNIT)).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/tcptrace export"));
    let path = dir.join("tcptrace-export.service");
    std::fs::write(
        &path,
        text.replace("/usr/local/bin/tcptrace", tcptrace_bin().to_str().unwrap()),
    )
    .unwrap();
    path
}

#[test]
fn the_systemd_unit_verifies_and_scores_as_hardened() {
    let Some(analyze) = needed(
        Some(PathBuf::from("/usr/bin/systemd-analyze")),
        "systemd-analyze",
        "apt-get install systemd",
    ) else {
        return;
    };
    let dir = TempDir::new("unit");
    let unit = unit_under_test(&dir.0);
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(out.status.success(), "verify: {}", report(&out));
    assert_eq!(report(&out).trim(), "", "verify warned");
    // systemd's own exposure score, 0 (locked down) to 10 (unprotected), "OK" below 3; the
    // threshold is in tenths.
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=30"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = report(&out);
    assert!(out.status.success(), "security: {text}");
    assert!(text.contains("Overall exposure level"), "{text}");
}

/// The capabilities the unit gives, as setpriv names them (`+bpf,+perfmon,...`).
fn unit_capabilities() -> String {
    let text = std::fs::read_to_string(dist(UNIT)).unwrap();
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"))
            .to_owned()
    };
    let ambient = line("AmbientCapabilities=");
    assert_eq!(ambient, line("CapabilityBoundingSet="));
    ambient
        .split_whitespace()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn the_units_capabilities_are_enough_for_the_exporter() {
    if !privileged("the_units_capabilities_are_enough_for_the_exporter") {
        return;
    }
    let caps = unit_capabilities();
    assert_eq!(caps, "+bpf,+perfmon,+sys_ptrace,+dac_read_search");
    let port = free_port();
    let listen = format!("{LO}:{port}");
    // As the unit runs it: another user than root, these capabilities alone (inherited,
    // ambient and bounding), no way to gain more.
    let mut command = Command::new("setpriv");
    command.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--no-new-privs",
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        &format!("--bounding-set=-all,{caps}"),
    ]);
    command.arg(tcptrace_bin());
    let exporter = Tracer::start_command(command, &["export", "--listen", &listen]);
    let body = wait_until("metrics from the unprivileged exporter", || {
        let (status, body) = Place::host().get(port, "/metrics", None);
        let body = String::from_utf8_lossy(&body).into_owned();
        (status == 200 && body.contains("tcptrace_census_up 1")).then_some(body)
    });
    let attached = body
        .lines()
        .find_map(|l| l.strip_prefix("tcptrace_programs_attached "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("tcptrace_programs_attached");
    assert!(attached >= 1.0, "{body}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", exporter.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.contains("65534"), "{uid}");
    // Attached: CAP_BPF and CAP_PERFMON are given up by every thread; what is kept still reads
    // another user's (root's) process: the holder of a CLOSE_WAIT socket is named.
    for thread in thread_capabilities(exporter.pid()) {
        assert_eq!(thread.permitted, AFTER_ATTACH, "{thread:?}");
        assert_eq!(thread.effective, AFTER_ATTACH, "{thread:?}");
        assert_eq!(thread.ambient, 0, "{thread:?}");
    }
    let mut server = Peer::spawn();
    let mut client = Peer::spawn();
    let server_port = server.port(&format!("listen {LO}"));
    client.cmd(&format!("connect {LO} {server_port}"));
    server.cmd("accept");
    client.cmd("close");
    server.cmd("wait-eof");
    wait_until("the CLOSE_WAIT socket's holder named", || {
        let (_, body) = Place::host().get(port, "/metrics", None);
        String::from_utf8_lossy(&body)
            .lines()
            .any(|l| l.starts_with(r#"tcptrace_close_wait_sockets{comm="tcp-peer"}"#))
            .then_some(())
    });
    let finished = exporter.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
}

/// CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: what the exporter keeps once attached.
const AFTER_ATTACH: u64 = (1 << 19) | (1 << 2);

/// The capability sets of one thread, from `/proc/PID/task/TID/status`.
#[derive(Debug)]
struct ThreadCapabilities {
    name: String,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
    bounding: u64,
}

fn thread_capabilities(pid: u32) -> Vec<ThreadCapabilities> {
    let threads: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap_or_else(|| panic!("no {key} in {status}"))
                    .trim()
                    .to_owned()
            };
            let mask = |key: &str| u64::from_str_radix(&field(key), 16).unwrap();
            ThreadCapabilities {
                name: field("Name:"),
                effective: mask("CapEff:"),
                permitted: mask("CapPrm:"),
                inheritable: mask("CapInh:"),
                ambient: mask("CapAmb:"),
                bounding: mask("CapBnd:"),
            }
        })
        .collect();
    // The event loop and the HTTP server at least.
    assert!(threads.len() >= 2, "{threads:?}");
    threads
}

#[test]
fn the_exporter_run_as_root_keeps_only_what_reading_proc_needs() {
    if !privileged("the_exporter_run_as_root_keeps_only_what_reading_proc_needs") {
        return;
    }
    let port = free_port();
    let listen = format!("{LO}:{port}");
    let exporter = Tracer::start(&["export", "--listen", &listen]);
    wait_until("metrics from the exporter", || {
        let (status, body) = Place::host().get(port, "/metrics", None);
        (status == 200 && String::from_utf8_lossy(&body).contains("tcptrace_census_up 1"))
            .then_some(())
    });
    let threads = thread_capabilities(exporter.pid());
    assert!(
        threads.iter().any(|t| t.name == "tcptrace-http"),
        "{threads:?}"
    );
    for thread in &threads {
        // Root may lower its bounding set too: no exec can bring the others back.
        assert_eq!(
            (thread.permitted, thread.effective, thread.bounding),
            (AFTER_ATTACH, AFTER_ATTACH, AFTER_ATTACH),
            "{thread:?}"
        );
        assert_eq!((thread.inheritable, thread.ambient), (0, 0), "{thread:?}");
    }
    // The loop still reads the probe's maps (its loss counters) without CAP_BPF: a scrape
    // after a tick of the counters has them, and the summary counts the scrapes' transitions.
    thread::sleep(Duration::from_millis(1200));
    let (status, body) = Place::host().get(port, "/metrics", None);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"tcptrace_lost_events_total{reason="ring_buffer_full"} 0"#),
        "{body}"
    );
    let finished = exporter.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("capabilities: kept CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE only"),
        "{}",
        finished.stderr
    );
    assert!(!finished.stderr.contains("warning"), "{}", finished.stderr);
    assert!(finished.stderr.contains(", 0 lost"), "{}", finished.stderr);
}

const MANIFEST: &str = "kubernetes/tcptrace.yaml";

/// `kubernetes-validate` (PyPI), in the virtual environment `cargo xtask test` makes, or on
/// the PATH.
fn kubernetes_validate() -> Option<PathBuf> {
    let path = env::var_os("KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .or_else(|| {
            env::split_paths(&env::var_os("PATH")?)
                .map(|dir| dir.join("kubernetes-validate"))
                .find(|p| p.exists())
        });
    needed(
        path,
        "kubernetes-validate",
        "`cargo xtask setup` installs it from PyPI into ~/.cache/tcptrace",
    )
}

#[test]
fn the_kubernetes_manifest_validates_against_the_schemas() {
    let Some(validate) = kubernetes_validate() else {
        return;
    };
    let out = Command::new(&validate)
        .arg("--strict")
        .arg(dist(MANIFEST))
        .output()
        .unwrap();
    let text = report(&out);
    assert!(out.status.success(), "{text}");
    for resource in [
        "namespace/tcptrace",
        "daemonset/tcptrace",
        "service/tcptrace",
    ] {
        assert!(
            text.contains(&format!("passed for resource {resource}")),
            "{resource}: {text}"
        );
    }
    // The custom resource, against what it must match: the Python beside the validator has
    // PyYAML (a dependency of kubernetes-validate).
    let python = validate.with_file_name("python3");
    let python = if python.exists() {
        python
    } else {
        PathBuf::from("python3")
    };
    let out = Command::new(python)
        .arg("-c")
        .arg(PODMONITOR_CHECK)
        .arg(dist(MANIFEST))
        .output()
        .unwrap();
    assert!(out.status.success(), "PodMonitor: {}", report(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// The PodMonitor selects the DaemonSet's pods and scrapes a port they name, at the path
/// of their annotations; the Service selects them too; the DaemonSet has what the exporter
/// needs (host PID and network, the capabilities of the systemd unit, BTF read-only, probes
/// on the health endpoint).
const PODMONITOR_CHECK: &str = r#"
import sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
ds, svc, pm = docs["DaemonSet"], docs["Service"], docs["PodMonitor"]
assert pm["apiVersion"] == "monitoring.coreos.com/v1", pm["apiVersion"]
pod = ds["spec"]["template"]
labels = pod["metadata"]["labels"]
for selector in (pm["spec"]["selector"]["matchLabels"], svc["spec"]["selector"], ds["spec"]["selector"]["matchLabels"]):
    assert all(labels.get(k) == v for k, v in selector.items()), selector
spec = pod["spec"]
assert spec["hostPID"] and spec["hostNetwork"]
container = spec["containers"][0]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
annotations = pod["metadata"]["annotations"]
assert annotations["prometheus.io/scrape"] == "true"
for endpoint in pm["spec"]["podMetricsEndpoints"]:
    assert endpoint["port"] in ports, endpoint
    assert int(annotations["prometheus.io/port"]) == ports[endpoint["port"]]
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"
caps = container["securityContext"]["capabilities"]
assert caps["drop"] == ["ALL"]
assert sorted(caps["add"]) == ["BPF", "DAC_READ_SEARCH", "PERFMON", "SYS_PTRACE"], caps
assert container["securityContext"]["privileged"] is False
mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
assert mounts["/sys/kernel/btf"]["readOnly"] is True
for probe in ("livenessProbe", "readinessProbe"):
    assert container[probe]["httpGet"]["path"] == "/healthz", probe
assert container["resources"]["limits"]["memory"]
assert "--listen" in container["args"]
print("ok")
"#;
