//! The wire protocols and their codec: one length-prefixed message each
//! way per stream, with a size cap checked before anything is buffered.
//!
//! Messages are the crate's [`RpcRequest`](crate::RpcRequest) /
//! [`RpcResponse`](crate::RpcResponse) in postcard, which carry openraft's
//! serde types. postcard is not self-describing, so the protocol ids carry a
//! wire version and the openraft version the layout comes from: peers of
//! other versions fail protocol negotiation (a clear "unsupported protocol")
//! instead of misreading each other's bytes. Bump [`WIRE_VERSION`] whenever
//! a message type changes, and the openraft part when openraft is upgraded.

use std::io;
use std::sync::Arc;

use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;

use super::meter::Meter;

/// Version of this crate's message layout.
pub const WIRE_VERSION: u32 = 1;

/// Raft traffic: AppendEntries, Vote, InstallSnapshot chunks.
pub const RAFT_PROTOCOL: StreamProtocol =
    StreamProtocol::new("/ipfs-cluster-rs/raft/1/openraft-0.9.25");

/// Peer RPCs: forwarded writes, join, remove.
pub const PEER_RPC_PROTOCOL: StreamProtocol =
    StreamProtocol::new("/ipfs-cluster-rs/peer-rpc/1/openraft-0.9.25");

/// Node RPCs (tracker status, metrics): a method name and opaque bytes.
pub const NODE_RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs-cluster-rs/node-rpc/1");

/// A node RPC request on the wire.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeRequest {
    pub(crate) method: String,
    pub(crate) body: Vec<u8>,
}

/// A node RPC answer on the wire.
pub(crate) type NodeResponse = Result<Vec<u8>, String>;

/// Bytes of the length prefix.
const LENGTH_PREFIX_BYTES: usize = 4;

/// Length-prefixed byte messages of at most `message_bytes_max` bytes,
/// counted per protocol on `meter` when there is one.
#[derive(Debug, Clone)]
pub(crate) struct WireCodec {
    pub(crate) message_bytes_max: usize,
    pub(crate) meter: Option<Arc<Meter>>,
}

impl WireCodec {
    fn received(&self, protocol: &StreamProtocol, bytes: usize) {
        if let Some(meter) = &self.meter {
            meter.received(protocol, bytes);
        }
    }

    fn sent(&self, protocol: &StreamProtocol, bytes: usize) {
        if let Some(meter) = &self.meter {
            meter.sent(protocol, bytes);
        }
    }

    async fn read_message<T>(
        &self,
        protocol: &StreamProtocol,
        io: &mut T,
        what: &str,
    ) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
        io.read_exact(&mut prefix).await?;
        self.received(protocol, LENGTH_PREFIX_BYTES);
        let length = u32::from_be_bytes(prefix) as usize;
        if length > self.message_bytes_max {
            // libp2p reports a failed read only at debug level, without
            // the reason: say it here.
            tracing::warn!(
                bytes = length,
                max = self.message_bytes_max,
                "dropped an inbound {what}: message of {length} bytes exceeds the limit of {} bytes",
                self.message_bytes_max
            );
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Oversize {
                    bytes: length,
                    max: self.message_bytes_max,
                },
            ));
        }
        let mut message = vec![0u8; length];
        io.read_exact(&mut message).await?;
        self.received(protocol, length);
        Ok(message)
    }

    async fn write_message<T>(
        &self,
        protocol: &StreamProtocol,
        io: &mut T,
        message: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        // The receiver enforces its own cap; refusing here only saves the
        // bandwidth of a message it would refuse with the same cap.
        let length = u32::try_from(message.len())
            .ok()
            .filter(|&l| l as usize <= self.message_bytes_max)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    Oversize {
                        bytes: message.len(),
                        max: self.message_bytes_max,
                    },
                )
            })?;
        io.write_all(&length.to_be_bytes()).await?;
        io.write_all(&message).await?;
        self.sent(protocol, LENGTH_PREFIX_BYTES + message.len());
        io.close().await
    }
}

