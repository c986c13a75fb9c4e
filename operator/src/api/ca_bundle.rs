//! PEM bundles of private certificate authorities, trusted for one connection besides the
//! public roots: a tier's `caBundle`, a connector's `ca.crt`.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The certificates of the PEM bundle `what` (named in errors, e.g. `caBundle`), each checked
/// to be one rustls can trust as a root. A bundle holding a private key is refused, so it is
/// never used or copied further.
pub fn ca_certificates(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if pem.contains("PRIVATE KEY") {
        return Err(format!(
            "{what} holds a private key: it must hold certificates only"
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    let mut certs = Vec::new();
    for (i, cert) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let bad = |e: String| format!("{what} certificate {}: {e}", i + 1);
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert.clone()).map_err(|e| bad(e.to_string()))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(format!("{what} holds no PEM certificate"));
    }
    Ok(certs)
}

/// `builder`, trusting the certificates of the bundle `what` as well as its own roots.
pub fn trusting(
    mut builder: reqwest::ClientBuilder,
    pem: &str,
    what: &str,
) -> Result<reqwest::ClientBuilder, String> {
    for cert in ca_certificates(pem, what)? {
        let cert = reqwest::Certificate::from_der(&cert).map_err(|e| format!("{what}: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_checked_certificate_by_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let good = ca.pem();
        let two = format!("{good}{good}");
        assert_eq!(ca_certificates(&two, "caBundle").unwrap().len(), 2);
        assert_eq!(
            ca_certificates(&good, "caBundle").unwrap()[0].as_ref(),
            ca.der().as_ref()
        );

        let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        let err = ca_certificates(&format!("{good}{garbage}"), "ca.crt").unwrap_err();
        assert!(err.starts_with("ca.crt certificate 2: "), "{err}");
        assert_eq!(
            ca_certificates("no PEM here", "caBundle").unwrap_err(),
            "caBundle holds no PEM certificate"
        );
        let with_key = format!("{good}{}", key.serialize_pem());
        assert!(
            ca_certificates(&with_key, "caBundle")
                .unwrap_err()
                .contains("private key")
        );
    }
}
