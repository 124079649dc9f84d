//! The openraft glue: the only module of the workspace that names openraft.
//!
//! - `types`: the type configuration and node ids;
//! - `runtime`: the tokio / madsim runtime seam;
//! - `log_store`, `state_machine`: storage over any [`DurableStore`](crate::store::DurableStore);
//! - `codec`: stored record encoding; `snapshot_gate`: purges wait for the
//!   snapshot they rely on, snapshots are saved only when newer;
//! - `rpc`: wire messages; `network`: openraft's network over our transport;
//! - `cluster_id`: the persisted cluster id and joining flag;
//! - `identity`: the store's peer id and incarnation;
//! - `node`: the [`ClusterRaft`] handle; `write_path`: batching and
//!   forwarding; `membership`: bootstrap, join, remove, leave.

// openraft fixes its (large) StorageError type; our helpers return it as is.
#![allow(clippy::result_large_err)]

mod changes;
mod cluster_id;
mod codec;
#[doc(hidden)]
pub mod fuzzing;
mod identity;
mod log_store;
mod membership;
mod network;
mod node;
mod removal;
mod rpc;
mod runtime;
mod snapshot_gate;
mod state_machine;
mod types;
mod watch;
mod write_path;

pub use changes::{Changed, PinsetChanges, PENDING_CIDS_MAX};
pub use identity::Boot;
pub use node::ClusterRaft;
pub use rpc::{CodecError, RpcRequest, RpcResponse};
#[cfg(madsim)]
pub use runtime::sim_hooks;
pub use runtime::{sleep, spawn, timeout};
pub use types::{node_id_of, NodeInfo};
pub use watch::RaftWatch;

#[cfg(test)]
mod suite_tests;
