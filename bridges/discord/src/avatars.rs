//! XMPP users' avatars, served over HTTP for Discord: a webhook post names
//! its avatar by URL, which Discord fetches. Each image is served under the
//! hash of its bytes, so a link names one picture and cannot be guessed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use estuary_bridge::Avatar;
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::error::DiscordError;

pub struct AvatarServer {
    base_url: String,
    /// Hash → the avatar; one per user at most, as each login replaces theirs.
    images: Mutex<HashMap<String, Arc<Avatar>>>,
    /// Account → the hash of its avatar.
    owners: Mutex<HashMap<String, String>>,
}

impl AvatarServer {
    /// Listen on `listen` (inside a tokio runtime) and hand out URLs under `base_url`.
    pub fn start(listen: SocketAddr, base_url: &str) -> Result<Arc<AvatarServer>, DiscordError> {
        let cannot = |e: std::io::Error| {
            DiscordError::Options(format!("the avatar server cannot listen on {listen}: {e}"))
        };
        let listener = std::net::TcpListener::bind(listen).map_err(cannot)?;
        listener.set_nonblocking(true).map_err(cannot)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(cannot)?;
        let server = Arc::new(AvatarServer {
            base_url: base_url.trim_end_matches('/').to_owned(),
            images: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
        });
        let app = axum::Router::new()
            .route("/avatar/{hash}", axum::routing::get(serve))
            .with_state(server.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!(error = %e, "the avatar server stopped");
            }
        });
        Ok(server)
    }

    /// Serve `account`'s avatar, in place of their previous one.
    pub fn publish(&self, account: &str, avatar: Avatar) {
        let hash: String = Sha256::digest(&avatar.bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut images = self.images.lock().expect("not poisoned");
        let previous = self
            .owners
            .lock()
            .expect("not poisoned")
            .insert(account.to_owned(), hash.clone());
        if let Some(previous) = previous.filter(|p| *p != hash) {
            images.remove(&previous);
        }
        images.insert(hash, Arc::new(avatar));
    }

    /// The URL of `account`'s avatar, if they have one.
    pub fn url_of(&self, account: &str) -> Option<String> {
        let owners = self.owners.lock().expect("not poisoned");
        let hash = owners.get(account)?;
        Some(format!("{}/avatar/{hash}", self.base_url))
    }
}

async fn serve(State(server): State<Arc<AvatarServer>>, Path(hash): Path<String>) -> Response {
    let found = server
        .images
        .lock()
        .expect("not poisoned")
        .get(&hash)
        .cloned();
    match found {
        Some(avatar) => (
            [(header::CONTENT_TYPE, avatar.content_type.clone())],
            avatar.bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
