//! The component link's TCP stream, shared by tokio-xmpp's XML stream
//! (stream header, handshake, reading, pings) and the link's own stanza
//! writer (`xmpp::wire`), which writes serialised bytes straight to it.
//!
//! tokio-xmpp's stream hands out no mutable access to its transport, so
//! its transport is a `LinkSocket` whose writing half is shared with a
//! `LinkWriter`. Both users live in the one link task, and tokio-xmpp
//! flushes each of its writes before the link goes on, so their bytes never
//! interleave inside an element.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufReader, BufWriter, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// What tokio-xmpp's stream runs on.
pub struct LinkSocket {
    reader: BufReader<OwnedReadHalf>,
    writer: LinkWriter,
}

/// The writing half, for the link's own writes.
#[derive(Clone)]
pub struct LinkWriter {
    half: Arc<Mutex<BufWriter<OwnedWriteHalf>>>,
}

impl LinkSocket {
    pub fn new(tcp: TcpStream) -> (LinkSocket, LinkWriter) {
        let (read, write) = tcp.into_split();
        let writer = LinkWriter {
            half: Arc::new(Mutex::new(BufWriter::new(write))),
        };
        let socket = LinkSocket {
            reader: BufReader::new(read),
            writer: writer.clone(),
        };
        (socket, writer)
    }
}

impl LinkWriter {
    /// The half, for one poll. Never held across an await.
    fn with<T>(&self, f: impl FnOnce(Pin<&mut BufWriter<OwnedWriteHalf>>) -> T) -> T {
        let mut half = self.half.lock().unwrap_or_else(PoisonError::into_inner);
        f(Pin::new(&mut *half))
    }
}

impl AsyncWrite for LinkWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|w| w.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|w| w.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|w| w.poll_shutdown(cx))
    }
}

impl AsyncRead for LinkSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl AsyncBufRead for LinkSocket {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().reader).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.get_mut().reader).consume(amt)
    }
}

impl AsyncWrite for LinkSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}
