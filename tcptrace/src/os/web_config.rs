//! Reads `--web-config` and the certificate and key it names, and builds the TLS server
//! configuration (rustls, ring's cryptography, HTTP/1.1 by ALPN, client certificates verified
//! against the configured CAs) and the basic-auth check: every failure a one-line error that
//! names the file.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    version,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};

use crate::core::{
    client_sans,
    web_config::{self, BasicAuth, ClientCerts, TlsConfig, TlsVersion, WebConfigError},
};

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

fn pem_error(path: &Path, what: &str, err: &dyn std::fmt::Display) -> WebConfigError {
    WebConfigError(format!("{}: {what}: {err}", path.display()))
}

/// The PEM certificates of a file: at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<_, _>>()
        .map_err(|err| pem_error(path, "not a PEM certificate", &err))?;
    if certs.is_empty() {
        return Err(WebConfigError(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// `client_allowed_sans`: a certificate that the CAs' verifier accepted must also name one
/// of `allowed`, else the handshake fails (alert access_denied), as exporter-toolkit's
/// VerifyPeerCertificate makes Go's handshake fail.
#[derive(Debug)]
struct AllowedSans {
    verified: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.verified.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.verified.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.verified.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .verified
            .verify_client_cert(end_entity, intermediates, now)?;
        if client_sans::allowed(end_entity, &self.allowed) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verified.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verified.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verified.supported_verify_schemes()
    }
}

/// The handshake's check of client certificates: chained to the CAs of `ca_file`, within
/// their validity and with the client-authentication usage (rustls's webpki verifier), and
/// naming one of `allowed_sans` when there are any.
fn client_verifier(
    ca_file: &Path,
    optional: bool,
    allowed_sans: &[String],
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, WebConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots
            .add(cert)
            .map_err(|err| pem_error(ca_file, "not a CA certificate", &err))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    let verified = builder
        .build()
        .map_err(|err| pem_error(ca_file, "client certificate verifier", &err))?;
    if allowed_sans.is_empty() {
        return Ok(verified);
    }
    Ok(Arc::new(AllowedSans {
        verified,
        allowed: allowed_sans.to_vec(),
    }))
}

fn server_config(tls: &TlsConfig, folder: &Path) -> Result<ServerConfig, WebConfigError> {
    let cert_path = beside(folder, &tls.cert_file);
    let key_path = beside(folder, &tls.key_file);
    let certs = certificates(&cert_path)?;
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|err| WebConfigError(format!("TLS versions: {err}")))?;
    let builder = match &tls.client_certs {
        ClientCerts::NotAsked => builder.with_no_client_auth(),
        ClientCerts::VerifiedIfGiven { ca_file } => builder.with_client_cert_verifier(
            client_verifier(&beside(folder, ca_file), true, &[], &provider)?,
        ),
        ClientCerts::Required {
            ca_file,
            allowed_sans,
        } => builder.with_client_cert_verifier(client_verifier(
            &beside(folder, ca_file),
            false,
            allowed_sans,
            &provider,
        )?),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|err| {
        WebConfigError(format!(
            "{} and {}: {err}",
            cert_path.display(),
            key_path.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
