//! The Matrix bridge: each registered XMPP user logs in to their own Matrix
//! account (client-server API through `matrix-sdk`; no appservice).
//!
//! - Registration logs in once with the password (or checks an access
//!   token) and stores the resulting session: homeserver, user ID, device
//!   ID and access token. The password is never stored.
//! - Login restores that session, so a restart makes no new device, and
//!   resumes `/sync` from the token saved under `state_dir` (see `state`).
//! - Rooms joined from XMPP are MUCs; direct chats (`m.direct`) are contacts.
//!
//! End-to-end encrypted rooms are not supported: joining one is refused with
//! a clear error, and an encrypted message in a bridged chat is shown as a
//! notice saying it cannot be decrypted.

pub mod address;
pub mod error;
pub mod event;
pub mod media;
pub mod media_proxy;
pub mod rooms;
pub mod session;
pub mod state;
mod sync;
pub mod text;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use estuary_bridge::{
    AddressKind, BridgeError, Capabilities, Credentials, EventSender, FormValues, Network,
    NetworkInfo, RegistrationField, Session,
};
use matrix_sdk::authentication::matrix::MatrixSession as SdkSession;
use matrix_sdk::config::RequestConfig;
use matrix_sdk::ruma::api::client::account::whoami;
use matrix_sdk::ruma::{OwnedDeviceId, OwnedUserId};
use matrix_sdk::{Client, SessionMeta, SessionTokens};
use serde::Deserialize;
use tracing::{info, info_span, warn, Instrument};

use crate::error::{http_error, sdk_error, MatrixError};
use crate::session::{Inner, MatrixSession};
use crate::state::SyncTokenFile;

/// How long one ordinary request to the homeserver may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The device name other Matrix clients show for the gateway's session.
const DEVICE_NAME: &str = "Estuary XMPP gateway";

/// Keys of the stored credentials.
const HOMESERVER: &str = "homeserver";
/// The same key as the form field, so the form shows who is registered.
const USER_ID: &str = "user";
const DEVICE_ID: &str = "device_id";
const ACCESS_TOKEN: &str = "access_token";

/// `[gateway.options]` of a Matrix gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixOptions {
    /// Where each account's sync token is kept.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Largest file fetched from an XMPP link to be sent as Matrix media;
    /// larger ones go as a link.
    #[serde(default = "default_max_media_bytes")]
    pub max_media_bytes: u64,
    /// Also fetch links to loopback and private addresses. Off by default,
    /// so that users cannot make the gateway fetch what only it can reach.
    #[serde(default)]
    pub fetch_private_media: bool,
    /// Where the media proxy listens, e.g. `127.0.0.1:8470`; with
    /// `media_url`, files from Matrix reach XMPP clients as links to it.
    #[serde(default)]
    pub media_listen: Option<std::net::SocketAddr>,
    /// The public URL under which `media_listen` is reachable (behind the
    /// admin's reverse proxy), e.g. `https://matrix.example.org/media`.
    #[serde(default)]
    pub media_url: Option<String>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("data/matrix")
}

fn default_max_media_bytes() -> u64 {
    50 * 1024 * 1024
}

impl Default for MatrixOptions {
    fn default() -> Self {
        MatrixOptions {
            state_dir: default_state_dir(),
            max_media_bytes: default_max_media_bytes(),
            fetch_private_media: false,
            media_listen: None,
            media_url: None,
        }
    }
}

impl MatrixOptions {
    fn fetch_policy(&self) -> media::FetchPolicy {
        media::FetchPolicy {
            max_bytes: self.max_media_bytes,
            allow_private: self.fetch_private_media,
        }
    }
}

#[derive(Debug, Default)]
pub struct MatrixNetwork {
    options: MatrixOptions,
    /// Started with the first session, when configured.
    media_proxy: tokio::sync::OnceCell<Option<Arc<media_proxy::MediaProxy>>>,
}

