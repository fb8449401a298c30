//! Reads `--web-config` and the certificate and key it names, and builds the TLS server
//! configuration (rustls, ring's cryptography, HTTP/1.1 by ALPN) and the basic-auth check:
//! every failure a one-line error that names the file.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{ServerConfig, version};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::core::web_config::{self, BasicAuth, TlsConfig, TlsVersion, WebConfigError};

/// What the server needs of the file.
#[derive(Clone, Default)]
pub struct WebSetup {
    pub tls: Option<Arc<ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
}

impl std::fmt::Debug for WebSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSetup")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, WebConfigError> {
    fs::read(path).map_err(|err| WebConfigError(format!("cannot read {}: {err}", path.display())))
}

/// Loads the configuration file and whatever it names.
pub fn load(path: &Path) -> Result<WebSetup, WebConfigError> {
    let text =
        String::from_utf8(read(path)?).map_err(|_| WebConfigError("not UTF-8 text".to_owned()))?;
    let config = web_config::parse(&text)?;
    let folder = path.parent().unwrap_or(Path::new("."));
    Ok(WebSetup {
        tls: config
            .tls
            .map(|tls| server_config(&tls, folder).map(Arc::new))
            .transpose()?,
        auth: BasicAuth::new(config.users).map(Arc::new),
    })
}

/// A file named in the configuration, relative to the configuration's folder.
fn beside(folder: &Path, file: &str) -> PathBuf {
    folder.join(file)
}

fn server_config(tls: &TlsConfig, folder: &Path) -> Result<ServerConfig, WebConfigError> {
    let cert_path = beside(folder, &tls.cert_file);
    let key_path = beside(folder, &tls.key_file);
    let pem_error = |path: &Path, what: &str, err: &dyn std::fmt::Display| {
        WebConfigError(format!("{}: {what}: {err}", path.display()))
    };
    let cert_pem = read(&cert_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|err| pem_error(&cert_path, "not a PEM certificate", &err))?;
    if certs.is_empty() {
        return Err(WebConfigError(format!(
            "{}: no PEM certificate in it",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?)
        .map_err(|err| pem_error(&key_path, "not a PEM private key", &err))?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::TLS12, &version::TLS12),
        (TlsVersion::TLS13, &version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (tls.min_version..=tls.max_version).contains(v))
    .map(|(_, supported)| supported)
    .collect();
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&versions)
            .map_err(|err| WebConfigError(format!("TLS versions: {err}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|err| {
                WebConfigError(format!(
                    "{} and {}: {err}",
                    cert_path.display(),
                    key_path.display()
                ))
            })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
