use super::*;

const SECRET: &str = "2f3a5d71c0b2e4f6a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";
const PEER: &str = "12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M";

fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
    ServerConfig::parse(text, Path::new("server.json"))
}

fn message(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_empty_document_gives_the_defaults_and_they_are_valid() {
    let config = parse("{}").expect("defaults");
    assert_eq!(config, ServerConfig::default());
    assert_eq!(
        config.cluster.listen_multiaddress,
        ["/ip4/127.0.0.1/tcp/9096"]
    );
    assert_eq!(config.rest_api.listen_address, "127.0.0.1:9094");
    assert_eq!(config.ipfs_proxy.listen_address, "127.0.0.1:9095");
    assert_eq!(config.pinning_service.listen_address, "127.0.0.1:9097");
    assert_eq!(
        config.ipfs_http.node_multiaddress,
        "/ip4/127.0.0.1/tcp/5001"
    );
    assert_eq!(config.cluster.replication_factor_min, -1);
    assert_eq!(config.cluster.replication_factor_max, -1);
    assert!(config.repinning.enabled);
    assert_eq!(config.expiry.interval, Duration::from_secs(10));
    assert_eq!(config.raft_config(), RaftConfig::default());
    assert_eq!(config.tracker_config().concurrent_pins, 10);
}

#[test]
fn a_written_config_reads_back_the_same() {
    let mut config = ServerConfig::default();
    config.cluster.secret = SECRET.to_string();
    config.cluster.cluster_peers = vec![format!("/ip4/127.0.0.1/tcp/9196/p2p/{PEER}")];
    config.metrics.interval = Duration::from_millis(1_500);
    config.repinning.enabled = false;
    let json = config.to_json();
    assert!(json.contains("\"interval\": \"1s 500ms\""), "{json}");
    assert_eq!(parse(&json).expect("round trip"), config);
}

#[test]
fn an_unknown_key_is_refused_by_its_path() {
    let m = message(r#"{"cluster": {"secrett": "x"}}"#);
    assert!(m.contains("cluster.secrett"), "{m}");
    assert!(m.contains("unknown field"), "{m}");
    let m = message(r#"{"nope": 1}"#);
    assert!(m.contains("nope"), "{m}");
}

#[test]
fn a_bad_secret_is_refused_naming_the_key() {
    let m = message(r#"{"cluster": {"secret": "abc"}}"#);
    assert!(
        m.contains("cluster.secret: expected 64 hex characters"),
        "{m}"
    );
    let not_hex = format!("{}zz", &SECRET[..62]);
    let m = message(&format!(r#"{{"cluster": {{"secret": "{not_hex}"}}}}"#));
    assert!(m.contains("cluster.secret"), "{m}");
    assert!(m.contains("hex"), "{m}");
    let config = parse(&format!(r#"{{"cluster": {{"secret": "{SECRET}"}}}}"#)).expect("good");
    assert!(config.secret().expect("secret").is_some());
}

#[test]
fn bad_addresses_are_refused_naming_the_key() {
    let m = message(r#"{"cluster": {"listen_multiaddress": ["/ip4/127.0.0.1/tcp/x"]}}"#);
    assert!(m.contains("cluster.listen_multiaddress[0]"), "{m}");
    let m = message(r#"{"cluster": {"cluster_peers": ["/ip4/127.0.0.1/tcp/9096"]}}"#);
    assert!(m.contains("cluster.cluster_peers[0]"), "{m}");
    assert!(m.contains("/p2p/"), "{m}");
    let m = message(r#"{"rest_api": {"listen_address": "localhost"}}"#);
    assert!(m.contains("rest_api.listen_address"), "{m}");
    let m = message(r#"{"ipfs_http": {"node_multiaddress": "127.0.0.1:5001"}}"#);
    assert!(m.contains("ipfs_http.node_multiaddress"), "{m}");
}

#[test]
fn a_bad_duration_is_refused_naming_the_key() {
    let m = message(r#"{"metrics": {"interval": "10 parsecs"}}"#);
    assert!(m.contains("metrics.interval"), "{m}");
    let m = message(r#"{"consensus": {"raft": {"heartbeat_interval": 5}}}"#);
    assert!(m.contains("consensus.raft.heartbeat_interval"), "{m}");
    let m = message(r#"{"metrics": {"ttl": "0s"}}"#);
    assert!(m.contains("metrics.ttl"), "{m}");
}

#[test]
fn raft_settings_are_checked_by_the_consensus_rules() {
    let m = message(
        r#"{"consensus": {"raft": {"heartbeat_interval": "1s", "election_timeout_min": "1s"}}}"#,
    );
    assert!(m.contains("consensus.raft"), "{m}");
    assert!(m.contains("election_timeout_min_ms"), "{m}");
    // A short membership limit still gives consistent derived settings.
    let config = parse(r#"{"consensus": {"raft": {"membership_timeout": "10s"}}}"#)
        .expect("short membership timeout");
    assert_eq!(config.raft_config().validate(), Ok(()));
}

#[test]
fn replication_defaults_are_checked() {
    let m = message(r#"{"cluster": {"replication_factor_min": 3, "replication_factor_max": 2}}"#);
    assert!(m.contains("cluster.replication_factor_min/max"), "{m}");
}

#[test]
fn peer_addresses_split_the_peer_id_from_the_dial_address() {
    let peer = PeerAddress::parse(&format!("/ip4/127.0.0.1/tcp/9196/p2p/{PEER}")).expect("parse");
    assert_eq!(peer.peer_id.as_str(), PEER);
    assert_eq!(peer.addr, "/ip4/127.0.0.1/tcp/9196");
}

#[test]
fn switched_off_repinning_never_runs_a_round() {
    let mut config = ServerConfig::default();
    config.repinning.enabled = false;
    assert_eq!(config.driver_settings(1).repair, None);
}

#[test]
fn the_pinning_service_takes_its_own_or_the_rest_apis_credentials() {
    let config = parse("{}").expect("defaults");
    assert!(config.pinning_service.enabled);
    assert_eq!(config.pinning_service.basic_auth(&config.rest_api), None);
    let inherited = parse(
        r#"{"rest_api": {"listen_address": "127.0.0.1:9094",
            "basic_auth_credentials": {"alice": "pw"}}}"#,
    )
    .expect("rest credentials");
    assert_eq!(
        inherited.pinning_service.basic_auth(&inherited.rest_api),
        Some(("alice".to_string(), "pw".to_string()))
    );
    let own = parse(
        r#"{"rest_api": {"listen_address": "127.0.0.1:9094",
            "basic_auth_credentials": {"alice": "pw"}},
            "pinning_service": {"listen_address": "127.0.0.1:9097", "enabled": false,
            "basic_auth_credentials": {"bob": "pw2"}, "access_tokens": ["tok-1"]}}"#,
    )
    .expect("own credentials");
    let section = &own.pinning_service;
    assert!(!section.enabled);
    assert_eq!(
        section.basic_auth(&own.rest_api),
        Some(("bob".to_string(), "pw2".to_string()))
    );
    assert_eq!(section.access_tokens, ["tok-1"]);
    assert!(!format!("{section:?}").contains("pw2") && !format!("{section:?}").contains("tok-1"));
    assert_eq!(parse(&own.to_json()).expect("round trip"), own);
    let listen = r#""listen_address": "127.0.0.1:9097""#;
    for (section, key) in [
        (
            format!(r#"{listen}, "access_tokens": ["a b"]"#),
            "pinning_service.access_tokens[0]",
        ),
        (
            format!(r#"{listen}, "access_tokens": ["ok", ""]"#),
            "pinning_service.access_tokens[1]",
        ),
        (
            format!(r#"{listen}, "basic_auth_credentials": {{}}"#),
            "pinning_service.basic_auth_credentials",
        ),
        (
            format!(r#"{listen}, "basic_auth_credentials": {{"a": ""}}"#),
            "pinning_service.basic_auth_credentials",
        ),
        (
            r#""listen_address": "nope""#.to_string(),
            "pinning_service.listen_address",
        ),
    ] {
        let m = message(&format!(r#"{{"pinning_service": {{{section}}}}}"#));
        assert!(m.contains(key), "{section}: {m}");
    }
}

#[test]
fn the_ipfs_proxy_forwards_to_its_own_node_or_the_connectors() {
    let config = parse(r#"{"ipfs_proxy": {"listen_address": "127.0.0.1:19095"}}"#).expect("ok");
    assert_eq!(
        config.ipfs_proxy_node_url().expect("url"),
        "http://127.0.0.1:5001"
    );
    assert_eq!(
        config.ipfs_proxy.extract_headers_ttl,
        Duration::from_secs(300)
    );
    let config = parse(
        r#"{"ipfs_proxy": {"listen_address": "127.0.0.1:9095",
            "node_multiaddress": "/ip4/127.0.0.1/tcp/5999", "extract_headers_ttl": "0s"}}"#,
    )
    .expect("ok");
    assert_eq!(
        config.ipfs_proxy_node_url().expect("url"),
        "http://127.0.0.1:5999"
    );
    assert_eq!(parse(&config.to_json()).expect("round trip"), config);
    let m = message(
        r#"{"ipfs_proxy": {"listen_address": "127.0.0.1:9095", "node_multiaddress": "/ip4/x/tcp/1"}}"#,
    );
    assert!(m.contains("ipfs_proxy.node_multiaddress"), "{m}");
    let m = message(
        r#"{"ipfs_proxy": {"listen_address": "127.0.0.1:9095", "extract_headers_extra": ["bad header"]}}"#,
    );
    assert!(m.contains("ipfs_proxy.extract_headers_extra[0]"), "{m}");
}

#[test]
fn metrics_are_off_by_default_and_add_uploads_are_bounded() {
    let config = parse("{}").expect("defaults");
    assert!(!config.observations.enable_stats);
    assert_eq!(config.observations.metrics_listen_address, "127.0.0.1:8888");
    assert_eq!(
        config.rest_api.max_add_bytes,
        crate::api::rest::DEFAULT_MAX_ADD_BYTES
    );
    let config = parse(
        r#"{"observations": {"enable_stats": true},
            "rest_api": {"listen_address": "127.0.0.1:9094", "max_add_bytes": 1000}}"#,
    )
    .expect("parse");
    assert!(config.observations.enable_stats);
    assert_eq!(config.rest_api.max_add_bytes, 1000);
}