impl MatrixNetwork {
    /// From the gateway's `[gateway.options]` table (may be empty).
    pub fn from_options(value: &serde_json::Value) -> Result<MatrixNetwork, String> {
        let options = if value.is_null() {
            MatrixOptions::default()
        } else {
            serde_json::from_value(value.clone())
                .map_err(|e| format!("invalid Matrix options: {e}"))?
        };
        if options.media_listen.is_some() != options.media_url.is_some() {
            return Err("invalid Matrix options: media_listen and media_url go together".into());
        }
        Ok(MatrixNetwork {
            options,
            media_proxy: Default::default(),
        })
    }

    /// The media proxy, started on first use; `None` when not configured or
    /// when it cannot start (logged: files from Matrix then arrive as text).
    async fn media_proxy(&self) -> Option<Arc<media_proxy::MediaProxy>> {
        let (Some(listen), Some(url)) = (self.options.media_listen, &self.options.media_url) else {
            return None;
        };
        self.media_proxy
            .get_or_init(|| async {
                let key_file = self.options.state_dir.join("media.key");
                match media_proxy::MediaProxy::start(
                    listen,
                    url,
                    &key_file,
                    self.options.max_media_bytes,
                )
                .await
                {
                    Ok(proxy) => {
                        info!(%listen, %url, "media proxy started");
                        Some(proxy)
                    }
                    Err(e) => {
                        tracing::error!("{e}; files from Matrix arrive as their names only");
                        None
                    }
                }
            })
            .await
            .clone()
    }
}

/// A client for `homeserver` that gives up quickly instead of retrying
/// forever: the core queues and retries sends itself.
async fn client_for(homeserver: &str) -> Result<Client, BridgeError> {
    let url = homeserver.trim();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(MatrixError::HomeserverUrl(url.to_owned()).into());
    }
    Client::builder()
        .homeserver_url(url)
        .request_config(RequestConfig::new().timeout(REQUEST_TIMEOUT).retry_limit(1))
        .build()
        .await
        .map_err(|e| BridgeError::BadRequest(format!("cannot use the homeserver {url}: {e}")))
}

/// A client holding an existing session.
async fn restored_client(
    homeserver: &str,
    user_id: OwnedUserId,
    device_id: OwnedDeviceId,
    access_token: String,
) -> Result<Client, BridgeError> {
    let client = client_for(homeserver).await?;
    client
        .restore_session(SdkSession {
            meta: SessionMeta { user_id, device_id },
            tokens: SessionTokens {
                access_token,
                refresh_token: None,
            },
        })
        .await
        .map_err(|e| sdk_error("restoring the Matrix session failed", &e))?;
    Ok(client)
}

/// Ask the homeserver who an access token belongs to.
async fn whoami(client: &Client) -> Result<(OwnedUserId, Option<OwnedDeviceId>), BridgeError> {
    let response = client
        .send(whoami::v3::Request::new())
        .await
        .map_err(|e| http_error("the homeserver refused the access token", &e))?;
    Ok((response.user_id, response.device_id))
}

#[async_trait]
impl Network for MatrixNetwork {
    fn info(&self) -> NetworkInfo {
        NetworkInfo {
            kind: "matrix",
            name: "Matrix gateway".to_owned(),
            instructions: "Enter your homeserver URL and Matrix user, and either your \
                           password or an access token. The password is used once to log \
                           in and is not stored."
                .to_owned(),
            capabilities: Capabilities {
                rooms: true,
                direct_messages: true,
                edits: true,
                retractions: true,
                reactions: true,
                replies: true,
                typing: true,
                read_markers: true,
                echoes_own_messages: true,
                moderation: true,
                server_info: false,
                room_ids_in_archive: false,
            },
        }
    }

    fn registration_fields(&self) -> Vec<RegistrationField> {
        vec![
            RegistrationField::text("homeserver", "Homeserver URL (https://matrix.org)", true),
            RegistrationField::text("user", "Matrix user (@alice:matrix.org)", true),
            RegistrationField::secret("password", "Password (used once, not stored)", false),
            RegistrationField::secret("token", "Or an access token instead of the password", false),
        ]
    }

