//! Which bridge serves a gateway of a given `kind`.

use std::collections::BTreeMap;
use std::sync::Arc;

use estuary_bridge::Network;

/// Builds a network from a gateway's `options` table.
pub type NetworkFactory =
    Box<dyn Fn(&serde_json::Value) -> anyhow::Result<Arc<dyn Network>> + Send + Sync>;

/// The bridges this process can run, by `kind`.
pub struct Networks(BTreeMap<String, NetworkFactory>);

impl Networks {
    /// No bridge at all; tests start from here and add their own.
    pub fn empty() -> Networks {
        Networks(BTreeMap::new())
    }

    /// The bridges shipped with Estuary.
    pub fn builtin() -> Networks {
        Networks::empty()
            .with("irc", |options| {
                let network = estuary_irc::IrcNetwork::from_options(options)
                    .map_err(|e| anyhow::anyhow!(e))?;
                Ok(Arc::new(network))
            })
            .with("matrix", |options| {
                let network = estuary_matrix::MatrixNetwork::from_options(options)
                    .map_err(|e| anyhow::anyhow!(e))?;
                Ok(Arc::new(network))
            })
            .with("discord", |options| {
                let network = estuary_discord::DiscordNetwork::from_options(options)
                    .map_err(|e| anyhow::anyhow!(e))?;
                Ok(Arc::new(network))
            })
    }

    pub fn with(
        mut self,
        kind: &str,
        factory: impl Fn(&serde_json::Value) -> anyhow::Result<Arc<dyn Network>> + Send + Sync + 'static,
    ) -> Networks {
        self.0.insert(kind.to_owned(), Box::new(factory));
        self
    }

    pub fn kinds(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }

    pub fn build(
        &self,
        kind: &str,
        options: &serde_json::Value,
    ) -> anyhow::Result<Arc<dyn Network>> {
        let factory = self
            .0
            .get(kind)
            .ok_or_else(|| anyhow::anyhow!("unknown bridge kind '{kind}'"))?;
        factory(options)
    }
}