/// A message larger than the cap.
#[derive(Debug, thiserror::Error)]
#[error("message of {bytes} bytes exceeds the limit of {max} bytes")]
pub(crate) struct Oversize {
    pub(crate) bytes: usize,
    pub(crate) max: usize,
}

#[async_trait::async_trait]
impl request_response::Codec for WireCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_message(p, io, &format!("request on {p}")).await
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_message(p, io, &format!("response on {p}")).await
    }

    async fn write_request<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_message(p, io, request).await
    }

    async fn write_response<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_message(p, io, response).await
    }
}

/// Reads one inbound message from `wire` as the codec reads a request off a
/// stream, with a cap of `message_bytes_max`. For the fuzz targets (not an
/// API): the swarm's own path needs a live connection.
#[doc(hidden)]
pub fn read_frame(wire: &[u8], message_bytes_max: usize) -> io::Result<Vec<u8>> {
    let mut codec = WireCodec {
        message_bytes_max,
        meter: None,
    };
    let mut stream = libp2p::futures::io::Cursor::new(wire);
    libp2p::futures::executor::block_on(request_response::Codec::read_request(
        &mut codec,
        &NODE_RPC_PROTOCOL,
        &mut stream,
    ))
}

/// Decodes a node RPC request (method and body) as the swarm does. For the
/// fuzz targets (not an API).
#[doc(hidden)]
pub fn decode_node_request(bytes: &[u8]) -> postcard::Result<(String, Vec<u8>)> {
    let request: NodeRequest = postcard::from_bytes(bytes)?;
    Ok((request.method, request.body))
}

/// Decodes a node RPC answer as the caller does. For the fuzz targets (not
/// an API).
#[doc(hidden)]
pub fn decode_node_response(bytes: &[u8]) -> postcard::Result<Result<Vec<u8>, String>> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use libp2p::futures::executor::block_on;
    use libp2p::futures::io::Cursor;
    use request_response::Codec as _;

    use super::*;

    #[test]
    fn messages_round_trip_within_the_cap() {
        let meter = Arc::new(Meter::new(std::time::Instant::now()));
        let mut codec = WireCodec {
            message_bytes_max: 16,
            meter: Some(Arc::clone(&meter)),
        };
        let mut wire = Cursor::new(Vec::new());
        block_on(codec.write_request(&RAFT_PROTOCOL, &mut wire, b"hello".to_vec())).expect("write");
        assert_eq!(wire.get_ref().len(), LENGTH_PREFIX_BYTES + 5);
        wire.set_position(0);
        let back = block_on(codec.read_request(&RAFT_PROTOCOL, &mut wire)).expect("read");
        assert_eq!(back, b"hello");
        // Both directions counted, length prefix included.
        let raft = meter.traffic(std::time::Instant::now())[RAFT_PROTOCOL.as_ref()];
        assert_eq!((raft.total_in, raft.total_out), (9, 9));
    }

    #[test]
    fn oversize_messages_are_refused_on_both_sides() {
        let mut codec = WireCodec {
            message_bytes_max: 4,
            meter: None,
        };
        let mut wire = Cursor::new(Vec::new());
        let err = block_on(codec.write_request(&RAFT_PROTOCOL, &mut wire, vec![0; 5]))
            .expect_err("too big to send");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // A prefix announcing 4 GiB is refused before any buffer is made.
        let mut huge = Cursor::new(u32::MAX.to_be_bytes().to_vec());
        let err = block_on(codec.read_response(&RAFT_PROTOCOL, &mut huge)).expect_err("too big");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("exceeds the limit of 4 bytes"),
            "{err}"
        );
        // A message cut short is an error too.
        let mut short = Cursor::new(vec![0, 0, 0, 3, 1]);
        assert!(block_on(codec.read_request(&RAFT_PROTOCOL, &mut short)).is_err());
    }

    #[test]
    fn protocol_ids_carry_the_versions() {
        for p in [RAFT_PROTOCOL, PEER_RPC_PROTOCOL] {
            assert!(p.as_ref().contains(&format!("/{WIRE_VERSION}/")), "{p}");
            assert!(p.as_ref().ends_with("openraft-0.9.25"), "{p}");
        }
    }
}