    /// A Matrix user is known by their user ID, present or not (a ban).
    fn member_name(
        &self,
        _room: &estuary_bridge::RemoteAddress,
        user: &estuary_bridge::RemoteAddress,
    ) -> Option<String> {
        match address::MatrixAddress::parse(user).ok()? {
            address::MatrixAddress::User(id) => Some(id.to_string()),
            _ => None,
        }
    }

    /// `#alias%server` and `!opaque%server` are rooms; `user%server` is a user.
    /// Room IDs of room version 12 have no server part: `!opaque` alone.
    fn classify(&self, local: &str) -> Result<AddressKind, BridgeError> {
        if local.len() > 1 && local.starts_with('!') && !local.contains('%') {
            return Ok(AddressKind::Room);
        }
        match local.split_once('%') {
            Some((name, server)) if !name.is_empty() && !server.is_empty() => {
                if name.starts_with(['#', '!']) {
                    Ok(AddressKind::Room)
                } else {
                    Ok(AddressKind::User)
                }
            }
            _ => Err(BridgeError::BadRequest(format!(
                "'{local}' is not a Matrix address: expected name%server"
            ))),
        }
    }

    async fn register(&self, values: FormValues) -> Result<Credentials, BridgeError> {
        let field = |name: &str| values.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let homeserver = field("homeserver")
            .ok_or_else(|| BridgeError::BadRequest("the homeserver URL is required".into()))?;
        let user = field("user")
            .ok_or_else(|| BridgeError::BadRequest("the Matrix user is required".into()))?;
        let span = info_span!("matrix_register", %homeserver, %user);
        async {
            let (user_id, device_id, access_token) = match (field("password"), field("token")) {
                (Some(password), _) => {
                    let client = client_for(homeserver).await?;
                    let response = client
                        .matrix_auth()
                        .login_username(user, password)
                        .initial_device_display_name(DEVICE_NAME)
                        .send()
                        .await
                        .map_err(|e| match sdk_error("login failed", &e) {
                            // Synapse answers a wrong password with M_FORBIDDEN.
                            BridgeError::Forbidden(text) => BridgeError::Auth(text),
                            other => other,
                        })?;
                    (response.user_id, response.device_id, response.access_token)
                }
                (None, Some(token)) => {
                    let claimed = OwnedUserId::try_from(user).map_err(|_| {
                        BridgeError::BadRequest(format!(
                            "with an access token, give the full user ID (@name:server), not '{user}'"
                        ))
                    })?;
                    // The device is not known yet; whoami tells it.
                    let probe = restored_client(
                        homeserver,
                        claimed.clone(),
                        "UNKNOWN".into(),
                        token.to_owned(),
                    )
                    .await?;
                    let (user_id, device_id) = whoami(&probe).await.map_err(|e| match e {
                        BridgeError::Forbidden(t) | BridgeError::NotFound(t) => BridgeError::Auth(t),
                        other => other,
                    })?;
                    if user_id != claimed {
                        return Err(BridgeError::Auth(format!(
                            "the access token belongs to {user_id}, not {claimed}"
                        )));
                    }
                    let device_id = device_id.ok_or_else(|| {
                        BridgeError::Auth("the access token has no device".into())
                    })?;
                    (user_id, device_id, token.to_owned())
                }
                (None, None) => {
                    return Err(BridgeError::BadRequest(
                        "give either the password or an access token".into(),
                    ))
                }
            };
            info!(%user_id, %device_id, "Matrix login checked");
            let mut stored = std::collections::BTreeMap::new();
            stored.insert(HOMESERVER.to_owned(), homeserver.to_owned());
            stored.insert(USER_ID.to_owned(), user_id.to_string());
            stored.insert(DEVICE_ID.to_owned(), device_id.to_string());
            stored.insert(ACCESS_TOKEN.to_owned(), access_token);
            Ok(Credentials(stored))
        }
        .instrument(span)
        .await
    }

