//! `tcptrace export --web-config` with client certificates: the test makes a CA, a server
//! certificate and a client certificate it signs, and a client certificate of another CA
//! (openssl). With RequireAndVerifyClientCert and basic auth, a real Prometheus holding the
//! client key and the password scrapes the workload's counts, and every scraper that lacks
//! one of them is refused; with VerifyClientCertIfGiven, anonymous clients get in and the
//! other CA's client does not; with client_allowed_sans, only the CA's clients it names get
//! in. The exporter keeps serving after every refused handshake.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    export::{expected, wait_for_counts, workload},
    export_tls::{HASH, PASSWORD, https_exporter, target},
    support::{
        Netns, Tracer,
        pki::pki,
        privileged,
        prometheus::{LO, Options, Prometheus, TempDir, free_port, tool},
        wait_until,
    },
};

/// Writes `web.yml` in `dir` (server certificate, client CA `ca.pem`, `settings` after) and
/// starts an exporter with it.
fn exporter(dir: &Path, port: u16, settings: &str, count: &[&str]) -> Tracer {
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
             client_ca_file: ca.pem\n{settings}"
        ),
    )
    .unwrap();
    https_exporter(port, &web, count)
}

/// curl's GET of /metrics, trusting `ca.pem` of `dir`, with `args` (a client certificate,
/// credentials): the HTTP status (0 when the handshake failed), the body and curl's error.
fn curl(curl: &Path, dir: &Path, port: u16, args: &[&str]) -> (u16, String, String) {
    let out = Command::new(curl)
        .args(["-sS", "--max-time", "10", "--cacert", "ca.pem"])
        .args(args)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://{LO}:{port}/metrics"))
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (
        status.trim().parse().unwrap(),
        body.to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A Prometheus scrape job's TLS settings: trust `ca.pem`, present `client` if any.
fn tls(dir: &Path, client: Option<&str>) -> String {
    let file = |name: String| dir.join(name).display().to_string();
    let mut settings = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {}\n",
        file("ca.pem".into())
    );
    if let Some(client) = client {
        settings += &format!(
            "      cert_file: {}\n      key_file: {}\n",
            file(format!("{client}.pem")),
            file(format!("{client}.key"))
        );
    }
    settings
}

fn tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    Some((tool("prometheus")?, tool("openssl")?, tool("curl")?))
}

#[test]
fn client_certificates_of_the_ca_and_a_password_let_in_the_right_scraper_only() {
    if !privileged("client_certificates_of_the_ca_and_a_password_let_in_the_right_scraper_only") {
        return;
    }
    let Some((prometheus_bin, openssl, curl_bin)) = tools() else {
        return;
    };
    let dir = TempDir::new("mtls-required");
    pki(&openssl, &dir.0);
    let netns = Netns::new("export-mtls");
    let inode = netns.inode();
    let port = free_port();
    let exporter = exporter(
        &dir.0,
        port,
        &format!(
            "  client_auth_type: RequireAndVerifyClientCert\nbasic_auth_users:\n  prometheus: {HASH}\n"
        ),
        &["--netns", &inode],
    );
    let password = "    basic_auth:\n      username: prometheus\n      password_file: password\n";
    let job = |name: &str, settings: &str| {
        format!(
            "  - job_name: {name}\n{settings}    static_configs:\n      - targets: ['{LO}:{port}']\n"
        )
    };
    let more = [
        job(
            "no-client-cert",
            &format!("{}{password}", tls(&dir.0, None)),
        ),
        job(
            "other-ca",
            &format!("{}{password}", tls(&dir.0, Some("stranger"))),
        ),
        job("no-password", &tls(&dir.0, Some("client"))),
    ]
    .concat();
    let prometheus = Prometheus::start(
        &prometheus_bin,
        port,
        Options {
            job: &format!("{}{password}", tls(&dir.0, Some("client"))),
            files: &[("password", PASSWORD.as_bytes())],
            more_jobs: &more,
            ..Options::default()
        },
    );
    prometheus.wait_ready();
    workload(&netns);
    wait_for_counts(&prometheus, &expected());
    let refused = ["no-client-cert", "other-ca", "no-password"];
    let targets = wait_until("every refused job scraped once", || {
        let targets = prometheus.targets();
        refused
            .iter()
            .all(|job| target(&targets, job).is_some_and(|t| t["health"] != "unknown"))
            .then_some(targets)
    });
    // Go's words for the alerts rustls sends: TLS 1.3's "certificate required" when none
    // came, "unknown certificate authority" for a chain to another CA.
    for (job, words) in [
        ("no-client-cert", "certificate required"),
        ("other-ca", "unknown certificate authority"),
        ("no-password", "401 Unauthorized"),
    ] {
        let t = target(&targets, job).unwrap();
        assert_eq!(t["health"], "down", "{t:#}");
        let error = t["lastError"].as_str().unwrap();
        assert!(error.contains(words), "{job}: {error}");
    }
    let up = target(&targets, "tcptrace").unwrap();
    assert_eq!(up["health"], "up", "{up:#}");
    // Still serving after those handshakes: curl with the client's key and the password.
    let user = format!("prometheus:{PASSWORD}");
    let client = ["--cert", "client.pem", "--key", "client.key", "-u", &user];
    let (status, body, _) = curl(&curl_bin, &dir.0, port, &client);
    assert_eq!(status, 200);
    assert!(body.contains("tcptrace_transitions_total{"), "{body}");
    let (status, _, error) = curl(&curl_bin, &dir.0, port, &["-u", &user]);
    assert_eq!(status, 0, "no client certificate: {error}");
    drop(prometheus);
    let finished = exporter.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
}

