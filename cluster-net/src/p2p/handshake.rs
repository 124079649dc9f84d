//! The connection stack: TCP, then the private network keyed by the
//! cluster secret, then noise (authenticates the peer id) and yamux.
//!
//! libp2p's `pnet` only encrypts: with another key the next layer reads
//! noise and fails somewhere in protocol negotiation, or waits for bytes
//! that never come. So right after the `pnet` handshake both sides send a
//! fixed proof (encrypted with their key) and check the other's: a peer
//! with another secret, or with none, is refused at once and both sides
//! log it in plain words.

use std::io;
use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::core::{ConnectedPoint, Transport};
use libp2p::futures::future::Either;
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PnetOutput};
use libp2p::{noise, tcp, yamux, PeerId};

use super::secret::ClusterSecret;

/// Sent by each side right after the private-network handshake.
const SECRET_PROOF: &[u8; 16] = b"ipfs-cluster-rs1";

/// What a refused connection because of the secret says.
pub(crate) const SECRET_MISMATCH: &str = "the other side does not use this cluster's secret";

/// The connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The peers hold different secrets (or one has none).
    #[error("{SECRET_MISMATCH} (check `secret` in both configurations)")]
    SecretMismatch,
    /// The socket failed during the handshake.
    #[error("private network handshake: {0}")]
    Io(#[from] io::Error),
}

fn remote_of(endpoint: &ConnectedPoint) -> String {
    match endpoint {
        ConnectedPoint::Dialer { address, .. } => address.to_string(),
        ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.to_string(),
    }
}

/// The `pnet` handshake followed by the proof exchange.
async fn private_handshake<S>(
    secret: ClusterSecret,
    socket: S,
    endpoint: ConnectedPoint,
) -> Result<PnetOutput<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut output = PnetConfig::new(secret.psk())
        .handshake(socket)
        .await
        .map_err(|e| HandshakeError::Io(io::Error::other(e)))?;
    output.write_all(SECRET_PROOF).await?;
    output.flush().await?;
    let mut proof = [0u8; SECRET_PROOF.len()];
    output.read_exact(&mut proof).await?;
    if &proof != SECRET_PROOF {
        let (direction, remote) = match &endpoint {
            ConnectedPoint::Dialer { .. } => ("to", remote_of(&endpoint)),
            ConnectedPoint::Listener { .. } => ("from", remote_of(&endpoint)),
        };
        tracing::warn!(
            remote = %remote,
            "refused the connection {direction} {remote}: {SECRET_MISMATCH} \
             (a peer of another cluster, or a cluster secret that differs)"
        );
        return Err(HandshakeError::SecretMismatch);
    }
    Ok(output)
}

/// The transport of a peer: TCP + private network (when a secret is
/// given) + noise + yamux, each connection set up within `timeout`.
pub(crate) fn build(
    key: &Keypair,
    secret: Option<ClusterSecret>,
    timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let tcp = tcp::tokio::Transport::new(tcp::Config::new().nodelay(true));
    let base = tcp.and_then(move |socket, endpoint| async move {
        match secret {
            Some(secret) => private_handshake(secret, socket, endpoint)
                .await
                .map(Either::Left),
            None => Ok(Either::Right(socket)),
        }
    });
    Ok(base
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .timeout(timeout)
        .boxed())
}

/// True when a dial or listen error (as text, sources included) is a
/// refusal because of the secret.
pub(crate) fn is_secret_mismatch(error_text: &str) -> bool {
    error_text.contains(SECRET_MISMATCH)
}

/// An error with its whole chain of sources, for logs and `peers ls`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}
