//! NDJSON pin import (`ipfscluster-server state import`, cluster-node
//! `server::state::read_pins`): arbitrary lines either give pins that
//! validate, or an error naming the line; accepted pins written back as
//! export lines read back to the same pins.

use cluster_node::server::pin_json::PinJson;
use cluster_node::server::state::read_pins;

/// Reads `data` as an import file.
pub fn run(data: &[u8]) {
    let Ok(pins) = read_pins(&mut &data[..]) else {
        return;
    };
    let mut export = Vec::new();
    for pin in &pins {
        let line = serde_json::to_string(&PinJson::from(pin)).expect("a pin serialises");
        export.extend_from_slice(line.as_bytes());
        export.push(b'\n');
    }
    let again = read_pins(&mut &export[..]).expect("an export reads back");
    assert_eq!(again, pins, "export then import");
}

/// Words the stable runner splices into inputs.
pub const DICTIONARY: &[&[u8]] = &[
    b"\"cid\":\"QmNQa1FSTXNHmrjjfgUW3Px3Vkke4oKiFWdigWkYSux2Pi\"",
    b"\"replication_factor_min\":",
    b"\"replication_factor_max\":",
    b"\"mode\":\"direct\"",
    b"\"type\":\"pin\"",
    b"\"allocations\":[]",
    b"\"max_depth\":-1",
    b"\"timestamp\":\"2024-05-06T10:12:45Z\"",
    b"\"expire_at\":\"",
    b"\n",
];
