//! Files from Matrix for XMPP clients.
//!
//! Homeservers serve media to authenticated clients only, so an `mxc://`
//! URI cannot simply be rewritten into a link an XMPP client can open. The
//! gateway serves such links itself: `{media_url}/{signature}/{server}/{id}/
//! {name}`, where the signature is an HMAC of the media's address under a key
//! kept in `state_dir`, so that the gateway fetches only what it linked (and
//! links survive a restart). A request is fetched from the homeserver with
//! the access token of any user of this gateway who is logged in there.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::{debug, warn};

use crate::session::Inner;

type Signer = Hmac<Sha256>;

/// Bytes of the HMAC kept in a link (128 bits).
const SIGNATURE_BYTES: usize = 16;

/// The running proxy of one Matrix gateway.
pub struct MediaProxy {
    base_url: String,
    key: Vec<u8>,
    sessions: Mutex<Vec<Weak<Inner>>>,
    max_bytes: u64,
    /// One client for every request, so connections to the homeserver are reused.
    http: reqwest::Client,
}

impl std::fmt::Debug for MediaProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("MediaProxy")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl MediaProxy {
    /// Listen on `listen` and serve links under `base_url`; the key is read
    /// from (or first written to) `key_file`.
    pub async fn start(
        listen: SocketAddr,
        base_url: &str,
        key_file: &Path,
        max_bytes: u64,
    ) -> Result<Arc<MediaProxy>, String> {
        let key = load_or_create_key(key_file)?;
        let proxy = Arc::new(MediaProxy {
            base_url: base_url.trim_end_matches('/').to_owned(),
            key,
            sessions: Mutex::new(Vec::new()),
            max_bytes,
            http: reqwest::Client::new(),
        });
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("the media proxy cannot listen on {listen}: {e}"))?;
        let app = axum::Router::new()
            .route(
                "/{signature}/{server}/{id}/{name}",
                axum::routing::get(serve),
            )
            .with_state(proxy.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!(error = %e, "the media proxy stopped");
            }
        });
        Ok(proxy)
    }

    /// Let requests be fetched with this session's access token.
    pub(crate) fn add_session(&self, inner: &Arc<Inner>) {
        let mut sessions = lock(&self.sessions);
        sessions.retain(|s| s.strong_count() > 0);
        sessions.push(Arc::downgrade(inner));
    }

    /// The link an XMPP client can open for `mxc://server/id`.
    pub fn link(&self, mxc: &str, name: &str) -> Option<String> {
        let (server, id) = mxc.strip_prefix("mxc://")?.split_once('/')?;
        if !is_token(server) || !is_token(id) {
            return None;
        }
        let signature = hex(&self.mac(server, id).finalize().into_bytes()[..SIGNATURE_BYTES]);
        let name = encode_segment(if name.is_empty() { "file" } else { name });
        Some(format!(
            "{}/{signature}/{server}/{id}/{name}",
            self.base_url
        ))
    }

    /// The HMAC of one media address, before it is finished.
    fn mac(&self, server: &str, id: &str) -> Signer {
        let mut mac = Signer::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(server.as_bytes());
        mac.update(b"/");
        mac.update(id.as_bytes());
        mac
    }

    /// Constant-time, so that a signature cannot be guessed byte by byte.
    fn verify(&self, signature: &str, server: &str, id: &str) -> bool {
        let Some(given) = unhex(signature) else {
            return false;
        };
        given.len() == SIGNATURE_BYTES && self.mac(server, id).verify_truncated_left(&given).is_ok()
    }

    fn session(&self) -> Option<Arc<Inner>> {
        lock(&self.sessions).iter().find_map(Weak::upgrade)
    }
}

async fn serve(
    State(proxy): State<Arc<MediaProxy>>,
    UrlPath((signature, server, id, _name)): UrlPath<(String, String, String, String)>,
) -> Response {
    if !is_token(&server) || !is_token(&id) || !proxy.verify(&signature, &server, &id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(session) = proxy.session() else {
        debug!("a media link was opened while no Matrix session runs");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let client = &session.client;
    let Some(token) = client.access_token() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let url = format!(
        "{}/_matrix/client/v1/media/download/{server}/{id}",
        client.homeserver().as_str().trim_end_matches('/')
    );
    let reply = match proxy.http.get(url).bearer_auth(token).send().await {
        Ok(reply) => reply,
        Err(e) => {
            warn!(error = %e, "the homeserver did not serve a file");
            return StatusCode::BAD_GATEWAY.into_response();
        }
    };
    if !reply.status().is_success() {
        return StatusCode::NOT_FOUND.into_response();
    }
    if reply.content_length().is_some_and(|n| n > proxy.max_bytes) {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let content_type = reply
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    match reply.bytes().await {
        Ok(bytes) if bytes.len() as u64 <= proxy.max_bytes => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Ok(_) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// The key in `path`, made (32 random bytes, owner-only) if there is none.
fn load_or_create_key(path: &Path) -> Result<Vec<u8>, String> {
    match std::fs::read(path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => return Err(format!("{} is too short to be a key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let key: [u8; 32] = rand::random();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    write_private(path, &key).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key.to_vec())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(bytes)
}

/// Server names and media IDs: what Matrix allows in them, nothing that
/// could change the path of the request made to the homeserver.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'[' | b']')
        })
        && s != "."
        && s != ".."
}

fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> MediaProxy {
        MediaProxy {
            base_url: "https://media.example.org".into(),
            key: vec![7; 32],
            sessions: Mutex::new(Vec::new()),
            max_bytes: 1024,
            http: reqwest::Client::new(),
        }
    }

    #[test]
    fn links_are_signed_and_a_changed_part_is_refused() {
        let proxy = proxy();
        let link = proxy
            .link("mxc://example.org/AbC123", "cat picture.png")
            .unwrap();
        let parts: Vec<&str> = link
            .trim_start_matches("https://media.example.org/")
            .split('/')
            .collect();
        assert_eq!(parts[1..], ["example.org", "AbC123", "cat%20picture.png"]);
        assert!(proxy.verify(parts[0], "example.org", "AbC123"));
        assert!(!proxy.verify(parts[0], "example.org", "AbC124"));
        assert!(!proxy.verify(parts[0], "evil.org", "AbC123"));
        assert!(!proxy.verify("00", "example.org", "AbC123"));
        assert!(!proxy.verify("zz", "example.org", "AbC123"));
    }

    #[test]
    fn odd_media_addresses_get_no_link() {
        let proxy = proxy();
        assert!(proxy.link("https://example.org/x", "f").is_none());
        assert!(proxy.link("mxc://example.org/../admin", "f").is_none());
        assert!(proxy.link("mxc://example.org/a?b", "f").is_none());
    }
}
