//! Checks of what the user typed, done before any request so a typo never
//! reaches the cluster. Messages follow upstream's `error parsing …` words.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_core::{Cid, PeerId, PinType, TrackerStatus};

use super::CliError;

/// A CID argument (`/ipfs/<cid>` is accepted too: upstream sends paths).
pub fn cid(text: &str) -> Result<Cid, CliError> {
    let bare = text.strip_prefix("/ipfs/").unwrap_or(text);
    Cid::parse(bare).map_err(|e| CliError::Argument(format!("error parsing cid: {e}")))
}

/// A cluster peer id argument.
pub fn peer(text: &str) -> Result<PeerId, CliError> {
    PeerId::parse(text).map_err(|e| CliError::Argument(format!("error parsing peer ID: {e}")))
}

/// `--allocations id,id`: every id must decode (spaces trimmed).
pub fn allocations(list: &[String]) -> Result<Vec<PeerId>, CliError> {
    list.iter()
        .flat_map(|item| item.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            PeerId::parse(s).map_err(|e| {
                CliError::Argument(format!(
                    "error decoding allocations: some peer IDs could not be decoded ({e})"
                ))
            })
        })
        .collect()
}

/// `--metadata key=value`, repeatable.
pub fn metadata(items: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), v.to_string());
            }
            _ => {
                return Err(CliError::Argument(format!(
                    "error parsing metadata: metadata were not in the format key=value ({item:?})"
                )))
            }
        }
    }
    Ok(out)
}

/// `status --filter a,b`: tracker statuses (aliases `error`, `queued` included).
pub fn status_filter(text: &str) -> Result<Vec<TrackerStatus>, CliError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            TrackerStatus::parse(s).ok_or_else(|| {
                CliError::Argument(format!(
                    "error parsing filter flag: invalid filter name {s:?}"
                ))
            })
        })
        .collect()
}

/// `pin ls --filter`: pin types; `all` (the default) means no filter.
pub fn pin_type_filter(text: &str) -> Result<Vec<PinType>, CliError> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match name {
            "all" => return Ok(Vec::new()),
            "pin" => out.push(PinType::Data),
            "meta-pin" => out.push(PinType::Meta),
            "clusterdag-pin" => out.push(PinType::ClusterDag),
            "shard-pin" => out.push(PinType::Shard),
            other => {
                return Err(CliError::Argument(format!(
                    "error parsing filter flag: invalid pin type {other:?} \
                     (pin, meta-pin, clusterdag-pin, shard-pin, all)"
                )))
            }
        }
    }
    Ok(out)
}

/// `--basic-auth user[:password]`.
pub fn basic_auth(text: &str) -> Result<(String, String), CliError> {
    let (user, pass) = text.split_once(':').unwrap_or((text, ""));
    if user.is_empty() {
        return Err(CliError::Argument(
            "error parsing --basic-auth: expected <user>[:<password>]".into(),
        ));
    }
    Ok((user.to_string(), pass.to_string()))
}

/// A duration flag: a human duration (`30s`, `1h30m`, `2m 10s`) or a bare
/// number of seconds (upstream's `--timeout`). `what` names the flag.
pub fn duration(what: &str, text: &str) -> Result<Duration, CliError> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| CliError::Argument(format!("error parsing {what} {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_before_any_request() {
        let c = "QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq";
        assert_eq!(cid(c).unwrap().to_string(), c);
        assert_eq!(cid(&format!("/ipfs/{c}")).unwrap().to_string(), c);
        let e = cid("notacid").unwrap_err();
        assert!(e.to_string().starts_with("error parsing cid"), "{e}");
        assert!(peer("nope").is_err());
        let id = "12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M";
        assert_eq!(allocations(&[format!("{id}, {id}")]).unwrap().len(), 2);
        assert!(allocations(&["x".into()]).is_err());
        let m = metadata(&["a=b".into(), "c=d=e".into()]).unwrap();
        assert_eq!(m["c"], "d=e");
        assert!(metadata(&["nokey".into()]).is_err());
        assert_eq!(
            status_filter("pinned, error").unwrap(),
            vec![TrackerStatus::Pinned, TrackerStatus::Error]
        );
        assert!(status_filter("pined").is_err());
        assert!(pin_type_filter("all").unwrap().is_empty());
        assert_eq!(pin_type_filter("pin").unwrap(), vec![PinType::Data]);
        assert!(pin_type_filter("pins").is_err());
        assert_eq!(basic_auth("u:p:q").unwrap(), ("u".into(), "p:q".into()));
        assert!(basic_auth(":p").is_err());
        assert_eq!(duration("t", "30").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("t", "1h30m").unwrap(), Duration::from_secs(5400));
        assert!(duration("t", "soon").is_err());
    }
}
