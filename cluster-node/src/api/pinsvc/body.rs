//! Request bodies (`POST /pins`, `POST /pins/{requestid}`) → a checked
//! [`NewPin`]. `cid` is required; `name` is at most 255 characters;
//! `origins` are multiaddrs with `/p2p/` (the first 20 are kept); `meta` is an object of
//! strings within the pinset's bounds. `null` fields count as absent and
//! unknown fields are ignored. Every refusal is a 400.

use std::collections::BTreeMap;

use cluster_core::pin::{METADATA_ENTRIES_MAX, METADATA_FIELD_MAX_BYTES};
use cluster_core::{Cid, PinOptions};
use serde::Deserialize;

use super::error::PinSvcError;
use super::query::NAME_MAX_CHARS;

/// Most origins kept of one pin request (the spec's bound). Kubo sends
/// every address of its host, often more: the rest are dropped (they are
/// hints), not refused.
pub const ORIGINS_MAX: usize = 20;

/// A pin request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPin {
    /// The content.
    pub cid: Cid,
    /// Its name (`""`: none).
    pub name: String,
    /// Multiaddrs (with `/p2p/`) of peers that have it.
    pub origins: Vec<String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
}

impl NewPin {
    /// The cluster pin options it asks for: cluster defaults for the rest.
    pub fn options(&self) -> PinOptions {
        PinOptions {
            name: self.name.clone(),
            origins: self.origins.clone(),
            metadata: self.meta.clone(),
            ..PinOptions::default()
        }
    }
}

#[derive(Deserialize)]
struct RawPin {
    #[serde(default)]
    cid: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    origins: Option<Vec<String>>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
}

/// Parses and checks a JSON pin object.
pub fn parse(bytes: &[u8]) -> Result<NewPin, PinSvcError> {
    let bad = |reason: String| PinSvcError::BadBody(reason);
    let raw: RawPin = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let cid_text = raw
        .cid
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| bad("the pin has no cid".to_string()))?;
    let cid = Cid::parse(cid_text.trim()).map_err(|e| bad(e.to_string()))?;
    let name = raw.name.unwrap_or_default();
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(bad(format!("pin name is over {NAME_MAX_CHARS} chars")));
    }
    let mut origins = raw.origins.unwrap_or_default();
    for origin in &origins {
        if !origin.starts_with('/') || !origin.contains("/p2p/") {
            let shown: String = origin.chars().take(100).collect();
            return Err(bad(format!(
                "origin {shown:?} is not a multiaddress with /p2p/"
            )));
        }
        if origin.len() > METADATA_FIELD_MAX_BYTES {
            return Err(bad(format!(
                "an origin is over {METADATA_FIELD_MAX_BYTES} bytes"
            )));
        }
    }
    origins.truncate(ORIGINS_MAX);
    let meta = raw.meta.unwrap_or_default();
    if meta.len() > METADATA_ENTRIES_MAX {
        return Err(bad(format!(
            "more than {METADATA_ENTRIES_MAX} meta entries"
        )));
    }
    if meta
        .iter()
        .any(|(k, v)| k.len() > METADATA_FIELD_MAX_BYTES || v.len() > METADATA_FIELD_MAX_BYTES)
    {
        return Err(bad(format!(
            "a meta key or value is over {METADATA_FIELD_MAX_BYTES} bytes"
        )));
    }
    if meta.keys().any(String::is_empty) {
        return Err(bad("a meta key is empty".to_string()));
    }
    Ok(NewPin {
        cid,
        name,
        origins,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    const ORIGIN: &str =
        "/ip4/203.0.113.9/tcp/4001/p2p/12D3KooWKuJ8LPTyHbyX4nt4C7uWmUobzFsiceTVoFw7HpmoNakM";

    #[test]
    fn the_references_example_parses() {
        let body = format!(
            r#"{{"cid":"{CID}","name":"backup","origins":["{ORIGIN}"],"meta":{{"owner":"alice"}},"extra":1}}"#
        );
        let pin = parse(body.as_bytes()).expect("ok");
        assert_eq!(pin.cid.to_string(), CID);
        assert_eq!(pin.name, "backup");
        assert_eq!(pin.origins, vec![ORIGIN.to_string()]);
        let options = pin.options();
        assert_eq!(
            options.metadata.get("owner").map(String::as_str),
            Some("alice")
        );
        assert_eq!(options.origins.len(), 1);
        assert_eq!(options.replication_factor_min, 0, "cluster default");
        let bare = parse(format!(r#"{{"cid":"{CID}","name":null,"meta":null}}"#).as_bytes())
            .expect("nulls are absent");
        assert!(bare.name.is_empty() && bare.meta.is_empty() && bare.origins.is_empty());
    }

    #[test]
    fn bad_bodies_are_refused() {
        let long = "n".repeat(NAME_MAX_CHARS + 1);
        let many: Vec<String> = (0..=ORIGINS_MAX).map(|_| format!("\"{ORIGIN}\"")).collect();
        for body in [
            String::new(),
            "[]".to_string(),
            "{".to_string(),
            "{}".to_string(),
            r#"{"cid":null}"#.to_string(),
            r#"{"cid":""}"#.to_string(),
            r#"{"cid":"notacid"}"#.to_string(),
            r#"{"cid":7}"#.to_string(),
            format!(r#"{{"cid":"{CID}","name":"{long}"}}"#),
            format!(r#"{{"cid":"{CID}","name":5}}"#),
            format!(r#"{{"cid":"{CID}","origins":["/ip4/1.2.3.4/tcp/1"]}}"#),
            format!(r#"{{"cid":"{CID}","origins":"{ORIGIN}"}}"#),
            format!(r#"{{"cid":"{CID}","meta":{{"n":1}}}}"#),
            format!(r#"{{"cid":"{CID}","meta":{{"":"x"}}}}"#),
            format!(r#"{{"cid":"{CID}","meta":["x"]}}"#),
        ] {
            let e = parse(body.as_bytes()).expect_err(&body);
            assert!(matches!(e, PinSvcError::BadBody(_)), "{body}: {e}");
            assert!(e.to_string().starts_with("error decoding request body: "));
        }
        let many_origins = format!(r#"{{"cid":"{CID}","origins":[{}]}}"#, many.join(","));
        let kept = parse(many_origins.as_bytes()).expect("more origins than kept is fine");
        assert_eq!(kept.origins.len(), ORIGINS_MAX);
        let bad_late = format!(
            r#"{{"cid":"{CID}","origins":[{},"/ip4/1.2.3.4/tcp/1"]}}"#,
            many.join(",")
        );
        assert!(
            parse(bad_late.as_bytes()).is_err(),
            "every origin is checked"
        );
        let name_max = "é".repeat(NAME_MAX_CHARS);
        assert!(parse(format!(r#"{{"cid":"{CID}","name":"{name_max}"}}"#).as_bytes()).is_ok());
    }
}
