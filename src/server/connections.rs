//! Serving the accepted connections: HTTP/1.1 with deadlines, a per-client cap behind a
//! proxy, and a graceful stop.
//!
//! `axum::serve` has no deadline for a request's head, so a client could hold a connection
//! by sending its headers a byte at a time, each byte resetting the idle timeout. Here hyper
//! is driven directly: a request's head must be complete within [`HEAD_TIMEOUT`] of the
//! connection opening (or of the previous answer, on a kept-alive connection), and the
//! request must be answered within [`REQUEST_TIMEOUT`] after that, however slowly its body
//! comes. Behind a proxy, a request holds its client's slot until its answer is sent whole.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt;

use super::listener::{BoundedListener, BoundedStream};
use super::per_client::{ClientAddressSource, PerClientLimit};

/// A request's head (request line and headers) must arrive within this.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A request must be answered within this after its head arrived, body included (an answer
/// that streams a file, such as an image download, only has to start by then).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a connection's input held at once, the request head included: enough for any
/// head GitHub or a browser sends, and what a body passes through on its way.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;

/// At a stop, how long a connection with no request in flight has to finish sending its
/// last answer before it is closed: one waiting for a head (idle, or with half a head) is
/// closed then rather than at its head deadline, which is as long as the shutdown grace.
pub const STOP_FLUSH_WINDOW: Duration = Duration::from_secs(1);

/// What is needed to serve each connection.
#[derive(Clone)]
pub struct Serving {
    pub router: Router,
    pub client_address: ClientAddressSource,
    /// Behind a proxy, the cap on requests in flight per client address.
    pub per_client: PerClientLimit,
    /// [`HEAD_TIMEOUT`] and [`REQUEST_TIMEOUT`], but for tests.
    pub head_timeout: Duration,
    pub request_timeout: Duration,
}

/// Accepts and serves connections until `shutdown` completes, then stops accepting, lets
/// the requests in flight finish (idle connections are closed), and returns once every
/// connection is closed.
pub async fn serve(
    mut listener: BoundedListener,
    serving: Serving,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (stream, peer) = listener.accept() => {
                connections.spawn(serve_connection(stream, peer, serving.clone(), stop_rx.clone()));
            }
            () = &mut shutdown => break,
        }
        while connections.try_join_next().is_some() {}
    }
    // Closing the socket refuses new connections at once.
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: BoundedStream,
    peer: SocketAddr,
    serving: Serving,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(serving.head_timeout)
        .max_buf_size(READ_BUFFER_BYTES);
    // Requests whose head has arrived and whose answer is not sent whole yet.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let service = hyper::service::service_fn({
        let in_flight = in_flight.clone();
        move |request: Request<Incoming>| {
            let serving = serving.clone();
            let held = InFlight::start(in_flight.clone());
            async move {
                let response = answer(serving, peer, request).await;
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::new(HeldUntilSent {
                        body,
                        held: Some(held),
                    })
                }))
            }
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut stopping = false;
    let mut flush_window_over = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, %peer, "connection ended");
                }
                break;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                // Closes the connection after the request in flight, if any; hyper leaves
                // one that has not completed a request yet to its head deadline.
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep(STOP_FLUSH_WINDOW), if stopping && !flush_window_over => {
                flush_window_over = true;
                if in_flight.load(Ordering::SeqCst) == 0 {
                    tracing::debug!(%peer, "connection without a request closed at the stop");
                    break;
                }
            }
        }
    }
}

async fn answer(serving: Serving, peer: SocketAddr, request: Request<Incoming>) -> Response {
    // Behind a proxy every connection is the proxy's, so the cap applies here, per the
    // address the proxy names, to requests in flight, until their answer is sent whole.
    let slot = match &serving.client_address {
        ClientAddressSource::Peer => None,
        source @ ClientAddressSource::ProxyHeader(_) => {
            let client = source.client_address(request.headers(), peer);
            match serving.per_client.try_take(client) {
                Some(slot) => Some(slot),
                None => {
                    tracing::warn!(%client, "request refused: its client address has too many requests in flight");
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        axum::Json(serde_json::json!({
                            "error": "too many requests in flight from this address"
                        })),
                    )
                        .into_response();
                }
            }
        }
    };
    let request = request.map(Body::new);
    let response = answer_in_time(&serving, peer, request).await;
    match slot {
        Some(slot) => response.map(|body| {
            Body::new(HeldUntilSent {
                body,
                held: Some(slot),
            })
        }),
        None => response,
    }
}