/// An exporter of the test's PKI that counts nothing, asked by curl.
struct Served {
    dir: TempDir,
    curl: PathBuf,
    port: u16,
    exporter: Tracer,
}

impl Served {
    /// `None`: skipped (no root outside CI, or a tool missing).
    fn start(test: &str, settings: &str) -> Option<Self> {
        if !privileged(test) {
            return None;
        }
        let (_, openssl, curl) = tools()?;
        let dir = TempDir::new(test);
        pki(&openssl, &dir.0);
        let port = free_port();
        let exporter = exporter(&dir.0, port, settings, &["--lport", "1"]);
        Some(Self {
            dir,
            curl,
            port,
            exporter,
        })
    }

    /// curl's status, body and error, presenting `client`'s certificate if any.
    fn get(&self, client: Option<&str>) -> (u16, String, String) {
        let files = client.map(|c| [format!("{c}.pem"), format!("{c}.key")]);
        let args = match &files {
            Some([cert, key]) => vec!["--cert", cert, "--key", key],
            None => vec![],
        };
        curl(&self.curl, &self.dir.0, self.port, &args)
    }

    fn stop(self) {
        let finished = self.exporter.stop();
        assert!(finished.status.success(), "{}", finished.stderr);
    }
}

#[test]
fn verify_client_cert_if_given_lets_anonymous_clients_in_but_not_other_cas() {
    let Some(served) = Served::start(
        "verify_client_cert_if_given_lets_anonymous_clients_in_but_not_other_cas",
        "  client_auth_type: VerifyClientCertIfGiven\n",
    ) else {
        return;
    };
    assert_eq!(served.get(None).0, 200, "anonymous");
    assert_eq!(served.get(Some("client")).0, 200, "the CA's client");
    let (status, _, error) = served.get(Some("stranger"));
    assert_eq!(status, 0, "another CA's client: {error}");
    assert!(error.contains("unknown ca"), "{error}");
    // And serving still.
    let (status, body, _) = served.get(None);
    assert_eq!(status, 200);
    assert!(body.contains("tcptrace_programs_attached"), "{body}");
    served.stop();
}

#[test]
fn client_allowed_sans_let_in_only_the_named_clients_of_the_ca() {
    let Some(served) = Served::start(
        "client_allowed_sans_let_in_only_the_named_clients_of_the_ca",
        "  client_auth_type: RequireAndVerifyClientCert\n  \
         client_allowed_sans: [scraper.test, prometheus.test]\n",
    ) else {
        return;
    };
    // The CA's, but named grafana.test: the handshake fails with access_denied.
    let (status, _, error) = served.get(Some("other-client"));
    assert_eq!(status, 0, "a client not named: {error}");
    assert!(error.contains("access denied"), "{error}");
    // Named prometheus.test, but by another CA: the name alone lets nobody in.
    let (status, _, error) = served.get(Some("stranger"));
    assert_eq!(status, 0, "another CA's client: {error}");
    assert!(error.contains("unknown ca"), "{error}");
    let (status, _, error) = served.get(None);
    assert_eq!(status, 0, "no certificate: {error}");
    let (status, body, error) = served.get(Some("client"));
    assert_eq!(status, 200, "{error}");
    assert!(body.contains("tcptrace_programs_attached"), "{body}");
    served.stop();
}
