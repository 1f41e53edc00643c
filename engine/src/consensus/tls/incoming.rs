//! The TLS acceptor of a listener: handshakes run on their own tasks (a slow
//! or silent client holds up nobody), and a refused one is logged with the
//! peer's address and rustls' reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::Tls;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors and the like), so
/// the loop does not spin on the error.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// Accepted connections waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// The accepted, authenticated connections of `listener`, for tonic's
/// `serve_with_incoming`. Each handshake uses the material current when the
/// connection arrived. `port` names the listener in log lines ("node-to-node",
/// "app API"). The accept task ends when the server drops the stream.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Tls>,
    port: &'static str,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (ready, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = ready.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(port, error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot disable Nagle on an accepted connection");
            }
            let acceptor = TlsAcceptor::from(tls.server_config());
            let ready = ready.clone();
            tokio::spawn(async move {
                if let Some(stream) = handshake(acceptor, tcp, peer, port).await {
                    let _ = ready.send(Ok(stream)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    port: &'static str,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            // Closed before a handshake: a port check (a peer's transport
            // tells a dead node from a slow one this way), not a refusal.
            tracing::debug!(%peer, port, "connection closed before a TLS handshake");
            None
        }
        Ok(Err(e)) => {
            // rustls says why: "peer sent no certificates", "invalid peer
            // certificate: UnknownIssuer", "certificate expired: ...".
            tracing::warn!(%peer, port, reason = %e, "connection refused at the TLS handshake");
            None
        }
        Err(_) => {
            tracing::warn!(%peer, port, reason = "no TLS handshake within 10 s", "connection refused at the TLS handshake");
            None
        }
    }
}
