//! openraft's own storage test suite against our log store and state machine.

use std::sync::{Arc, RwLock};

use cluster_core::Pinset;
use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::types::{StorageError, TypeConfig};
use crate::store::MemStore;

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore<MemStore>, StateMachine<MemStore>, ()> for MemBuilder {
    async fn build(
        &self,
    ) -> Result<((), LogStore<MemStore>, StateMachine<MemStore>), StorageError> {
        let store = Arc::new(MemStore::new());
        let pinset = Arc::new(RwLock::new(Pinset::new()));
        let sm = StateMachine::open(Arc::clone(&store), pinset).expect("open state machine");
        let gate = sm.gate();
        Ok(((), LogStore::new(store, gate), sm))
    }
}

#[test]
fn openraft_suite_mem_store() {
    Suite::test_all(MemBuilder).expect("openraft storage suite");
}

#[cfg(feature = "redb-store")]
struct RedbBuilder;

#[cfg(feature = "redb-store")]
impl
    StoreBuilder<
        TypeConfig,
        LogStore<crate::store::RedbStore>,
        StateMachine<crate::store::RedbStore>,
        tempfile::TempDir,
    > for RedbBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            LogStore<crate::store::RedbStore>,
            StateMachine<crate::store::RedbStore>,
        ),
        StorageError,
    > {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(crate::store::RedbStore::create(dir.path()).expect("create redb"));
        let pinset = Arc::new(RwLock::new(Pinset::new()));
        let sm = StateMachine::open(Arc::clone(&store), pinset).expect("open state machine");
        let gate = sm.gate();
        Ok((dir, LogStore::new(store, gate), sm))
    }
}

#[cfg(feature = "redb-store")]
#[test]
fn openraft_suite_redb_store() {
    Suite::test_all(RedbBuilder).expect("openraft storage suite");
}
