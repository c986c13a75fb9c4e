//! The validating admission webhook for DataSource, Pipeline, AccessPolicy, StorageTier and
//! Platform: the policy engine of the controllers and `medplat check`, at `kubectl apply` time.
//!
//! - [`review`]: the decision, a pure function of the request, a [`catalog::Catalog`] of the
//!   other objects and the time;
//! - [`pipeline`], [`references`], [`impact`]: what is judged per kind;
//! - [`config`]: the ValidatingWebhookConfiguration, rendered for packaging and tests;
//! - [`tls`], [`certs`]: the serving certificate, from a Secret or generated, and `caBundle`;
//! - [`server`]: HTTPS with rustls.
//!
//! The webhook is fast feedback, not the enforcement: the Pipeline controller runs nothing
//! that is not compliant whether or not the webhook saw the write (`failurePolicy: Ignore`).

pub mod catalog;
pub mod certs;
pub mod cli;
pub mod config;
pub mod findings;
pub mod impact;
pub mod pipeline;
pub mod references;
pub mod review;
pub mod server;
pub mod tls;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;
use kube::Client;

use crate::controller::context::ParentStores;
pub use catalog::Catalog;
pub use certs::CertSource;
pub use config::{
    FailurePolicy, WebhookConfigOptions, WebhookTarget, validating_webhook_configuration,
};
pub use review::{review, review_body};
pub use tls::ServingIdentity;

/// Errors starting the webhook.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The certificate could not be obtained.
    #[error("webhook certificate: {0}")]
    Cert(#[from] certs::CertError),
    /// The certificate could not be served.
    #[error("webhook TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The port could not be bound.
    #[error("cannot listen on {addr} for the webhook: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How to run the webhook.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Where to listen (`--webhook-addr`).
    pub addr: SocketAddr,
    /// Where the certificate comes from and which configuration gets its CA.
    pub cert: CertSource,
}

/// A started webhook.
#[derive(Debug)]
pub struct Webhook {
    /// The address it listens on (the real port when `addr` asked for port 0).
    pub local_addr: SocketAddr,
    /// The CA that signs its certificate, when known: what `caBundle` must hold.
    pub ca_pem: Option<String>,
}

/// Starts the webhook on every replica: obtains the certificate, binds the port, and returns
/// with the future that serves until `shutdown` (and keeps the certificate current). Decisions
/// read `stores`, the caches the controllers share.
pub async fn start(
    client: Client,
    stores: ParentStores,
    options: WebhookOptions,
    shutdown: impl Future<Output = ()> + Clone + Send + 'static,
) -> Result<(Webhook, impl Future<Output = ()> + Send + 'static), WebhookError> {
    let bundle = certs::load_or_create(&client, &options.cert, Timestamp::now()).await?;
    let served = tls::ReloadingCert::new(&bundle)?;
    let tls_config = tls::server_config(served.clone())?;
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|source| WebhookError::Listen {
            addr: options.addr,
            source,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| WebhookError::Listen {
            addr: options.addr,
            source,
        })?;
    let ready = Arc::new(AtomicBool::new(false));
    {
        let ready = ready.clone();
        let stores = stores.clone();
        tokio::spawn(async move {
            catalog::caches_synced(&stores).await;
            ready.store(true, Ordering::Relaxed);
        });
    }
    let router = server::router(server::WebhookState {
        catalog: Arc::new(stores),
        ready,
    });
    tracing::info!(addr = %local_addr, secret = %format!("{}/{}", options.cert.namespace, options.cert.secret), "admission webhook listening");
    let webhook = Webhook {
        local_addr,
        ca_pem: bundle.ca_pem.clone(),
    };
    let run = {
        let maintain = certs::maintain(client, options.cert, served, bundle, shutdown.clone());
        let serve = server::serve(listener, tls_config, router, shutdown);
        async move {
            futures::join!(serve, maintain);
        }
    };
    Ok((webhook, run))
}
