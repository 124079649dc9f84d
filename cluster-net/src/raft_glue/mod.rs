//! The openraft glue: the only module of the workspace that names openraft.
//!
//! - `types`: the type configuration and node ids;
//! - `runtime`: the tokio / madsim runtime seam;
//! - `log_store`, `state_machine`: storage over any [`DurableStore`](crate::store::DurableStore);
//! - `codec`: stored record encoding.

// openraft fixes its (large) StorageError type; our helpers return it as is.
#![allow(clippy::result_large_err)]

mod codec;
mod log_store;
mod runtime;
mod state_machine;
mod types;

pub use types::{node_id_of, NodeInfo};

#[cfg(test)]
mod suite_tests;