    /// Log the device out on the homeserver (its access token dies with it)
    /// and forget the sync token: an unregistered user leaves nothing behind.
    async fn unregister(&self, account: &str, credentials: Credentials) -> Result<(), BridgeError> {
        let token_file = SyncTokenFile::new(&self.options.state_dir, account);
        if let Err(e) = token_file.remove() {
            warn!("cannot remove the sync token file: {e}");
        }
        let (Some(homeserver), Some(user_id), Some(device_id), Some(access_token)) = (
            credentials.get(HOMESERVER),
            credentials
                .get(USER_ID)
                .and_then(|u| OwnedUserId::try_from(u).ok()),
            credentials.get(DEVICE_ID),
            credentials.get(ACCESS_TOKEN),
        ) else {
            return Ok(());
        };
        let client = restored_client(
            homeserver,
            user_id,
            device_id.into(),
            access_token.to_owned(),
        )
        .await?;
        client.logout().await.map_err(|e| {
            BridgeError::Unavailable(format!("logging the Matrix device out failed: {e}"))
        })
    }

    async fn login(
        &self,
        account: &str,
        credentials: Credentials,
        events: EventSender,
    ) -> Result<Box<dyn Session>, BridgeError> {
        let missing =
            || BridgeError::Auth("no Matrix session is stored; register again".to_owned());
        let homeserver = credentials.get(HOMESERVER).ok_or_else(missing)?;
        let user_id = credentials
            .get(USER_ID)
            .and_then(|u| OwnedUserId::try_from(u).ok())
            .ok_or_else(missing)?;
        let device_id: OwnedDeviceId = credentials.get(DEVICE_ID).ok_or_else(missing)?.into();
        let access_token = credentials
            .get(ACCESS_TOKEN)
            .ok_or_else(missing)?
            .to_owned();
        let span = info_span!("matrix_login", user = %user_id);
        async {
            let client =
                restored_client(homeserver, user_id.clone(), device_id, access_token).await?;
            let token_file = SyncTokenFile::new(&self.options.state_dir, account);
            let token = token_file.load().map_err(BridgeError::from)?;
            let media_proxy = self.media_proxy().await;
            let inner = Arc::new(Inner::new(
                client,
                user_id,
                events,
                token_file,
                self.options.fetch_policy(),
                media_proxy.clone(),
            ));
            if let Some(proxy) = &media_proxy {
                proxy.add_session(&inner);
            }
            // Direct chats are needed before the first message to a contact;
            // an unreachable homeserver is not fatal here: the sync task
            // reports it and retries, and sends wait in the core's outbox.
            match inner.direct_account_data().await {
                Ok(direct) => inner.book().set_direct(&direct),
                Err(e @ BridgeError::Auth(_)) => return Err(e),
                Err(e) => warn!(error = %e, "cannot read m.direct yet"),
            }
            let task = sync::spawn(inner.clone(), token);
            info!("Matrix session restored");
            Ok(Box::new(MatrixSession::new(inner, task)) as Box<dyn Session>)
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_addresses() {
        let matrix = MatrixNetwork::default();
        assert_eq!(matrix.classify("#room%matrix.org"), Ok(AddressKind::Room));
        assert_eq!(matrix.classify("!abc%matrix.org"), Ok(AddressKind::Room));
        assert_eq!(matrix.classify("alice%matrix.org"), Ok(AddressKind::User));
        assert!(matrix.classify("alice").is_err());
    }

    #[test]
    fn options() {
        let network =
            MatrixNetwork::from_options(&serde_json::json!({"state_dir": "/tmp/x"})).unwrap();
        assert_eq!(network.options.state_dir, PathBuf::from("/tmp/x"));
        assert!(MatrixNetwork::from_options(&serde_json::json!({"nope": 1})).is_err());
        assert!(MatrixNetwork::from_options(&serde_json::Value::Null).is_ok());
    }
}
