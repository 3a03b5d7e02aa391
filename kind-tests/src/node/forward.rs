//! `local-cluster forward`: serves the API server's loopback port on the bridge address, byte for
//! byte (TLS passes through), so that pods reach the control plane at the address it advertises
//! while everything else keeps using loopback.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

/// Accepts on `listen` and copies each connection to and from `to` until `shutdown` resolves.
pub async fn serve(
    listen: SocketAddr,
    to: SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    info!(%listen, %to, "forwarding");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (mut inbound, peer) = accepted?;
                tokio::spawn(async move {
                    match TcpStream::connect(to).await {
                        Ok(mut outbound) => {
                            if let Err(e) = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await {
                                debug!(%peer, error = %e, "connection ended");
                            }
                        }
                        // The API server is restarting: the client sees a reset and retries.
                        Err(e) => debug!(%peer, error = %e, "upstream refused"),
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn copies_both_ways() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = upstream.local_addr().unwrap();
        let port = crate::procs::free_port().unwrap();
        let listen: SocketAddr = ([127, 0, 0, 1], port).into();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listen, to, async {
            let _ = stop_rx.await;
        }));
        let echo = tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let mut client = loop {
            if let Ok(c) = TcpStream::connect(listen).await {
                break c;
            }
            tokio::task::yield_now().await;
        };
        client.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        echo.await.unwrap();
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
