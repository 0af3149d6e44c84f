//! Reading the configuration file again while running, as biboumi does on
//! SIGUSR1 and SIGUSR2 (its systemd unit's `ExecReload` sends SIGUSR1, so
//! an admin's `systemctl reload` must not end the gateway), on SIGHUP, and
//! on an admin's `reload` command on a gateway's JID.
//!
//! What a running gateway can take is applied at once: who may use it and
//! who administers it, `persistent_by_default`, and its network's options
//! where the network takes them (IRC: for every connection opened from now
//! on). Everything else is named in the report as waiting for a restart.
//! A file that does not read or check leaves everything as it was.

use std::path::Path;
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::access::AccessList;
use crate::config::{Config, GatewayConfig};
use crate::gateway::Gateway;

/// What a reload changed, and what waits for a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub applied: Vec<String>,
    pub waiting: Vec<String>,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.applied.is_empty(), self.waiting.is_empty()) {
            (true, true) => write!(f, "nothing changed"),
            (false, true) => write!(f, "applied: {}", self.applied.join(", ")),
            (true, false) => write!(
                f,
                "changes at the next restart: {}",
                self.waiting.join(", ")
            ),
            (false, false) => write!(
                f,
                "applied: {}; changes at the next restart: {}",
                self.applied.join(", "),
                self.waiting.join(", ")
            ),
        }
    }
}

/// The answer to one request: the report, or why the file was not taken.
pub type ReloadResult = Result<ReloadReport, String>;

/// Where reloads are asked for: each gateway (its admins' command) and
/// the signals hold one.
pub type ReloadRequests = mpsc::UnboundedSender<oneshot::Sender<ReloadResult>>;

/// Ask for a reload and wait for its outcome.
pub async fn request(requests: &ReloadRequests) -> ReloadResult {
    let (reply, answer) = oneshot::channel();
    requests
        .send(reply)
        .map_err(|_| "the gateway is shutting down".to_owned())?;
    answer
        .await
        .map_err(|_| "the gateway is shutting down".to_owned())?
}

/// Serve reload requests until every requester is gone: read the file
/// the running configuration came from, check it, and apply it. The
/// gateways are held weakly: each holds a requester, and a gateway must
/// go when its link does.
pub async fn serve(
    mut running: Config,
    known_kinds: Vec<String>,
    gateways: Vec<Weak<Gateway>>,
    mut requests: mpsc::UnboundedReceiver<oneshot::Sender<ReloadResult>>,
) {
    while let Some(reply) = requests.recv().await {
        let result = match running.source.clone() {
            None => Err("this gateway was started without a configuration file".to_owned()),
            Some(path) => read(&path, &known_kinds).map(|new| {
                let live: Vec<_> = gateways.iter().filter_map(Weak::upgrade).collect();
                apply(&mut running, new, &live)
            }),
        };
        match &result {
            Ok(report) => info!(%report, "configuration reloaded"),
            Err(e) => error!("configuration not reloaded: {e}"),
        }
        let _ = reply.send(result);
    }
}

fn read(path: &Path, known_kinds: &[String]) -> Result<Config, String> {
    let kinds: Vec<&str> = known_kinds.iter().map(String::as_str).collect();
    // On one line: the log and an ad-hoc note each want one.
    Config::load(path, &kinds).map_err(|e| {
        let text = e.to_string();
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines.next().unwrap_or_default().to_owned();
        let rest: Vec<&str> = lines.collect();
        if rest.is_empty() {
            first
        } else {
            format!("{first} {}", rest.join("; "))
        }
    })
}

/// Apply what the running gateways can take of `new`, and note the rest;
/// `running` becomes what now runs.
fn apply(running: &mut Config, new: Config, gateways: &[Arc<Gateway>]) -> ReloadReport {
    let mut report = ReloadReport::default();
    for (section, changed) in [
        ("[component]", running.component != new.component),
        ("[store]", running.store != new.store),
        ("[runtime]", running.runtime != new.runtime),
    ] {
        if changed {
            report.waiting.push(section.to_owned());
        }
    }
    for now in &mut running.gateways {
        match new.gateways.iter().find(|g| g.domain == now.domain) {
            Some(wanted) => reconfigure(now, wanted, gateways, &mut report),
            None => report
                .waiting
                .push(format!("gateway {} removed", now.domain)),
        }
    }
    for added in &new.gateways {
        if !running.gateways.iter().any(|g| g.domain == added.domain) {
            report
                .waiting
                .push(format!("gateway {} added", added.domain));
        }
    }
    report
}

/// One running gateway's part of a reload; `now` follows what is applied.
fn reconfigure(
    now: &mut GatewayConfig,
    wanted: &GatewayConfig,
    gateways: &[Arc<Gateway>],
    report: &mut ReloadReport,
) {
    let domain = &now.domain;
    let Some(gw) = gateways.iter().find(|g| &g.domain == domain) else {
        return;
    };
    for (field, changed) in [
        ("secret", now.secret != wanted.secret),
        ("kind", now.kind != wanted.kind),
        ("server", now.server != wanted.server),
        ("host_domain", now.host_domain != wanted.host_domain),
    ] {
        if changed {
            report.waiting.push(format!("gateway {domain}: {field}"));
        }
    }
    // The allow-list's default is the host domain the link runs with.
    let effective = GatewayConfig {
        host_domain: now.host_domain.clone(),
        ..wanted.clone()
    };
    let access = AccessList::new(&effective.allowed_entries(), &wanted.admins);
    let (access_changed, persistence_changed) =
        gw.reconfigure(access, wanted.persistent_by_default);
    if access_changed {
        report
            .applied
            .push(format!("gateway {domain}: allowed and admins"));
    }
    if persistence_changed {
        report
            .applied
            .push(format!("gateway {domain}: persistent_by_default"));
    }
    now.allowed.clone_from(&wanted.allowed);
    now.admins.clone_from(&wanted.admins);
    now.persistent_by_default = wanted.persistent_by_default;
    if now.options != wanted.options {
        match gw.network.reload(&wanted.options) {
            Ok(waiting) => {
                report.applied.push(format!("gateway {domain}: options"));
                report.waiting.extend(
                    waiting
                        .iter()
                        .map(|o| format!("gateway {domain}: options.{o}")),
                );
                now.options.clone_from(&wanted.options);
            }
            Err(e) => {
                warn!(gateway = %domain, "new options not taken: {e}");
                report
                    .waiting
                    .push(format!("gateway {domain}: options ({e})"));
            }
        }
    }
}

/// Reload on SIGHUP, SIGUSR1 and SIGUSR2, which would otherwise end the
/// process.
pub fn on_signals(requests: ReloadRequests) {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ];
    for (kind, name) in kinds {
        let mut stream = match signal(kind) {
            Ok(s) => s,
            Err(e) => {
                error!("cannot listen for {name}: {e}");
                continue;
            }
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                info!("{name} received; reloading the configuration");
                // The outcome is logged where it is served.
                let _ = request(&requests).await;
            }
        });
    }
}
