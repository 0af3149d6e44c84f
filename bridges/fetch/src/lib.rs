//! Files that XMPP users link (XEP-0066, usually HTTP-upload URLs), fetched
//! by a bridge so that it can upload them to its network.
//!
//! The gateway fetches a URL a user chose, so it guards against being used
//! to reach what only it can reach (server-side request forgery): only
//! http(s), only public addresses unless the admin allows private ones, the
//! address checked is the address connected to (no second DNS answer), no
//! redirects, and a size limit enforced while reading.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use thiserror::Error;

/// How long one fetch may take, all of it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// What the admin allows the gateway to fetch.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub max_bytes: u64,
    /// Loopback, private, link-local and other non-public addresses too.
    pub allow_private: bool,
}

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("not an http(s) URL")]
    Scheme,
    #[error("the URL's host does not resolve: {0}")]
    Resolve(String),
    #[error("the URL points at a private address ({0}), which this gateway does not fetch")]
    Private(IpAddr),
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    #[error("fetching failed: {0}")]
    Http(String),
}

/// A fetched file: what is known of it, and its bytes, kept apart so that
/// the bytes can be handed to the upload without a copy.
#[derive(Debug)]
pub struct Fetched {
    pub info: FileInfo,
    pub bytes: Vec<u8>,
}

/// What is known of a fetched file.
#[derive(Debug)]
pub struct FileInfo {
    pub name: String,
    pub content_type: String,
    pub size: usize,
}

/// Fetch `url` under `policy`.
pub async fn fetch(url: &str, policy: &FetchPolicy) -> Result<Fetched, FetchError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::Scheme)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FetchError::Scheme);
    }
    let host = parsed.host_str().ok_or(FetchError::Scheme)?.to_owned();
    let port = parsed.port_or_known_default().ok_or(FetchError::Scheme)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let address = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| FetchError::Resolve(e.to_string()))?
        .next()
        .ok_or_else(|| FetchError::Resolve("no address".into()))?;
    if !policy.allow_private && !is_public(address.ip()) {
        return Err(FetchError::Private(address.ip()));
    }
    // Pinned to the address just checked, so that a second DNS answer
    // cannot point the request elsewhere.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .resolve(bare, SocketAddr::new(address.ip(), port))
        .build()
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let mut response = client
        .get(parsed.clone())
        .send()
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    if !response.status().is_success() {
        return Err(FetchError::Http(format!("HTTP {}", response.status())));
    }
    if response
        .content_length()
        .is_some_and(|n| n > policy.max_bytes)
    {
        return Err(FetchError::TooLarge(policy.max_bytes));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| v.contains('/'))
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?
    {
        if bytes.len() as u64 + chunk.len() as u64 > policy.max_bytes {
            return Err(FetchError::TooLarge(policy.max_bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        info: FileInfo {
            name: file_name(&parsed),
            content_type,
            size: bytes.len(),
        },
        bytes,
    })
}

/// The last path segment, percent-decoding left as it is; "file" if none.
fn file_name(url: &reqwest::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|s| !s.is_empty())
        .unwrap_or("file")
        .to_owned()
}

/// Whether an address is reachable on the public internet, as opposed to
/// the gateway's own host or network.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link-local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn loopback_and_other_schemes_are_refused_by_default() {
        let policy = FetchPolicy {
            max_bytes: 1024,
            allow_private: false,
        };
        assert!(matches!(
            fetch("http://127.0.0.1:9/x.png", &policy).await,
            Err(FetchError::Private(_))
        ));
        assert!(matches!(
            fetch("file:///etc/passwd", &policy).await,
            Err(FetchError::Scheme)
        ));
    }
}