async fn answer_in_time(serving: &Serving, peer: SocketAddr, request: Request<Body>) -> Response {
    let router = serving.router.clone();
    match tokio::time::timeout(serving.request_timeout, router.oneshot(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(infallible)) => match infallible {},
        Err(_) => {
            tracing::warn!(%peer, "request cut off: not answered within the request deadline");
            (
                StatusCode::REQUEST_TIMEOUT,
                axum::Json(serde_json::json!({ "error": "the request took too long" })),
            )
                .into_response()
        }
    }
}

/// One request of a connection counted in flight, until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An answer's body that holds something of its request (its client slot, its count in
/// flight) until it is sent whole or given up: a slow download keeps its connection, so it
/// counts against its client's cap.
struct HeldUntilSent<T> {
    body: Body,
    held: Option<T>,
}

impl<T: Unpin> hyper::body::Body for HeldUntilSent<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) || self.body.is_end_stream() {
            self.held = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::Notify;

    struct TestServer {
        address: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        served: tokio::task::JoinHandle<()>,
    }

    /// A server on loopback with short deadlines: `/fast` answers at once, `/slow` never in
    /// time, `/held` once `release` is notified (after notifying `started`).
    async fn start(
        head: Duration,
        request: Duration,
        started: Arc<Notify>,
        release: Arc<Notify>,
    ) -> TestServer {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let listener = BoundedListener::new(tcp, 8, None, Duration::from_secs(60));
        let router = Router::new()
            .route("/fast", get(|| async { "fast" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "slow"
                }),
            )
            .route(
                "/held",
                get(move || async move {
                    started.notify_one();
                    release.notified().await;
                    "held"
                }),
            );
        let serving = Serving {
            router,
            client_address: ClientAddressSource::Peer,
            per_client: PerClientLimit::new(4),
            head_timeout: head,
            request_timeout: request,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, serving, async {
            let _ = stopped.await;
        }));
        TestServer {
            address,
            stop: Some(stop),
            served,
        }
    }

    async fn start_plain(head: Duration, request: Duration) -> TestServer {
        start(head, request, Arc::default(), Arc::default()).await
    }

    async fn read_all(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection");
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_head_that_does_not_arrive_in_time_closes_the_connection() {
        let server = start_plain(Duration::from_millis(300), Duration::from_secs(5)).await;
        let mut slow = TcpStream::connect(server.address).await.unwrap();
        let opened = tokio::time::Instant::now();
        slow.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let answer = read_all(&mut slow).await;
        assert!(!answer.contains("fast"), "{answer}");
        assert!(opened.elapsed() < Duration::from_secs(2));

        let mut quick = TcpStream::connect(server.address).await.unwrap();
        quick
            .write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_all(&mut quick).await.ends_with("fast"));
    }

    #[tokio::test]
    async fn a_request_not_answered_in_time_gets_408() {
        let server = start_plain(Duration::from_secs(5), Duration::from_millis(300)).await;
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_all(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }

    #[tokio::test]
    async fn stopping_closes_a_connection_whose_head_is_half_sent_at_once() {
        let mut server = start_plain(Duration::from_secs(5), Duration::from_secs(5)).await;
        let mut half = TcpStream::connect(server.address).await.unwrap();
        half.write_all(b"POST /fast HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut idle = TcpStream::connect(server.address).await.unwrap();
        // Both connections are being served before the stop.
        let mut probe = TcpStream::connect(server.address).await.unwrap();
        probe
            .write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_all(&mut probe).await.ends_with("fast"));
        let stopped = tokio::time::Instant::now();
        server.stop.take().unwrap().send(()).unwrap();
        for stream in [&mut half, &mut idle] {
            let answer = read_all(stream).await;
            assert!(!answer.contains("fast"), "{answer}");
        }
        tokio::time::timeout(Duration::from_secs(5), server.served)
            .await
            .expect("serve returns once its connections are closed")
            .unwrap();
        let took = stopped.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "closed {took:?} after the stop, not at the head deadline"
        );
    }

    #[tokio::test]
    async fn stopping_refuses_new_connections_and_finishes_the_request_in_flight() {
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let mut server = start(
            Duration::from_secs(5),
            Duration::from_secs(5),
            started.clone(),
            release.clone(),
        )
        .await;
        let mut in_flight = TcpStream::connect(server.address).await.unwrap();
        in_flight
            .write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        started.notified().await;
        server.stop.take().unwrap().send(()).unwrap();
        let refused_by = tokio::time::Instant::now() + Duration::from_secs(2);
        while TcpStream::connect(server.address).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < refused_by,
                "still accepting after the stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        release.notify_one();
        let answer = read_all(&mut in_flight).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("held"), "{answer}");
        tokio::time::timeout(Duration::from_secs(5), server.served)
            .await
            .expect("serve returns once its connections are closed")
            .unwrap();
    }
}
