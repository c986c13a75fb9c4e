//! The webhook's options of `medplat run`, flattened into its arguments.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use clap::Args;

use super::WebhookOptions;
use super::certs::CertSource;
use super::tls::ServingIdentity;

/// A listen address, or none: `--webhook-addr ''` turns the webhook off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl FromStr for OptionalAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Ok(OptionalAddr(None));
        }
        s.parse()
            .map(|a| OptionalAddr(Some(a)))
            .map_err(|e| format!("{s:?} is not an address like 0.0.0.0:9443: {e}"))
    }
}

/// Options of the admission webhook.
#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Where the admission webhook listens (HTTPS); '' turns it off.
    #[arg(long, default_value = "0.0.0.0:9443", env = "MEDPLAT_WEBHOOK_ADDR")]
    pub webhook_addr: OptionalAddr,
    /// Do not run the admission webhook.
    #[arg(long)]
    pub no_webhook: bool,
    /// The Secret (tls.crt, tls.key, ca.crt) holding the webhook's certificate, in
    /// --operator-namespace; created with a generated certificate when missing.
    #[arg(long, default_value = "medplat-webhook-tls")]
    pub webhook_cert_secret: String,
    /// The ValidatingWebhookConfiguration whose caBundle the operator keeps in step with the
    /// certificate; '' leaves caBundle alone (e.g. to cert-manager's CA injector).
    #[arg(long, default_value = "medplat")]
    pub webhook_config_name: String,
    /// The Service in front of the webhook: a generated certificate is valid for
    /// <service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local.
    #[arg(long, default_value = "medplat-webhook")]
    pub webhook_service: String,
    /// Extra names (DNS or IP) a generated certificate is valid for; repeatable.
    #[arg(long = "webhook-extra-san")]
    pub webhook_extra_sans: Vec<String>,
}

impl WebhookArgs {
    /// The webhook's options, with its Secret in `operator_namespace` (`--operator-namespace`),
    /// or `None` when it is turned off.
    pub fn options(&self, operator_namespace: &str) -> Option<WebhookOptions> {
        let addr = self.webhook_addr.0.filter(|_| !self.no_webhook)?;
        let (ips, dns): (Vec<_>, Vec<_>) = self
            .webhook_extra_sans
            .iter()
            .partition(|s| s.parse::<IpAddr>().is_ok());
        Some(WebhookOptions {
            addr,
            cert: CertSource {
                namespace: operator_namespace.to_string(),
                secret: self.webhook_cert_secret.clone(),
                identity: ServingIdentity {
                    service: self.webhook_service.clone(),
                    namespace: operator_namespace.to_string(),
                    extra_dns: dns.into_iter().cloned().collect(),
                    extra_ips: ips.iter().filter_map(|s| s.parse().ok()).collect(),
                },
                config_name: Some(self.webhook_config_name.clone()).filter(|n| !n.is_empty()),
            },
        })
    }
}
