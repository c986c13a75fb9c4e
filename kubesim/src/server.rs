//! The listener: plain HTTP or HTTPS (rustls, ring), HTTP/1.1 and HTTP/2, and connection
//! tracking so that a simulated restart drops every connection while keeping all state.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{Shared, handle};

/// Why the server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Certificate generation failed.
    #[error("generating the self-signed certificates failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("configuring TLS failed: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding or socket errors.
    #[error("binding {addr} failed: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A CA and a server certificate for 127.0.0.1/localhost, in PEM.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The CA certificate clients trust.
    pub ca_pem: String,
    /// The server certificate chain.
    pub cert_pem: String,
    /// The server key.
    pub key_pem: String,
}

/// Generates a throwaway CA and a server certificate for loopback names.
pub fn self_signed() -> Result<TlsMaterial, ServerError> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubesim-ca");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubesim");
    let cert = params.signed_by(&key, &ca)?;
    Ok(TlsMaterial {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A rustls server configuration (ring provider, ALPN h2 and http/1.1).
pub fn server_config(m: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(m.cert_pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes())
        .map_err(|e| rustls::Error::General(format!("server key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts connections until `shutdown` flips; `restart` drops every open connection.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        let mut restart = shared.restart.subscribe();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc_shared = shared.clone();
            let svc = service_fn(move |req| handle(svc_shared.clone(), req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match acceptor {
                Some(acc) => {
                    let tls_stream = tokio::select! {
                        s = acc.accept(stream) => match s { Ok(s) => s, Err(_) => return },
                        _ = restart.changed() => return,
                        _ = conn_shutdown.changed() => return,
                    };
                    let conn = builder.serve_connection(TokioIo::new(tls_stream), svc);
                    tokio::select! {
                        _ = conn => {},
                        _ = restart.changed() => {},
                        _ = conn_shutdown.changed() => {},
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {},
                        _ = restart.changed() => {},
                        _ = conn_shutdown.changed() => {},
                    }
                }
            }
        });
    }
}
