//! `tcptrace export --web-config FILE`: the web configuration file of the Prometheus
//! project's exporter-toolkit (what node_exporter and the other official exporters read), so
//! that one file and one habit serve every exporter of a host. Pure: the file's text in, a
//! checked configuration out, and basic-auth credentials checked against its bcrypt hashes.
//!
//! Supported: `tls_server_config` with `cert_file`, `key_file`, `min_version` and
//! `max_version` (TLS12, TLS13), client certificates verified against `client_ca_file`
//! (`client_auth_type` RequireAndVerifyClientCert or VerifyClientCertIfGiven) and their
//! `client_allowed_sans`, and `basic_auth_users`. exporter-toolkit's other keys and values are
//! refused by name rather than ignored, since ignoring a security setting (cipher suites,
//! say) would serve with less than the file asks for; unknown keys are refused as typos.

use std::{
    collections::{BTreeMap, HashSet},
    str::FromStr,
    sync::Mutex,
};

use base64::Engine as _;
use serde::{Deserialize, de::IgnoredAny};

/// What was wrong with the file, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WebConfigError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    TLS12,
    TLS13,
    /// Named by exporter-toolkit, refused here: rustls implements neither.
    TLS10,
    TLS11,
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    http_server_config: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    // exporter-toolkit's, refused by name below.
    cert: Option<IgnoredAny>,
    key: Option<IgnoredAny>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    // exporter-toolkit's, refused by name below.
    client_ca: Option<IgnoredAny>,
    cipher_suites: Option<IgnoredAny>,
    curve_preferences: Option<IgnoredAny>,
    prefer_server_cipher_suites: Option<IgnoredAny>,
}

/// TLS as configured: the files are read by the OS edge, relative to the configuration
/// file's folder when relative (as exporter-toolkit does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: String,
    pub key_file: String,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    pub client_certs: ClientCerts,
}

/// Which client certificates the TLS handshake asks for (`client_auth_type`), and the CA
/// certificates they must chain to (`client_ca_file`, PEM, read as `cert_file` is).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientCerts {
    /// `NoClientCert` (the default): none asked for.
    #[default]
    NotAsked,
    /// `VerifyClientCertIfGiven`: a client without one is let in; one with a certificate
    /// that does not chain to the CAs fails the handshake.
    VerifiedIfGiven { ca_file: String },
    /// `RequireAndVerifyClientCert`: the handshake fails without a certificate that chains
    /// to the CAs and, when `allowed_sans` is not empty (`client_allowed_sans`), that names
    /// one of them among its subject alternative names.
    Required {
        ca_file: String,
        allowed_sans: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebConfig {
    pub tls: Option<TlsConfig>,
    /// User name → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
}

fn unsupported(key: &str) -> WebConfigError {
    WebConfigError(format!(
        "{key} is not supported by tcptrace (supported: tls_server_config's cert_file, \
         key_file, min_version, max_version, client_auth_type, client_ca_file, \
         client_allowed_sans; basic_auth_users)"
    ))
}

/// Parses and checks the file's text.
pub fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
    // An empty file (or only comments) is a valid configuration: plain HTTP, no auth.
    let file: Written = if text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
    {
        Written::default()
    } else {
        serde_norway::from_str(text)
            .map_err(|err| WebConfigError(err.to_string().replace('\n', " ")))?
    };
    if file.http_server_config.is_some() {
        return Err(unsupported("http_server_config"));
    }
    let tls = file.tls_server_config.map(tls_config).transpose()?;
    for (user, hash) in &file.basic_auth_users {
        if user.contains(':') {
            return Err(WebConfigError(format!(
                "basic_auth_users: `{user}` contains a colon, which basic auth cannot carry"
            )));
        }
        bcrypt::HashParts::from_str(hash).map_err(|_| {
            WebConfigError(format!(
                "basic_auth_users: the password of `{user}` is not a bcrypt hash \
                 (make one with `htpasswd -nBC 10 {user}` and keep what follows the colon)"
            ))
        })?;
    }
    Ok(WebConfig {
        tls,
        users: file.basic_auth_users,
    })
}

