//! TLS to IRC servers: the rustls client configuration and the stream
//! halves that let the line reader and writer run over TCP or TLS alike.
//!
//! The crypto provider (ring) is always passed explicitly: the final build
//! may enable both ring and aws-lc-rs, so rustls's process-default provider
//! is ambiguous, and another crate could install one of its own.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use estuary_bridge::tcp::Acking;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

/// TLS over a TCP stream that acknowledges each read at once
/// (`estuary_bridge::tcp` says why).
pub type TlsStream = tokio_rustls::client::TlsStream<Acking<TcpStream>>;

/// The one crypto provider of IRC connections.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(ring::default_provider()))
        .clone()
}

/// The system's trusted roots, read once: thousands of connections must not
/// each parse the whole system store.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            warn!(%error, "cannot read some of the system's trusted certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        debug!(added, ignored, "system trusted certificates loaded");
        if added == 0 {
            warn!("no system trusted certificates: TLS to IRC servers needs ca_file or verify_certificates = false");
        }
        roots
    })
}

/// A certificate's fingerprint, to take that certificate alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fingerprint {
    Sha256([u8; 32]),
    /// What biboumi took; weaker, kept so that its users' settings work.
    Sha1([u8; 20]),
}

impl Fingerprint {
    /// Hex, upper or lower case, with or without colons or spaces (as
    /// `openssl x509 -fingerprint` prints it): 64 digits for SHA-256, 40
    /// for SHA-1.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let digits: String = text.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
        let bytes = (0..digits.len())
            .step_by(2)
            .map(|i| {
                digits
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| format!("'{text}' is not a hexadecimal fingerprint"))?;
        if let Ok(sha256) = <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(Fingerprint::Sha256(sha256))
        } else if let Ok(sha1) = <[u8; 20]>::try_from(bytes.as_slice()) {
            Ok(Fingerprint::Sha1(sha1))
        } else {
            Err(format!(
                "'{text}' is neither a SHA-256 (64 hex digits) nor a SHA-1 (40) fingerprint"
            ))
        }
    }

    fn matches(&self, der: &[u8]) -> bool {
        use sha1::Digest as _;
        match self {
            Fingerprint::Sha256(pin) => sha2::Sha256::digest(der).as_slice() == pin,
            Fingerprint::Sha1(pin) => sha1::Sha1::digest(der).as_slice() == pin,
        }
    }
}

/// A connector for the given settings. Configurations are built once per
/// (verification, ca_file, pin) and shared by every connection. With a
/// pinned certificate, that certificate is taken and no other, whoever
/// signed it.
pub fn connector(
    verify: bool,
    ca_file: Option<&Path>,
    pin: Option<&Fingerprint>,
) -> Result<TlsConnector, String> {
    type Key = (bool, Option<PathBuf>, Option<Fingerprint>);
    static CONFIGS: OnceLock<Mutex<HashMap<Key, Arc<ClientConfig>>>> = OnceLock::new();
    // Without verification, or with a pin, the roots are never consulted.
    let verify = verify && pin.is_none();
    let key: Key = (
        verify,
        ca_file.filter(|_| verify).map(Path::to_owned),
        pin.cloned(),
    );
    let configs = CONFIGS.get_or_init(Default::default);
    if let Some(config) = configs.lock().expect("TLS config cache").get(&key) {
        return Ok(TlsConnector::from(config.clone()));
    }
    let config = Arc::new(client_config(verify, key.1.as_deref(), pin.cloned())?);
    configs
        .lock()
        .expect("TLS config cache")
        .insert(key, config.clone());
    Ok(TlsConnector::from(config))
}

fn client_config(
    verify: bool,
    ca_file: Option<&Path>,
    pin: Option<Fingerprint>,
) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if verify {
        let mut roots = system_roots().clone();
        if let Some(path) = ca_file {
            add_ca_file(&mut roots, path)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ShownCertificate { provider, pin }))
            .with_no_client_auth()
    };
    Ok(config)
}

/// Adds every certificate of a PEM file as a trust anchor; an unreadable
/// file, or one without a usable certificate, is an error rather than a
/// silently smaller trust store.
fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read ca_file {shown}: {e}"))?
    {
        let cert = cert.map_err(|e| format!("cannot read ca_file {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unusable certificate in ca_file {shown}: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err(format!("no certificate in ca_file {shown}"));
    }
    Ok(())
}

/// The name checked against the certificate. rustls sends it as SNI only
/// when it is a DNS name, never for an IP literal.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    // `[::1]` is how an IPv6 literal may be written in a config.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare)
        .map(|name| name.to_owned())
        .map_err(|e| format!("{host} is not a valid TLS server name: {e}"))
}

/// The rustls error behind a failed handshake, if that is what it was.
pub fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Takes the certificate the server shows with no chain to a trusted root:
/// the pinned one only, or, without a pin, any (`verify_certificates =
/// false`). The handshake signatures are still verified, so the peer must
/// hold the key of the certificate it shows: without a pin a passive
/// observer learns nothing, and only an active man in the middle can
/// intercept; with one, not even that.
#[derive(Debug)]
struct ShownCertificate {
    provider: Arc<CryptoProvider>,
    pin: Option<Fingerprint>,
}

impl ServerCertVerifier for ShownCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pin {
            Some(pin) if !pin.matches(end_entity) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The read half of a plain or TLS connection. Plain TCP keeps tokio's
/// lock-free owned halves; TLS state is shared by both directions, so its
/// halves come from `tokio::io::split`.
pub enum ReadHalf {
    Plain(Acking<OwnedReadHalf>),
    Tls(tokio::io::ReadHalf<TlsStream>),
}

/// The write half matching [`ReadHalf`].
pub enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream>),
}

/// Splits a plain connection.
pub fn split_plain(tcp: TcpStream) -> (ReadHalf, WriteHalf) {
    let (read, write) = tcp.into_split();
    (ReadHalf::Plain(Acking(read)), WriteHalf::Plain(write))
}

/// Splits a TLS connection.
pub fn split_tls(tls: TlsStream) -> (ReadHalf, WriteHalf) {
    let (read, write) = tokio::io::split(tls);
    (ReadHalf::Tls(read), WriteHalf::Tls(write))
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn ip_literals_and_host_names_are_server_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("irc.libera.chat"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("not a host").is_err());
    }

    #[test]
    fn fingerprints_are_read_as_openssl_prints_them() {
        let sha256 = "AB:".repeat(31) + "CD";
        assert!(matches!(Fingerprint::parse(&sha256), Ok(Fingerprint::Sha256(b)) if b[31] == 0xcd));
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        assert!(matches!(Fingerprint::parse(sha1), Ok(Fingerprint::Sha1(b)) if b[0] == 0x01));
        assert!(Fingerprint::parse("abc").is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
        assert!(Fingerprint::parse(&"ab".repeat(16)).is_err());
        let pin = Fingerprint::Sha256(sha2::Sha256::digest(b"der").into());
        assert!(pin.matches(b"der") && !pin.matches(b"other"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        let dir = std::env::temp_dir().join(format!("estuary-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = connector(true, Some(&empty), None).err().expect("refused");
        assert!(err.contains("no certificate in ca_file"), "{err}");
        let missing = dir.join("missing.pem");
        let err = connector(true, Some(&missing), None)
            .err()
            .expect("refused");
        assert!(err.contains("cannot read ca_file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        // Without verification the file is never read.
        assert!(connector(false, Some(&missing), None).is_ok());
    }
}
