//! The whole process: one store, and one link plus router per `[[gateway]]`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, info_span, warn, Instrument};

use crate::access::AccessList;
use crate::component::{self, LinkConfig, LinkStats};
use crate::config::{ComponentConfig, Config, GatewayConfig};
use crate::gateway::Gateway;
use crate::networks::Networks;
use crate::reload::{self, ReloadRequests};
use crate::router::Router;
use crate::store::Store;

/// A running Estuary, for `main` and for tests.
pub struct Running {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    /// Link counters per gateway domain.
    pub links: Vec<(String, Arc<LinkStats>)>,
    pub store: Store,
    /// Where a reload of the configuration file is asked for (the signals).
    pub reloads: ReloadRequests,
}

impl Running {
    /// Shut down cleanly and wait for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await?
    }

    /// Run until `stop` completes (then shut down cleanly), or until every
    /// gateway has failed.
    pub async fn run_until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            result = &mut self.task => result?,
            _ = stop => {
                let _ = self.shutdown.send(true);
                self.task.await?
            }
        }
    }

    pub fn link(&self, domain: &str) -> Option<Arc<LinkStats>> {
        self.links
            .iter()
            .find(|(d, _)| d == domain)
            .map(|(_, s)| s.clone())
    }
}

/// Open the store and start every gateway.
pub async fn start(config: Config, networks: &Networks) -> anyhow::Result<Running> {
    let url = config.store.effective_url();
    let store = Store::open(&url)
        .await
        .with_context(|| format!("cannot open the store at {}", redact_url(&url)))?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (reloads, reload_requests) = mpsc::unbounded_channel();
    let mut gateways = Vec::new();
    let mut links = Vec::new();
    let mut running_gateways = Vec::new();
    for gw_config in &config.gateways {
        let network = networks
            .build(&gw_config.kind, &gw_config.options)
            .with_context(|| {
                format!(
                    "cannot start the {} bridge of {}",
                    gw_config.kind, gw_config.domain
                )
            })?;
        let (stats_tx, stats_rx) = tokio::sync::oneshot::channel();
        let span = info_span!("gateway", gateway = %gw_config.domain);
        let task = tokio::spawn(
            serve_gateway(
                gw_config.clone(),
                config.component.clone(),
                network,
                store.clone(),
                shutdown_rx.clone(),
                stats_tx,
                reloads.clone(),
            )
            .instrument(span),
        );
        if let Ok((stats, gateway)) = stats_rx.await {
            links.push((gw_config.domain.clone(), stats));
            running_gateways.push(gateway);
        }
        gateways.push((gw_config.domain.clone(), task));
    }
    let known_kinds = networks.kinds().into_iter().map(str::to_owned).collect();
    tokio::spawn(reload::serve(
        config.clone(),
        known_kinds,
        running_gateways,
        reload_requests,
    ));
    let store_for_task = store.clone();
    let task = tokio::spawn(async move {
        let mut failed = 0;
        let total = gateways.len();
        for (domain, task) in gateways {
            match task.await {
                Ok(Ok(())) => info!(gateway = %domain, "gateway stopped"),
                Ok(Err(e)) => {
                    failed += 1;
                    error!(gateway = %domain, "gateway failed: {e:#}");
                }
                Err(e) => {
                    failed += 1;
                    error!(gateway = %domain, "gateway task panicked: {e}");
                }
            }
        }
        if let Err(e) = store_for_task.flush().await {
            warn!("flushing the store failed: {e}");
        }
        store_for_task.close().await;
        if failed > 0 && failed == total {
            anyhow::bail!("every gateway failed");
        }
        Ok(())
    });
    Ok(Running {
        shutdown,
        task,
        links,
        store,
        reloads,
    })
}

fn link_config(gw: &GatewayConfig, component: &ComponentConfig) -> LinkConfig {
    LinkConfig {
        domain: gw.domain.clone(),
        secret: gw.secret.clone(),
        server: gw
            .server
            .clone()
            .unwrap_or_else(|| component.server.clone()),
        host_domain: gw.host_domain(),
        keepalive: component.keepalive(),
        response_timeout: component.response_timeout(),
        max_attempts: component.max_attempts,
        backoff_initial: Duration::from_millis(component.backoff_initial_ms.max(1)),
        backoff_max: Duration::from_millis(component.backoff_max_ms.max(1)),
    }
}

/// Run one gateway until shutdown, or until its link gives up.
async fn serve_gateway(
    gw_config: GatewayConfig,
    component: ComponentConfig,
    network: Arc<dyn estuary_bridge::Network>,
    store: Store,
    mut shutdown: watch::Receiver<bool>,
    started: tokio::sync::oneshot::Sender<(Arc<LinkStats>, Weak<Gateway>)>,
    reloads: ReloadRequests,
) -> anyhow::Result<()> {
    let (abort_tx, abort_rx) = watch::channel(false);
    let mut link = component::spawn(link_config(&gw_config, &component), abort_rx);
    let access = AccessList::new(&gw_config.allowed_entries(), &gw_config.admins);
    let gateway = Arc::new(Gateway::new(
        &gw_config.domain,
        network,
        store,
        access,
        gw_config.persistent_by_default,
        link.outbound.clone(),
        reloads,
    )?);
    let _ = started.send((link.stats.clone(), Arc::downgrade(&gateway)));
    // From here on the gateway holds the only sender: when the router and the
    // user tasks drop theirs, the link drains its queue and closes.
    let outbound = std::mem::replace(&mut link.outbound, mpsc::unbounded_channel().0);
    drop(outbound);
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let archiver = gateway.archiver.clone();
    let mut router = Router::new(gateway, notes_tx);
    let mut link_task = link.task;
    let mut link_result = None;
    loop {
        tokio::select! {
            // In this order, not at random among what is ready: shutdown,
            // then notes, since a registration's note is sent before its
            // answer and must be handled before any stanza that answer
            // prompts; then the link's events, all of them before its end.
            biased;
            _ = shutdown.changed() => break,
            Some(note) = notes.recv() => router.on_note(note).await,
            event = link.events.recv() => match event {
                Some(event) => router.on_link(event).await,
                None => break,
            },
            result = &mut link_task => {
                link_result = Some(result);
                break;
            }
        }
    }
    router.shutdown().await;
    drop(router);
    drop(notes);
    // The sessions are gone: write the archive's last batch before the store closes.
    if let Err(e) = archiver.close().await {
        warn!("the room archive's last messages were not written: {e}");
    }
    let result = match link_result {
        Some(result) => result,
        None => match tokio::time::timeout(Duration::from_secs(10), &mut link_task).await {
            Ok(result) => result,
            Err(_) => {
                warn!("the server did not take the last stanzas in time; closing anyway");
                let _ = abort_tx.send(true);
                link_task.await
            }
        },
    };
    result?.map_err(anyhow::Error::from)
}

/// A database URL without its password, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            super::redact_url("postgres://me:secret@db/estuary"),
            "postgres://me:***@db/estuary"
        );
        assert_eq!(
            super::redact_url("sqlite://data/x.sqlite"),
            "sqlite://data/x.sqlite"
        );
    }
}
