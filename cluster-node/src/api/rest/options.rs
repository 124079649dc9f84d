//! Query strings → typed requests: pin options (rest-api.md §6.1), status
//! and pin-type filters, `local`, and the cursor pagination this server
//! adds (`limit`, `after`). Every bad value is refused with a 400 naming
//! its parameter; unknown parameters are ignored, as upstream does.

use cluster_core::pin::{
    ALLOCATIONS_MAX, METADATA_ENTRIES_MAX, METADATA_FIELD_MAX_BYTES, NAME_MAX_BYTES, ORIGINS_MAX,
};
use cluster_core::{Cid, Millis, PeerId, PinMode, PinOptions, PinType, TrackerStatus};

use super::error::ApiError;
use crate::api::time;

/// Most query parameters one request may carry.
pub const QUERY_PAIRS_MAX: usize = 1_024;
/// Most CIDs one `?cids=` may list.
pub const CIDS_MAX: usize = 10_000;

/// The decoded query string, in order.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Decodes `raw` (`None`: no query string).
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .take(QUERY_PAIRS_MAX + 1)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.len() > QUERY_PAIRS_MAX {
            return Err(ApiError::param(
                "query",
                format!("more than {QUERY_PAIRS_MAX} parameters"),
            ));
        }
        Ok(Query { pairs })
    }

    /// The last value of `name`, if given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// `local`: true only for the exact string `true` (upstream's rule).
    pub fn local(&self) -> bool {
        self.get("local") == Some("true")
    }

    /// The statuses `filter` names (empty: all).
    pub fn status_filter(&self) -> Result<Vec<TrackerStatus>, ApiError> {
        let Some(text) = self.get("filter") else {
            return Ok(Vec::new());
        };
        let found: Vec<TrackerStatus> = text.split(',').filter_map(TrackerStatus::parse).collect();
        if found.is_empty() && !text.trim().is_empty() {
            return Err(ApiError::BadFilter(text.chars().take(100).collect()));
        }
        Ok(found)
    }

    /// The pin types `filter` names (empty: all).
    pub fn type_filter(&self) -> Result<Vec<PinType>, ApiError> {
        let Some(text) = self.get("filter") else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        let mut all = false;
        for name in text.split(',').map(str::trim) {
            match name {
                "pin" => found.push(PinType::Data),
                "meta-pin" => found.push(PinType::Meta),
                "clusterdag-pin" => found.push(PinType::ClusterDag),
                "shard-pin" => found.push(PinType::Shard),
                "all" => all = true,
                _ => {}
            }
        }
        if found.is_empty() && !all {
            return Err(ApiError::BadFilter(text.chars().take(100).collect()));
        }
        Ok(if all { Vec::new() } else { found })
    }

    /// `cids=c1,c2,…` (`None` when absent).
    pub fn cids(&self) -> Result<Option<Vec<Cid>>, ApiError> {
        let Some(text) = self.get("cids") else {
            return Ok(None);
        };
        let cids: Vec<Cid> = text
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .take(CIDS_MAX + 1)
            .map(parse_cid)
            .collect::<Result<_, _>>()?;
        if cids.len() > CIDS_MAX {
            return Err(ApiError::param(
                "cids",
                format!("more than {CIDS_MAX} CIDs"),
            ));
        }
        Ok(Some(cids))
    }

    /// The page this server adds to listings: at most `limit` items after
    /// the CID `after` (both optional).
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match self.get("limit") {
            None => None,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(ApiError::param("limit", "not a positive integer")),
            },
        };
        let after = self
            .get("after")
            .map(|c| Cid::parse(c).map_err(|e| ApiError::param("after", e)))
            .transpose()?;
        Ok(Page { limit, after })
    }

    /// The pin options (§6.1); `now` for `expire-in`.
    pub fn pin_options(&self, now: Millis) -> Result<PinOptions, ApiError> {
        let mut o = PinOptions::default();
        if let Some(name) = self.get("name") {
            bounded("name", name.len(), NAME_MAX_BYTES, "bytes")?;
            o.name = name.to_string();
        }
        if self.get("mode") == Some("direct") {
            o.mode = PinMode::Direct;
        }
        o.replication_factor_min = self.int("replication-min")?.unwrap_or(0);
        o.replication_factor_max = self.int("replication-max")?.unwrap_or(0);
        if let Some(both) = self.int("replication")? {
            o.replication_factor_min = both;
            o.replication_factor_max = both;
        }
        if let Some(size) = self.get("shard-size") {
            o.shard_size = size
                .parse()
                .map_err(|_| ApiError::param("shard-size", "not an unsigned integer"))?;
        }
        if let Some(list) = self.get("user-allocations") {
            let peers: Vec<PeerId> = list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .take(ALLOCATIONS_MAX + 1)
                .map(|p| PeerId::parse(p).map_err(|e| ApiError::param("user-allocations", e)))
                .collect::<Result<_, _>>()?;
            bounded("user-allocations", peers.len(), ALLOCATIONS_MAX, "peers")?;
            o.user_allocations = peers;
        }
        o.expire_at = self.expiry(now)?;
        for (key, value) in &self.pairs {
            let Some(meta) = key.strip_prefix("meta-").filter(|k| !k.is_empty()) else {
                continue;
            };
            bounded(
                key,
                meta.len(),
                METADATA_FIELD_MAX_BYTES,
                "bytes in the key",
            )?;
            bounded(key, value.len(), METADATA_FIELD_MAX_BYTES, "bytes")?;
            o.metadata.insert(meta.to_string(), value.clone());
            bounded("meta-*", o.metadata.len(), METADATA_ENTRIES_MAX, "entries")?;
        }
        if let Some(from) = self.get("pin-update") {
            o.pin_update = Some(Cid::parse(from).map_err(|e| {
                ApiError::param("pin-update", format!("error decoding update option: {e}"))
            })?);
        }
        if let Some(list) = self.get("origins") {
            for origin in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                if !origin.starts_with('/') || !origin.contains("/p2p/") {
                    return Err(ApiError::param(
                        "origins",
                        format!("{origin:?} is not a multiaddress with /p2p/"),
                    ));
                }
                bounded("origins", origin.len(), METADATA_FIELD_MAX_BYTES, "bytes")?;
                o.origins.push(origin.to_string());
                bounded("origins", o.origins.len(), ORIGINS_MAX, "entries")?;
            }
        }
        Ok(o)
    }

    fn int(&self, name: &str) -> Result<Option<i32>, ApiError> {
        self.get(name)
            .map(|v| v.trim().parse::<i32>())
            .transpose()
            .map_err(|_| ApiError::param(name, "not an integer"))
    }

    /// `expire-at` (RFC 3339), else `expire-in` (a Go duration, ≥ 1 s).
    fn expiry(&self, now: Millis) -> Result<Option<Millis>, ApiError> {
        if let Some(at) = self.get("expire-at") {
            return time::parse(at).map_err(|e| ApiError::param("expire-at", e));
        }
        let Some(text) = self.get("expire-in") else {
            return Ok(None);
        };
        let ms = parse_duration_ms(text)
            .ok_or_else(|| ApiError::param("expire-in", "not a duration like 1h30m"))?;
        if ms < 1_000 {
            return Err(ApiError::param(
                "expire-in",
                "duration too short (under 1s)",
            ));
        }
        Ok(Some(now.plus(ms)))
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Most items to stream.
    pub limit: Option<usize>,
    /// Start after this CID.
    pub after: Option<Cid>,
}