fn tls_config(tls: TlsFile) -> Result<TlsConfig, WebConfigError> {
    for (key, given) in [
        ("tls_server_config.cert", tls.cert.is_some()),
        ("tls_server_config.key", tls.key.is_some()),
        ("tls_server_config.client_ca", tls.client_ca.is_some()),
        (
            "tls_server_config.cipher_suites",
            tls.cipher_suites.is_some(),
        ),
        (
            "tls_server_config.curve_preferences",
            tls.curve_preferences.is_some(),
        ),
        (
            "tls_server_config.prefer_server_cipher_suites",
            tls.prefer_server_cipher_suites.is_some(),
        ),
    ] {
        if given {
            return Err(unsupported(key));
        }
    }
    let client_certs = client_certs(
        tls.client_auth_type.as_deref(),
        tls.client_ca_file.filter(|f| !f.is_empty()),
        tls.client_allowed_sans,
    )?;
    let missing = |key: &str| {
        WebConfigError(format!(
            "tls_server_config needs {key} (a PEM file, relative to this file's folder)"
        ))
    };
    let min_version = tls.min_version.unwrap_or(TlsVersion::TLS12);
    let max_version = tls.max_version.unwrap_or(TlsVersion::TLS13);
    for version in [min_version, max_version] {
        if matches!(version, TlsVersion::TLS10 | TlsVersion::TLS11) {
            return Err(WebConfigError(format!(
                "tls_server_config: {version:?} is not supported (TLS12 and TLS13 are)"
            )));
        }
    }
    if min_version > max_version {
        return Err(WebConfigError(format!(
            "tls_server_config: min_version {min_version:?} is above max_version {max_version:?}"
        )));
    }
    Ok(TlsConfig {
        cert_file: tls
            .cert_file
            .filter(|f| !f.is_empty())
            .ok_or_else(|| missing("cert_file"))?,
        key_file: tls
            .key_file
            .filter(|f| !f.is_empty())
            .ok_or_else(|| missing("key_file"))?,
        min_version,
        max_version,
        client_certs,
    })
}

/// `client_auth_type`, `client_ca_file` and `client_allowed_sans`, checked together.
fn client_certs(
    kind: Option<&str>,
    ca_file: Option<String>,
    allowed_sans: Option<Vec<String>>,
) -> Result<ClientCerts, WebConfigError> {
    if let Some(sans) = &allowed_sans {
        // exporter-toolkit's rule: without a required certificate there is no name to check.
        if kind != Some("RequireAndVerifyClientCert") {
            return Err(WebConfigError(
                "tls_server_config: client_allowed_sans needs client_auth_type \
                 RequireAndVerifyClientCert"
                    .to_owned(),
            ));
        }
        if sans.is_empty() {
            return Err(WebConfigError(
                "tls_server_config: client_allowed_sans is empty: no client could connect \
                 (list the names, or remove it to let in every certificate of the CAs)"
                    .to_owned(),
            ));
        }
    }
    let needs_ca = |kind: &str| {
        WebConfigError(format!(
            "tls_server_config: client_auth_type {kind} needs client_ca_file (PEM, the CA \
             certificates that client certificates must chain to)"
        ))
    };
    match (kind.unwrap_or("NoClientCert"), ca_file) {
        ("NoClientCert", None) => Ok(ClientCerts::NotAsked),
        // exporter-toolkit refuses this too: CAs without a policy would verify nothing.
        ("NoClientCert", Some(_)) => Err(WebConfigError(
            "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert \
             (set client_auth_type: RequireAndVerifyClientCert)"
                .to_owned(),
        )),
        ("RequireAndVerifyClientCert", Some(ca_file)) => Ok(ClientCerts::Required {
            ca_file,
            allowed_sans: allowed_sans.unwrap_or_default(),
        }),
        ("VerifyClientCertIfGiven", Some(ca_file)) => Ok(ClientCerts::VerifiedIfGiven { ca_file }),
        // Go's crypto/tls would verify against the system's CAs here: any certificate that
        // a public CA issued for client authentication would then be let in.
        (kind @ ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven"), None) => {
            Err(needs_ca(kind))
        }
        // Go asks for a certificate and checks only that the client holds its key: anyone
        // can make one, so these authenticate nobody. Serving them would look protected.
        (kind @ ("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert"), _) => {
            Err(WebConfigError(format!(
                "tls_server_config: client_auth_type {kind} is not supported: it accepts any \
                 certificate without verifying it, which authenticates nobody (use \
                 RequireAndVerifyClientCert with client_ca_file)"
            )))
        }
        (kind, _) => Err(WebConfigError(format!(
            "tls_server_config: client_auth_type `{kind}` is not one of NoClientCert, \
             RequireAndVerifyClientCert, VerifyClientCertIfGiven"
        ))),
    }
}

