//! Free TCP ports on 127.0.0.1.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports already handed out in this process. The OS may return a port
/// again as soon as our probe socket is closed, and servers bind their
/// ports later, so without this two servers in parallel tests could be
/// given the same port.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that was free a moment ago and has not been
/// returned before by this process.
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = probe_port();
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("could not find a free port on 127.0.0.1 after 1000 tries");
}

/// Lets the OS pick an ephemeral port, then releases it.
fn probe_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}