/// Parses a CID from a path or query, naming it when it does not parse.
pub fn parse_cid(text: &str) -> Result<Cid, ApiError> {
    Cid::parse(text).map_err(|e| ApiError::BadCid(e.to_string()))
}

fn bounded(name: &str, got: usize, max: usize, unit: &str) -> Result<(), ApiError> {
    if got > max {
        return Err(ApiError::param(name, format!("more than {max} {unit}")));
    }
    Ok(())
}

/// A Go duration (`1h30m`, `90s`, `1.5h`, `250ms`) in milliseconds.
fn parse_duration_ms(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * unit_ms;
    }
    // Ten thousand years is plenty; beyond that the value is a mistake.
    (total.is_finite() && total < 3.2e14).then_some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Query {
        Query::parse(Some(raw)).expect("query")
    }

    #[test]
    fn pin_options_from_the_query() {
        let o = q("replication-min=2&replication-max=3&name=backup&meta-owner=alice&mode=direct&expire-at=2030-01-01T00:00:00Z&origins=/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M&unknown=1")
            .pin_options(Millis(0))
            .expect("options");
        assert_eq!((o.replication_factor_min, o.replication_factor_max), (2, 3));
        assert_eq!(o.name, "backup");
        assert_eq!(o.mode, PinMode::Direct);
        assert_eq!(o.metadata.get("owner").map(String::as_str), Some("alice"));
        assert_eq!(o.expire_at, Some(Millis(1_893_456_000_000)));
        assert_eq!(o.origins.len(), 1);
        let o = q("replication=4&replication-min=1")
            .pin_options(Millis(0))
            .expect("ok");
        assert_eq!((o.replication_factor_min, o.replication_factor_max), (4, 4));
        let o = q("expire-in=1h30m").pin_options(Millis(1_000)).expect("ok");
        assert_eq!(o.expire_at, Some(Millis(1_000 + 5_400_000)));
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (raw, name) in [
            ("replication-min=two", "replication-min"),
            ("replication-max=1.5", "replication-max"),
            ("shard-size=-1", "shard-size"),
            ("expire-at=tomorrow", "expire-at"),
            ("expire-in=10", "expire-in"),
            ("expire-in=500ms", "expire-in"),
            ("pin-update=nope", "pin-update"),
            ("user-allocations=nobody", "user-allocations"),
            ("origins=/ip4/1.2.3.4/tcp/1", "origins"),
        ] {
            let e = q(raw).pin_options(Millis(0)).expect_err(raw);
            assert!(
                matches!(&e, ApiError::BadParam { name: n, .. } if n == name),
                "{raw}: {e}"
            );
        }
        let long = format!("name={}", "x".repeat(NAME_MAX_BYTES + 1));
        assert!(q(&long).pin_options(Millis(0)).is_err());
    }

    #[test]
    fn filters_local_and_pages() {
        assert_eq!(
            q("filter=pinned,%20error,bogus")
                .status_filter()
                .expect("ok"),
            vec![TrackerStatus::Pinned, TrackerStatus::Error]
        );
        assert!(q("filter=bogus").status_filter().is_err());
        assert!(q("").status_filter().expect("ok").is_empty());
        assert_eq!(
            q("filter=pin").type_filter().expect("ok"),
            vec![PinType::Data]
        );
        assert!(q("filter=all").type_filter().expect("ok").is_empty());
        assert!(q("filter=nope").type_filter().is_err());
        assert!(q("local=true").local());
        assert!(!q("local=1").local());
        assert!(q("limit=0").page().is_err());
        assert!(q("after=xyz").page().is_err());
        assert_eq!(q("limit=5").page().expect("ok").limit, Some(5));
        assert!(q("cids=QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq,bad")
            .cids()
            .is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("1.5h"), Some(5_400_000));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("10"), None);
        assert_eq!(parse_duration_ms("5d"), None);
        assert_eq!(parse_duration_ms(""), None);
    }
}
