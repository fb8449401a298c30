//! `tcptrace export --web-config`: TLS with a self-signed certificate made by the test
//! (openssl), basic auth with a bcrypt hash, scraped by a real Prometheus: with the right
//! user and password it gets the metrics; without credentials, with a wrong password or in
//! plain HTTP it does not (401, or no TLS). A file that cannot be read or that is malformed
//! (client certificate settings and CA files included) is a one-line error and exit status 2.

use std::{path::Path, process::Command};

use serde_json::Value;

use crate::support::{
    Tracer, pki, privileged,
    prometheus::{LO, Options, Prometheus, TempDir, free_port, tool},
    tcptrace_bin, wait_until,
};

/// bcrypt (cost 10) of [`PASSWORD`], as `htpasswd -nBC 10 prometheus` writes it.
pub(crate) const HASH: &str = "$2b$10$KlEq2hpnDd5hvPyL23Jjeu2kxQfGhpOa.3/1xo.gDYEEZD0Dty0EW";
pub(crate) const PASSWORD: &str = "scrape-secret";

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`: `server.pem`,
/// `server.key`.
fn self_signed(openssl: &Path, dir: &Path) {
    pki::self_signed(openssl, dir, "server", &["subjectAltName=IP:127.0.0.1"]);
}

/// `tcptrace export --web-config WEB` on loopback `port`, counting as `count` says, once it
/// says it serves HTTPS.
pub(crate) fn https_exporter(port: u16, web: &Path, count: &[&str]) -> Tracer {
    let listen = format!("{LO}:{port}");
    let mut args = vec!["export", "--listen", &listen, "--web-config"];
    args.push(web.to_str().unwrap());
    args.extend(count);
    let exporter = Tracer::start(&args);
    assert!(
        exporter
            .stderr()
            .contains(&format!("https://{listen}/metrics")),
        "{}",
        exporter.stderr()
    );
    exporter
}

/// The scrape target of job `job` as Prometheus's API lists it.
pub(crate) fn target<'a>(targets: &'a Value, job: &str) -> Option<&'a Value> {
    targets["data"]["activeTargets"]
        .as_array()?
        .iter()
        .find(|t| t["labels"]["job"] == job)
}

#[test]
fn tls_and_basic_auth_let_in_the_right_scraper_only() {
    if !privileged("tls_and_basic_auth_let_in_the_right_scraper_only") {
        return;
    }
    let (Some(prometheus_bin), Some(openssl)) = (tool("prometheus"), tool("openssl")) else {
        return;
    };
    let dir = TempDir::new("web-config");
    self_signed(&openssl, &dir.0);
    // Relative file names: read from the configuration's folder, as exporter-toolkit does.
    let web = dir.0.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: {HASH}\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let listen = format!("{LO}:{port}");
    let exporter = https_exporter(port, &web, &["--lport", "1"]);
    let ca = dir.0.join("server.pem");
    let tls = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {}\n",
        ca.display()
    );
    let job = |name: &str, settings: &str| {
        format!(
            "  - job_name: {name}\n{settings}    static_configs:\n      - targets: ['{LO}:{port}']\n"
        )
    };
    let more = [
        job("no-credentials", &tls),
        job(
            "wrong-password",
            &format!("{tls}    basic_auth:\n      username: prometheus\n      password: wrong\n"),
        ),
        job(
            "unknown-user",
            &format!("{tls}    basic_auth:\n      username: root\n      password: {PASSWORD}\n"),
        ),
        job(
            "plain-http",
            "    basic_auth:\n      username: prometheus\n      password_file: password\n",
        ),
    ]
    .concat();
    let prometheus = Prometheus::start(
        &prometheus_bin,
        port,
        Options {
            job: &format!(
                "{tls}    basic_auth:\n      username: prometheus\n      password_file: password\n"
            ),
            files: &[("password", PASSWORD.as_bytes())],
            more_jobs: &more,
            ..Options::default()
        },
    );
    prometheus.wait_ready();
    assert_eq!(
        prometheus.scalar("tcptrace_programs_attached{job=\"tcptrace\"}"),
        prometheus.scalar("tcptrace_programs_attached{job=\"tcptrace\"} > 0"),
    );
    let refused = ["no-credentials", "wrong-password", "unknown-user"];
    let targets = wait_until("every job scraped once", || {
        let targets = prometheus.targets();
        ["plain-http"]
            .iter()
            .chain(&refused)
            .all(|job| target(&targets, job).is_some_and(|t| t["health"] != "unknown"))
            .then_some(targets)
    });
    for job in refused {
        let t = target(&targets, job).unwrap();
        assert_eq!(t["health"], "down", "{t:#}");
        let error = t["lastError"].as_str().unwrap();
        // Prometheus says "server returned HTTP status 401 Unauthorized"; the bare number
        // could be part of the URL's port.
        assert!(error.contains("401 Unauthorized"), "{job}: {error}");
    }
    // Plain HTTP to the TLS port: no HTTP answer at all.
    let plain = target(&targets, "plain-http").unwrap();
    assert_eq!(plain["health"], "down", "{plain:#}");
    assert!(
        !plain["lastError"].as_str().unwrap().contains("HTTP status"),
        "{plain:#}"
    );
    let up = target(&targets, "tcptrace").unwrap();
    assert_eq!(up["health"], "up", "{up:#}");
    assert_eq!(up["scrapeUrl"], format!("https://{listen}/metrics"));
    drop(prometheus);
    let finished = exporter.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
}

/// `tcptrace export --web-config FILE`: exit status 2 and one line on stderr, naming the
/// file and what is wrong.
fn refused(file: &Path, expected: &str) {
    let out = Command::new(tcptrace_bin())
        .args(["export", "--listen", "127.0.0.1:0", "--web-config"])
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}: {stderr}", file.display());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--web-config"), "{stderr}");
    assert!(stderr.contains(expected), "expected {expected}: {stderr}");
}

#[test]
fn unreadable_or_malformed_web_configs_are_one_line_errors() {
    let dir = TempDir::new("web-config-bad");
    refused(&dir.0.join("missing.yml"), "No such file");
    // A folder cannot be read as a file.
    refused(&dir.0, "cannot read");
    for (name, text, expected) in [
        ("syntax.yml", "tls_server_config: [\n", "tls_server_config"),
        (
            "typo.yml",
            "basic_auth_user:\n  a: b\n",
            "unknown field `basic_auth_user`",
        ),
        (
            "plain.yml",
            "basic_auth_users:\n  prometheus: scrape-secret\n",
            "not a bcrypt hash",
        ),
        (
            "mtls-no-ca.yml",
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n",
            "needs client_ca_file",
        ),
        (
            "mtls-no-policy.yml",
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca.pem\n",
            "client_auth_type is NoClientCert",
        ),
        (
            "mtls-unverified.yml",
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAnyClientCert\n",
            "authenticates nobody",
        ),
        (
            "mtls-sans.yml",
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_allowed_sans: [a]\n",
            "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert",
        ),
        (
            "nocert.yml",
            "tls_server_config:\n  cert_file: nothing.pem\n  key_file: nothing.key\n",
            "nothing.pem",
        ),
        (
            "garbage.yml",
            "tls_server_config:\n  cert_file: garbage.yml\n  key_file: garbage.yml\n",
            "no PEM certificate",
        ),
    ] {
        let path = dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        refused(&path, expected);
    }
    // A client CA file is read once the server's certificate and key are.
    let Some(openssl) = tool("openssl") else {
        return;
    };
    self_signed(&openssl, &dir.0);
    std::fs::write(
        dir.0.join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (ca_file, expected) in [
        ("missing-ca.pem", "No such file"),
        ("server.key", "no PEM certificate"),
        ("broken.pem", "not a PEM certificate"),
    ] {
        let path = dir.0.join(format!("with-{ca_file}.yml"));
        std::fs::write(
            &path,
            format!(
                "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
                 client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca_file}\n"
            ),
        )
        .unwrap();
        refused(&path, &format!("{ca_file}: {expected}"));
    }
}
