//! `server.json` (cluster-node `config`): arbitrary text is either a valid
//! configuration or an error naming a key; an accepted one writes itself
//! back as JSON that parses to the same configuration.

use std::path::Path;

use cluster_node::config::ServerConfig;

/// Parses `data` as a configuration file.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("server.json");
    let Ok(config) = ServerConfig::parse(text, path) else {
        return;
    };
    let again =
        ServerConfig::parse(&config.to_json(), path).expect("a configuration written back parses");
    assert_eq!(again, config, "round trip");
    // Everything the daemon derives from it must not panic either.
    let _ = config.raft_config();
    let _ = config.driver_settings(1);
    let _ = config.allocator_config();
}

/// Words the stable runner splices into inputs.
pub const DICTIONARY: &[&[u8]] = &[
    b"\"cluster\"",
    b"\"secret\"",
    b"\"listen_multiaddress\"",
    b"\"/ip4/127.0.0.1/tcp/9096\"",
    b"\"30s\"",
    b"\"rest_api\"",
    b"\"basic_auth_credentials\"",
    b"\"metrics\"",
    b"\"ttl\"",
    b"\"repinning\"",
    b"{",
    b"}",
];
