//! A one-connection IRC server for unit tests, driven by a script.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Listens on a loopback port for one client, and answers each line it
/// sends with the lines `script` returns for it. The handle yields every
/// line the client sent, once the client has gone.
pub async fn start<F>(mut script: F) -> (u16, JoinHandle<Vec<String>>)
where
    F: FnMut(&str) -> Vec<&'static str> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            for reply in script(&line) {
                let sent = write.write_all(format!("{reply}\r\n").as_bytes()).await;
                if sent.is_err() {
                    return seen;
                }
            }
            seen.push(line);
        }
        seen
    });
    (port, server)
}

/// Options to connect to the scripted server on `port`.
pub fn options(port: u16) -> crate::options::ServerOptions {
    crate::options::ServerOptions {
        address: Some("127.0.0.1".into()),
        port,
        private_reach: crate::options::PrivateReach::Ports(vec![port]),
        ..Default::default()
    }
}

/// Who the scripted tests connect as.
pub fn alice() -> crate::connection::Identity {
    crate::connection::Identity {
        nick: "alice".into(),
        password: None,
        ident: None,
        names: None,
        home: "example.org".into(),
    }
}
