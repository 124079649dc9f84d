//! `--host`: a multiaddress (`/ip4/127.0.0.1/tcp/9094`, as upstream) or an
//! `http://` URL, turned into the base URL the client needs.

use super::CliError;

/// The default API address (upstream's).
pub const DEFAULT_HOST: &str = "/ip4/127.0.0.1/tcp/9094";

/// The `http://host:port` base URL of `host`.
pub fn base_url(host: &str) -> Result<String, CliError> {
    let host = host.trim();
    let bad = |why: &str| CliError::Argument(format!("error parsing --host {host:?}: {why}"));
    if host.contains(',') {
        return Err(bad("only one API address is supported"));
    }
    if let Some(rest) = host.strip_prefix("http://") {
        if rest.is_empty() {
            return Err(bad("no host in the URL"));
        }
        return Ok(host.trim_end_matches('/').to_string());
    }
    if host.starts_with("https://") {
        return Err(bad("HTTPS is not supported yet; use http://"));
    }
    if !host.starts_with('/') {
        return Err(bad(
            "expected a multiaddress like /ip4/127.0.0.1/tcp/9094 or an http:// URL",
        ));
    }
    let parts: Vec<&str> = host.split('/').skip(1).collect();
    let (proto, addr, tcp, port, rest) = match parts.as_slice() {
        [proto, addr, tcp, port, rest @ ..] => (*proto, *addr, *tcp, *port, rest),
        _ => return Err(bad("expected /ip4|ip6|dns|dns4|dns6/<address>/tcp/<port>")),
    };
    let addr = match proto {
        "ip4" => addr
            .parse::<std::net::Ipv4Addr>()
            .map(|a| a.to_string())
            .map_err(|e| bad(&format!("bad IPv4 address: {e}")))?,
        "ip6" => addr
            .parse::<std::net::Ipv6Addr>()
            .map(|a| format!("[{a}]"))
            .map_err(|e| bad(&format!("bad IPv6 address: {e}")))?,
        "dns" | "dns4" | "dns6" if !addr.is_empty() => addr.to_string(),
        _ => return Err(bad(&format!("unsupported protocol /{proto}"))),
    };
    if tcp != "tcp" {
        return Err(bad("the API is reached over /tcp"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad(&format!("bad TCP port {port:?}")))?;
    match rest {
        [] | ["http"] => Ok(format!("http://{addr}:{port}")),
        ["https", ..] => Err(bad("HTTPS is not supported yet")),
        ["p2p", ..] => Err(bad("the libp2p-http transport is not supported")),
        _ => Err(bad("unexpected protocols after the port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiaddrs_and_urls_become_base_urls() {
        assert_eq!(base_url(DEFAULT_HOST).unwrap(), "http://127.0.0.1:9094");
        assert_eq!(base_url("/ip6/::1/tcp/80/http").unwrap(), "http://[::1]:80");
        assert_eq!(
            base_url("/dns4/cluster.local/tcp/9094").unwrap(),
            "http://cluster.local:9094"
        );
        assert_eq!(
            base_url("http://127.0.0.1:1234/").unwrap(),
            "http://127.0.0.1:1234"
        );
        for bad in [
            "",
            "localhost:9094",
            "/ip4/300.0.0.1/tcp/1",
            "/ip4/127.0.0.1/udp/1",
            "/ip4/127.0.0.1/tcp/99999",
            "/ip4/127.0.0.1/tcp/1/p2p/12D3Koo",
            "https://x",
            "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2",
        ] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }
}
