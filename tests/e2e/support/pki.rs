//! Certificates the TLS tests make with openssl: self-signed ones, and a small PKI of a CA,
//! the server and client certificates it signs and another CA's client.

use std::{path::Path, process::Command};

fn openssl(openssl: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate in `dir`, `NAME.pem`, and its key, `NAME.key`, with the
/// extensions `extensions` (openssl's `-addext` syntax).
pub fn self_signed(tool: &Path, dir: &Path, name: &str, extensions: &[&str]) {
    let subject = format!("/CN=tcptrace test {name}");
    let key = format!("{name}.key");
    let cert = format!("{name}.pem");
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        &subject,
        "-keyout",
        &key,
        "-out",
        &cert,
    ];
    for extension in extensions {
        args.extend(["-addext", extension]);
    }
    openssl(tool, dir, &args);
}

/// A CA in `dir`: `NAME.pem` and `NAME.key`.
fn ca(tool: &Path, dir: &Path, name: &str) {
    self_signed(
        tool,
        dir,
        name,
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign",
        ],
    );
}

/// A certificate `NAME.pem` (key `NAME.key`) signed by CA `by`, with the extensions `ext`
/// (openssl's extension file syntax).
fn signed(tool: &Path, dir: &Path, name: &str, by: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        tool,
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN=tcptrace test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        tool,
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{by}.pem"),
            "-CAkey",
            &format!("{by}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// In `dir`: CA `ca`, its `server` (for 127.0.0.1), `client` (prometheus.test) and
/// `other-client` (grafana.test), and `stranger` (prometheus.test), a client of CA
/// `other-ca`.
pub fn pki(tool: &Path, dir: &Path) {
    ca(tool, dir, "ca");
    ca(tool, dir, "other-ca");
    signed(
        tool,
        dir,
        "server",
        "ca",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let client = "subjectAltName=DNS:prometheus.test\nextendedKeyUsage=clientAuth\n";
    signed(tool, dir, "client", "ca", client);
    signed(tool, dir, "stranger", "other-ca", client);
    signed(
        tool,
        dir,
        "other-client",
        "ca",
        "subjectAltName=DNS:grafana.test\nextendedKeyUsage=clientAuth\n",
    );
}
