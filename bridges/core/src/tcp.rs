//! TCP that acknowledges at once what it reads, for the gateway's
//! connections to IRC servers.
//!
//! Why: IRC servers (InspIRCd among them) leave Nagle's algorithm on, so
//! whatever they write while earlier bytes are unacknowledged waits for our
//! ACK, and Linux delays an ACK by up to 40 ms. Under a burst (a busy
//! channel, a NAMES or history replay) that stalled the connection 40 ms at
//! a time: in `benches/irc_load.rs`, acknowledging at once took IRC → XMPP
//! throughput from 0.60 to about 0.70 of the Prosody ceiling.
//!
//! TCP_QUICKACK is not sticky (the kernel returns to delayed ACKs on its
//! own), so it is set again after a read; setting it also sends an ACK that
//! is due. Only after a read that left the caller's buffer room, which
//! means the socket was drained: the stall happens while we wait for more,
//! and a read that filled the buffer is followed at once by another.
//!
//! Not on the component link: there the XMPP server is the bottleneck under
//! load, and in irc_load XMPP → IRC throughput fell with it (a mean over 15
//! rounds of 0.59 of the ceiling, against 0.73 without), most likely because
//! pure ACKs, rather than ones riding on the gateway's stanzas, woke Prosody
//! more often for less work each.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

/// Something read from one TCP socket.
pub trait OnTcp {
    fn tcp(&self) -> &TcpStream;
}

impl OnTcp for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl OnTcp for OwnedReadHalf {
    fn tcp(&self) -> &TcpStream {
        self.as_ref()
    }
}

/// A TCP stream, or its reading half, that acknowledges each read at once.
pub struct Acking<T>(pub T);

/// Acknowledge at once what was just read from `tcp`.
fn acknowledge(tcp: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // Best effort: failing leaves delayed ACKs, which cost only latency.
        let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = tcp;
}

impl<T: AsyncRead + OnTcp + Unpin> AsyncRead for Acking<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &mut self.get_mut().0;
        let before = buf.filled().len();
        let polled = Pin::new(&mut *inner).poll_read(cx, buf);
        if buf.filled().len() > before && buf.remaining() > 0 {
            acknowledge(inner.tcp());
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Acking<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn reads_and_writes_pass_through() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.unwrap();
            peer.write_all(b"PING :x\r\n").await.unwrap();
            let mut got = [0u8; 9];
            peer.read_exact(&mut got).await.unwrap();
            got
        });
        let mut tcp = Acking(TcpStream::connect(addr).await.unwrap());
        let mut line = [0u8; 9];
        tcp.read_exact(&mut line).await.unwrap();
        assert_eq!(&line, b"PING :x\r\n");
        tcp.write_all(b"PONG :x\r\n").await.unwrap();
        assert_eq!(&server.await.unwrap(), b"PONG :x\r\n");
        // The reading half of a split stream passes reads through too.
        let (read, _write) = tcp.0.into_split();
        let mut rest = Vec::new();
        Acking(read).read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the server closed after its PONG");
    }
}