/// Credentials verified once, kept so that a scraper's every request does not cost a bcrypt
/// verification (tens of milliseconds by design); bounded, as a client may send many.
const VERIFIED_KEPT: usize = 64;

/// Checks `Authorization` headers against the configured users.
#[derive(Debug)]
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<String>>,
}

impl BasicAuth {
    /// `None` when no user is configured: every request is let in.
    pub fn new(users: BTreeMap<String, String>) -> Option<Self> {
        (!users.is_empty()).then(|| Self {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// True when `authorization` (the header's value) carries a configured user's password.
    pub fn check(&self, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(decode_basic) else {
            return false;
        };
        let key = format!("{user}:{password}");
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.contains(&key) {
            return true;
        }
        drop(verified);
        let ok = match self.users.get(&user) {
            Some(hash) => bcrypt::verify(&password, hash).unwrap_or(false),
            None => {
                // As long as for a known user, so that timing does not tell users apart.
                if let Some(hash) = self.users.values().next() {
                    let _ = bcrypt::verify(&password, hash);
                }
                false
            }
        };
        if ok {
            verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.len() >= VERIFIED_KEPT {
                verified.clear();
            }
            verified.insert(key);
        }
        ok
    }
}

/// `Basic BASE64(user:password)` → user and password.
fn decode_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `secret`, bcrypt cost 4 (the least, so that the tests run fast).
    fn hash() -> String {
        bcrypt::hash("secret", 4).unwrap()
    }

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn an_empty_file_is_plain_http_without_auth() {
        assert_eq!(parse("").unwrap(), WebConfig::default());
        assert_eq!(parse("# nothing\n\n").unwrap(), WebConfig::default());
    }

    #[test]
    fn tls_and_users_are_read() {
        let hash = hash();
        let config = parse(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: /etc/tcptrace/server.key\n  \
             min_version: TLS13\nbasic_auth_users:\n  prometheus: {hash}\n"
        ))
        .unwrap();
        assert_eq!(
            config.tls,
            Some(TlsConfig {
                cert_file: "server.crt".into(),
                key_file: "/etc/tcptrace/server.key".into(),
                min_version: TlsVersion::TLS13,
                max_version: TlsVersion::TLS13,
                client_certs: ClientCerts::NotAsked,
            })
        );
        assert_eq!(config.users["prometheus"], hash);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err =
            parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  keyfile: c\n").unwrap_err();
        assert!(err.0.contains("unknown field `keyfile`"), "{err}");
        let err = parse("basic_auth: {}\n").unwrap_err();
        assert!(err.0.contains("unknown field `basic_auth`"), "{err}");
        assert!(!err.0.contains('\n'));
    }

    #[test]
    fn settings_of_exporter_toolkit_that_are_not_implemented_are_refused() {
        for (text, key) in [
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca: |\n    PEM\n",
                "client_ca",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                "cipher_suites",
            ),
            (
                "http_server_config:\n  http2: false\n",
                "http_server_config",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.0.contains(key) && err.0.contains("not supported"),
                "{err}"
            );
        }
        // Saying the default is no setting at all.
        parse(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: NoClientCert\n",
        )
        .unwrap();
    }

    fn client_certs_of(settings: &str) -> Result<ClientCerts, WebConfigError> {
        parse(&format!(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n{settings}"
        ))
        .map(|config| config.tls.unwrap().client_certs)
    }

