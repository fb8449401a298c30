//! `client_allowed_sans` of `--web-config`: the subject alternative names of a client
//! certificate, written as exporter-toolkit compares them (Go's crypto/x509: DNS names and
//! e-mail addresses as they are, IP addresses as Go prints them, URIs), and the check that
//! one of them is allowed. Pure: DER in, a verdict out; the chain is verified before this.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use x509_cert::{
    Certificate,
    der::Decode as _,
    ext::pkix::{SubjectAltName, name::GeneralName},
};

/// The certificate's DNS names, e-mail addresses, IP addresses and URIs, in that order (as
/// exporter-toolkit gathers them); `None` when the DER is not a certificate.
pub fn names(der: &[u8]) -> Option<Vec<String>> {
    let cert = Certificate::from_der(der).ok()?;
    let Some((_, sans)) = cert.tbs_certificate.get::<SubjectAltName>().ok()? else {
        return Some(Vec::new());
    };
    let mut by_kind: [Vec<String>; 4] = Default::default();
    for name in sans.0 {
        match name {
            GeneralName::DnsName(dns) => by_kind[0].push(dns.to_string()),
            GeneralName::Rfc822Name(email) => by_kind[1].push(email.to_string()),
            GeneralName::IpAddress(ip) => by_kind[2].push(ip_text(ip.as_bytes())?),
            GeneralName::UniformResourceIdentifier(uri) => by_kind[3].push(uri.to_string()),
            _ => {}
        }
    }
    Some(by_kind.concat())
}

/// Go's `net.IP.String()`: an IPv4-mapped IPv6 address prints as IPv4; other lengths are
/// refused, as Go's parser refuses them.
fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(ip.to_string())
}

/// True when the certificate names one of `allowed` exactly (no wildcards, no case folding:
/// exporter-toolkit compares strings).
pub fn allowed(der: &[u8], allowed: &[String]) -> bool {
    names(der).is_some_and(|names| names.iter().any(|name| allowed.contains(name)))
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::{CertificateDer, pem::PemObject as _};

    use super::*;

    /// Self-signed by openssl, with `subjectAltName=DNS:prometheus.test,email:ops@example.org,
    /// IP:10.0.0.1,IP:::ffff:10.0.0.2,IP:2001:db8:0:0:0:0:0:1,URI:spiffe://example.org/prometheus`.
    const WITH_SANS: &str = concat!(
        "-----BEGIN CERTIFICATE-----\n",
        "MIIB7jCCAZWgAwIBAgIUWt17podsEXie/14As6MPVwFt3Z0wCgYIKoZIzj0EAwIw\n",
        "DzENMAsGA1UEAwwEc2FuczAgFw0yNjEyMDExNTM3NDJaGA8yMTI2MTEwNzE1Mzc0\n",
        "MlowDzENMAsGA1UEAwwEc2FuczBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABLsI\n",
        "i6uu3ZimTIaPnP51eLjs8mPko2aau4cXDELksDlFqEQq58QT6hg4kF3g53yfsZTx\n",
        "7CzToydyPSMlzG0ROR6jgcwwgckwHQYDVR0OBBYEFHeGPSHLNca9+koZGTw3l9V/\n",
        "4pajMB8GA1UdIwQYMBaAFHeGPSHLNca9+koZGTw3l9V/4pajMA8GA1UdEwEB/wQF\n",
        "MAMBAf8wdgYDVR0RBG8wbYIPcHJvbWV0aGV1cy50ZXN0gQ9vcHNAZXhhbXBsZS5v\n",
        "cmeHBAoAAAGHEAAAAAAAAAAAAAD//woAAAKHECABDbgAAAAAAAAAAAAAAAGGH3Nw\n",
        "aWZmZTovL2V4YW1wbGUub3JnL3Byb21ldGhldXMwCgYIKoZIzj0EAwIDRwAwRAIg\n",
        "Yw+RqrswS5W5YTk7Yr2O/z11T5EZ55m6RIn+tyBQtoUCIA3C887gq9qta39QQ1W6\n",
        "//kvwiicjgWAj2G0Bd72ralF\n",
        "-----END CERTIFICATE-----\n",
    );

    /// Self-signed by openssl, without subject alternative names.
    const WITHOUT_SANS: &str = concat!(
        "-----BEGIN CERTIFICATE-----\n",
        "MIIBdTCCARugAwIBAgIUdSWO7YWH2MKMFyXK8t2wSEsAGjkwCgYIKoZIzj0EAwIw\n",
        "DzENMAsGA1UEAwwEbm9uZTAgFw0yNjEyMDExNTM3NDJaGA8yMTI2MTEwNzE1Mzc0\n",
        "MlowDzENMAsGA1UEAwwEbm9uZTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABAqO\n",
        "E2VBOrzM8vGWX1Dk4snNa9Yr8Q1tj+oxvf8BbTwIRbY7ftys+mIEarwtX2NhgnXO\n",
        "eh41ev5C/VjRujYa3hyjUzBRMB0GA1UdDgQWBBRaitRrOgfl8KZ6pcCLZKINJb3T\n",
        "4DAfBgNVHSMEGDAWgBRaitRrOgfl8KZ6pcCLZKINJb3T4DAPBgNVHRMBAf8EBTAD\n",
        "AQH/MAoGCCqGSM49BAMCA0gAMEUCIDDQjFWs//uUVdB+t7xvfOZgpCIAX2GPAhVM\n",
        "wkfYr5RqAiEAiufKgpD2b60B95J8b8QJTvnue12QGapgyF7fou5CBOo=\n",
        "-----END CERTIFICATE-----\n",
    );

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn names_are_written_as_go_writes_them() {
        assert_eq!(
            names(&der(WITH_SANS)).unwrap(),
            [
                "prometheus.test",
                "ops@example.org",
                "10.0.0.1",
                "10.0.0.2",
                "2001:db8::1",
                "spiffe://example.org/prometheus",
            ]
        );
        assert_eq!(names(&der(WITHOUT_SANS)).unwrap(), Vec::<String>::new());
        assert_eq!(names(b"not a certificate"), None);
    }

    #[test]
    fn one_allowed_name_is_enough_and_names_compare_exactly() {
        let cert = der(WITH_SANS);
        let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        for name in [
            "prometheus.test",
            "ops@example.org",
            "2001:db8::1",
            "10.0.0.2",
        ] {
            assert!(allowed(&cert, &list(&["other.test", name])), "{name}");
        }
        for refused in [
            &["Prometheus.test"][..],
            &["*.test"],
            &["2001:DB8::1"],
            &["::ffff:10.0.0.2"],
            &["spiffe://example.org"],
            &[],
        ] {
            assert!(!allowed(&cert, &list(refused)), "{refused:?}");
        }
        assert!(!allowed(&der(WITHOUT_SANS), &list(&["sans"])));
        assert!(!allowed(b"not a certificate", &list(&["prometheus.test"])));
    }
}
