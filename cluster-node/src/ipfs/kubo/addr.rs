//! Where the daemon's API is: a multiaddr as config files give it
//! (upstream's `node_multiaddress`), or an `http://` URL.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ipfs::IpfsError;

fn bad(input: &str, why: &str) -> IpfsError {
    IpfsError::Config {
        reason: format!("API address {input:?}: {why}"),
    }
}

/// The `http://host:port` URL of an API multiaddr: `/ip4/<a>/tcp/<port>`,
/// `/ip6/<a>/tcp/<port>`, `/dns[4|6]/<name>/tcp/<port>`, optionally ending in
/// `/http`. TLS (`/https`, `/tls`) and unix sockets are not supported.
pub fn api_url_from_multiaddr(multiaddr: &str) -> Result<String, IpfsError> {
    let parts: Vec<&str> = multiaddr.split('/').collect();
    let (proto, host, tcp, port, rest) = match parts.as_slice() {
        ["", proto, host, tcp, port, rest @ ..] => (*proto, *host, *tcp, *port, rest),
        _ => return Err(bad(multiaddr, "expected /<ip4|ip6|dns>/<host>/tcp/<port>")),
    };
    if tcp != "tcp" {
        return Err(bad(multiaddr, "only tcp is supported"));
    }
    match rest {
        [] | ["http"] => {}
        ["https"] | ["tls", ..] => return Err(bad(multiaddr, "TLS is not supported")),
        _ => return Err(bad(multiaddr, "unexpected trailing components")),
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad(multiaddr, "the port is not a number in 0..65535"))?;
    let host = match proto {
        "ip4" => host
            .parse::<Ipv4Addr>()
            .map_err(|_| bad(multiaddr, "not an IPv4 address"))?
            .to_string(),
        "ip6" => format!(
            "[{}]",
            host.parse::<Ipv6Addr>()
                .map_err(|_| bad(multiaddr, "not an IPv6 address"))?
        ),
        "dns" | "dns4" | "dns6" => {
            let ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(bad(multiaddr, "not a DNS name"));
            }
            host.to_string()
        }
        "unix" => return Err(bad(multiaddr, "unix sockets are not supported")),
        _ => return Err(bad(multiaddr, "unknown protocol")),
    };
    Ok(format!("http://{host}:{port}"))
}

/// The API URL in the form requests are built from: a multiaddr turned into
/// a URL, an `http://host:port` URL without its trailing slash.
pub fn normalize_api_url(input: &str) -> Result<String, IpfsError> {
    let input = input.trim();
    if input.starts_with('/') {
        return api_url_from_multiaddr(input);
    }
    let Some(authority) = input.strip_prefix("http://") else {
        return Err(bad(input, "expected http://host:port or a multiaddr"));
    };
    let authority = authority.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(bad(input, "expected http://host:port with no path"));
    }
    let url = format!("http://{authority}");
    url.parse::<hyper::Uri>()
        .map_err(|e| bad(input, &e.to_string()))?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiaddrs_become_urls() {
        let ok = |m: &str| api_url_from_multiaddr(m).expect(m);
        assert_eq!(ok("/ip4/127.0.0.1/tcp/5001"), "http://127.0.0.1:5001");
        assert_eq!(ok("/ip4/127.0.0.1/tcp/5001/http"), "http://127.0.0.1:5001");
        assert_eq!(ok("/ip6/::1/tcp/5001"), "http://[::1]:5001");
        assert_eq!(ok("/dns4/ipfs.local/tcp/80"), "http://ipfs.local:80");
        assert_eq!(ok("/dns/localhost/tcp/5001"), "http://localhost:5001");
    }

    #[test]
    fn unusable_multiaddrs_are_config_errors() {
        for m in [
            "",
            "/",
            "/ip4/127.0.0.1",
            "/ip4/127.0.0.1/udp/5001",
            "/ip4/127.0.0.1/tcp/99999",
            "/ip4/127.0.0.1/tcp/x",
            "/ip4/300.0.0.1/tcp/5001",
            "/ip6/zz/tcp/5001",
            "/dns4/bad host/tcp/1",
            "/ip4/127.0.0.1/tcp/5001/https",
            "/ip4/127.0.0.1/tcp/5001/tls/http",
            "/unix/tmp/ipfs.sock/tcp/1",
            "/quic/1/tcp/1",
            "/ip4/127.0.0.1/tcp/5001/p2p/Qm",
        ] {
            assert!(
                matches!(api_url_from_multiaddr(m), Err(IpfsError::Config { .. })),
                "{m:?} was accepted"
            );
        }
    }

    #[test]
    fn urls_are_normalized() {
        assert_eq!(
            normalize_api_url("http://127.0.0.1:5001/").expect("url"),
            "http://127.0.0.1:5001"
        );
        assert_eq!(
            normalize_api_url(" /ip4/127.0.0.1/tcp/5001 ").expect("multiaddr"),
            "http://127.0.0.1:5001"
        );
        for bad in [
            "https://x:1",
            "127.0.0.1:5001",
            "http://",
            "http://h:1/api",
            "http://a b:1",
        ] {
            assert!(
                matches!(normalize_api_url(bad), Err(IpfsError::Config { .. })),
                "{bad:?} was accepted"
            );
        }
    }
}