    #[test]
    fn client_certificates_are_read() {
        for settings in ["", "  client_auth_type: NoClientCert\n"] {
            assert_eq!(client_certs_of(settings), Ok(ClientCerts::NotAsked));
        }
        assert_eq!(
            client_certs_of(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
            ),
            Ok(ClientCerts::Required {
                ca_file: "ca.pem".into(),
                allowed_sans: Vec::new(),
            })
        );
        assert_eq!(
            client_certs_of(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
                 client_allowed_sans: [prometheus.test, 10.0.0.1]\n"
            ),
            Ok(ClientCerts::Required {
                ca_file: "ca.pem".into(),
                allowed_sans: vec!["prometheus.test".into(), "10.0.0.1".into()],
            })
        );
        assert_eq!(
            client_certs_of(
                "  client_ca_file: /etc/ca.pem\n  client_auth_type: VerifyClientCertIfGiven\n"
            ),
            Ok(ClientCerts::VerifiedIfGiven {
                ca_file: "/etc/ca.pem".into()
            })
        );
    }

    #[test]
    fn client_certificate_settings_that_verify_nothing_are_refused() {
        for (settings, expected) in [
            // CAs without a policy: exporter-toolkit refuses them as well.
            (
                "  client_ca_file: ca.pem\n",
                "client_auth_type is NoClientCert",
            ),
            (
                "  client_auth_type: NoClientCert\n  client_ca_file: ca.pem\n",
                "client_auth_type is NoClientCert",
            ),
            (
                "  client_auth_type: RequireAndVerifyClientCert\n",
                "RequireAndVerifyClientCert needs client_ca_file",
            ),
            (
                "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ''\n",
                "VerifyClientCertIfGiven needs client_ca_file",
            ),
            (
                "  client_auth_type: RequestClientCert\n  client_ca_file: ca.pem\n",
                "RequestClientCert is not supported: it accepts any certificate",
            ),
            (
                "  client_auth_type: RequireAnyClientCert\n",
                "RequireAnyClientCert is not supported: it accepts any certificate",
            ),
            // exporter-toolkit's older name of RequireAnyClientCert.
            (
                "  client_auth_type: RequireClientCert\n",
                "RequireClientCert is not supported",
            ),
            (
                "  client_auth_type: requireandverifyclientcert\n  client_ca_file: ca.pem\n",
                "`requireandverifyclientcert` is not one of",
            ),
            (
                "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  \
                 client_allowed_sans: [prometheus.test]\n",
                "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert",
            ),
            (
                "  client_allowed_sans: [prometheus.test]\n",
                "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert",
            ),
            (
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
                 client_allowed_sans: []\n",
                "client_allowed_sans is empty",
            ),
        ] {
            let err = client_certs_of(settings).unwrap_err();
            assert!(err.0.contains(expected), "{settings}: {err}");
            assert!(!err.0.contains('\n'), "{err}");
        }
    }

    #[test]
    fn malformed_files_are_one_line_errors() {
        for text in [
            "tls_server_config: [",
            "tls_server_config:\n  cert_file: a\n",
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n",
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
            "basic_auth_users:\n  prometheus: secret\n",
            "basic_auth_users: [a, b]\n",
            "- just\n- a list\n",
        ] {
            let err = parse(text).unwrap_err();
            assert!(!err.0.is_empty() && !err.0.contains('\n'), "{text}: {err}");
        }
    }

    #[test]
    fn credentials_are_checked_against_the_hash() {
        let auth = BasicAuth::new(BTreeMap::from([("prometheus".to_owned(), hash())])).unwrap();
        assert!(auth.check(Some(&basic("prometheus:secret"))));
        // Again, from what was verified.
        assert!(auth.check(Some(&basic("prometheus:secret"))));
        assert!(!auth.check(Some(&basic("prometheus:wrong"))));
        assert!(!auth.check(Some(&basic("nobody:secret"))));
        assert!(!auth.check(Some(&basic("prometheus"))));
        assert!(!auth.check(Some("Bearer abc")));
        assert!(!auth.check(Some("Basic !!!")));
        assert!(!auth.check(None));
        assert!(BasicAuth::new(BTreeMap::new()).is_none());
    }
}
