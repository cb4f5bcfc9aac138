//! The server's listening socket, bounded: at most so many connections at once, at most so
//! many of them from one peer address, and a connection on which nothing arrives for a
//! while is closed.
//!
//! Without these a client that opens many connections, or opens one and never sends or
//! reads anything, would hold the server's resources for ever. A connection beyond its
//! address's share is closed as soon as it is accepted, so that it neither waits in the
//! kernel's backlog ahead of other clients nor takes a permit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::per_client::{ClientSlot, PerClientLimit};

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection that neither sends nor receives a byte for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A TCP listener with a connection limit, an optional limit per peer address, and an idle
/// timeout.
pub struct BoundedListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    per_peer: Option<PerClientLimit>,
    idle_timeout: Duration,
}

impl BoundedListener {
    /// `per_peer`: the limit on connections from one peer address, or `None` when every
    /// connection comes from a trusted proxy (the limit then applies per client behind it,
    /// to requests).
    pub fn new(
        listener: TcpListener,
        max_connections: usize,
        per_peer: Option<PerClientLimit>,
        idle_timeout: Duration,
    ) -> Self {
        BoundedListener {
            listener,
            permits: Arc::new(Semaphore::new(max_connections)),
            per_peer,
            idle_timeout,
        }
    }

    /// The next connection within the limits; waits while all permits are taken.
    /// Cancel-safe: a connection is never accepted and then lost.
    pub async fn accept(&mut self) -> (BoundedStream, std::net::SocketAddr) {
        // The semaphore is never closed, so acquiring only waits.
        let permit = loop {
            if let Ok(permit) = self.permits.clone().acquire_owned().await {
                break permit;
            }
        };
        loop {
            match self.listener.accept().await {
                Ok((stream, address)) => {
                    let slot = match &self.per_peer {
                        None => None,
                        Some(limit) => match limit.try_take(address.ip()) {
                            Some(slot) => Some(slot),
                            None => {
                                tracing::debug!(peer = %address.ip(), "connection closed: its address holds its share of connections");
                                continue;
                            }
                        },
                    };
                    let _ = stream.set_nodelay(true);
                    return (
                        BoundedStream {
                            stream,
                            _permit: permit,
                            _slot: slot,
                            idle_timeout: self.idle_timeout,
                            deadline: Box::pin(tokio::time::sleep(self.idle_timeout)),
                        },
                        address,
                    );
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// A connection holding one of the listener's permits, and its peer's slot, until it is
/// dropped.
pub struct BoundedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    _slot: Option<ClientSlot>,
    idle_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl BoundedStream {
    fn progressed(&mut self) {
        let next = Instant::now() + self.idle_timeout;
        self.deadline.as_mut().reset(next);
    }

    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the connection was idle too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_write(cx, data) {
            Poll::Ready(result) => {
                this.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_and_idle_ones_are_closed() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let mut listener = BoundedListener::new(tcp, 1, None, Duration::from_millis(300));
        let _first_client = TcpStream::connect(address).await.unwrap();
        let _second_client = TcpStream::connect(address).await.unwrap();
        let (mut first, _) = listener.accept().await;
        // The second connection is not accepted while the first holds the only permit.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), listener.accept())
                .await
                .is_err()
        );
        // Nothing arrives on the first: its read fails once it has been idle too long.
        let mut byte = [0u8; 1];
        let error = first.read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        drop(first);
        let (mut second, _) = tokio::time::timeout(Duration::from_secs(2), listener.accept())
            .await
            .expect("the freed permit lets the next connection in");
        second.write_all(b"x").await.unwrap();
    }

    #[tokio::test]
    async fn a_peer_beyond_its_share_is_closed_at_once_and_others_still_get_in() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let mut listener = BoundedListener::new(tcp, 8, Some(PerClientLimit::new(2)), IDLE_TIMEOUT);
        let connect_from = |ip: &'static str| async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            socket.connect(address).await.unwrap()
        };
        let mut flood = Vec::new();
        for _ in 0..3 {
            flood.push(connect_from("127.0.0.2").await);
        }
        let _other = connect_from("127.0.0.1").await;
        let (_first, from) = listener.accept().await;
        assert_eq!(from.ip().to_string(), "127.0.0.2");
        let (_second, _) = listener.accept().await;
        // The third from 127.0.0.2 is closed; the next accepted is 127.0.0.1's.
        let (_accepted, from) = listener.accept().await;
        assert_eq!(from.ip().to_string(), "127.0.0.1");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), flood[2].read(&mut byte))
            .await
            .expect("the connection beyond the share is closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
