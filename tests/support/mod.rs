//! What the gateway tests share: the loopback bridge and a fixture that runs
//! a real Prosody with Estuary attached to it, in this process.
#![allow(dead_code)]

pub mod loopback;

use std::sync::Arc;
use std::time::Duration;

use estuary::app::{self, Running};
use estuary::config::{ComponentConfig, Config, GatewayConfig, StoreConfig};
use estuary::networks::Networks;
use tempfile::TempDir;

use crate::world::{attr, el, Element, Prosody, XmppClient};
use loopback::{LoopbackNetwork, Shared};

pub const GW: &str = "gw.localhost";
pub const SECRET: &str = "component-secret";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Fixture {
    pub prosody: Prosody,
    pub net: Arc<LoopbackNetwork>,
    pub estuary: Option<Running>,
    pub config: Config,
    pub dir: TempDir,
}

impl Fixture {
    /// Prosody plus Estuary with the loopback bridge and an SQLite store.
    pub async fn start() -> Fixture {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Fixture {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("ESTUARY_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let prosody = Prosody::start(&[(GW, SECRET)]);
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            component: ComponentConfig {
                server: prosody.component_addr(),
                keepalive_secs: 5,
                response_timeout_secs: 5,
                max_attempts: 0,
                backoff_initial_ms: 100,
                backoff_max_ms: 1000,
            },
            store: StoreConfig {
                url: String::new(),
                data_dir: dir.path().to_owned(),
            },
            runtime: Default::default(),
            source: None,
            gateways: vec![GatewayConfig {
                domain: GW.to_owned(),
                secret: SECRET.to_owned(),
                kind: "loopback".to_owned(),
                server: None,
                host_domain: None,
                allowed: vec![],
                admins: vec![],
                persistent_by_default: false,
                options: serde_json::Value::Null,
            }],
        };
        tweak(&mut config);
        let net = LoopbackNetwork::new();
        let mut fixture = Fixture {
            prosody,
            net,
            estuary: None,
            config,
            dir,
        };
        fixture.start_estuary().await;
        fixture
    }

    /// (Re)start Estuary with the fixture's configuration and wait for its link.
    pub async fn start_estuary(&mut self) {
        let net = self.net.clone();
        let networks =
            Networks::empty().with("loopback", move |_| Ok(Arc::new(Shared(net.clone()))));
        let running = app::start(self.config.clone(), &networks)
            .await
            .expect("estuary starts");
        crate::world::wait_for_link(&running, GW).await;
        self.estuary = Some(running);
    }

    pub async fn stop_estuary(&mut self) {
        if let Some(running) = self.estuary.take() {
            running.stop().await.expect("clean shutdown");
        }
    }

    /// A connected user of the host server, with initial presence sent.
    pub async fn user(&self, name: &str) -> XmppClient {
        self.prosody.add_user(name, "pw");
        self.connect(name, "res").await
    }

    pub async fn connect(&self, name: &str, resource: &str) -> XmppClient {
        let mut client =
            XmppClient::connect(self.prosody.c2s_port(), name, "localhost", "pw", resource).await;
        client.send(el("<presence/>")).await;
        client
    }

    /// A user registered with the gateway and logged in to the loopback network.
    pub async fn registered(&self, name: &str) -> XmppClient {
        let mut client = self.user(name).await;
        let reply = register(&mut client, name, "pw").await;
        assert_eq!(attr(&reply, "type"), "result", "{}", String::from(&reply));
        client
            .expect(WAIT, |s| {
                s.name() == "presence" && attr(s, "from") == GW && attr(s, "type") == "subscribe"
            })
            .await;
        client
            .send(el(&format!("<presence to='{GW}' type='subscribed'/>")))
            .await;
        client
            .expect(WAIT, |s| {
                s.name() == "presence" && attr(s, "from") == GW && attr(s, "type").is_empty()
            })
            .await;
        client
    }
}

/// Register through XEP-0077 with a data form; returns the iq reply.
pub async fn register(client: &mut XmppClient, user: &str, password: &str) -> Element {
    client
        .submit_registration(
            GW,
            &[
                ("FORM_TYPE", "jabber:iq:register"),
                ("user", user),
                ("password", password),
            ],
        )
        .await
}

/// The defined condition of an error stanza, e.g. "item-not-found".
pub fn condition(stanza: &Element) -> String {
    stanza
        .get_child("error", "jabber:client")
        .and_then(|e| {
            e.children()
                .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
        })
        .map(|c| c.name().to_owned())
        .unwrap_or_default()
}
