//! Measures the rate of durable redb commits on this machine.
use cluster_net::store::{DurableStore, RedbStore, WriteBatch, WriteOp};
fn main() {
    let dir = tempfile::tempdir().expect("dir");
    let store = RedbStore::create(dir.path()).expect("create");
    let n = 500u64;
    let t = std::time::Instant::now();
    for i in 0..n {
        let mut b = WriteBatch::durable();
        b.push(WriteOp::PutLog(i, vec![1u8; 200]));
        store.commit(b).expect("commit");
    }
    let e = t.elapsed();
    println!(
        "{n} durable commits: {:.3} ms each",
        e.as_secs_f64() * 1e3 / n as f64
    );
    let t = std::time::Instant::now();
    for i in n..2 * n {
        let mut b = WriteBatch::relaxed();
        b.push(WriteOp::PutLog(i, vec![1u8; 200]));
        store.commit(b).expect("commit");
    }
    let e = t.elapsed();
    println!(
        "{n} relaxed commits: {:.3} ms each",
        e.as_secs_f64() * 1e3 / n as f64
    );
}
