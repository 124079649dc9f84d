//! `GET /pins` query strings → a [`ListQuery`], and which pins it admits.
//!
//! Bounds and defaults are the spec's: `cid` lists at most 10 CIDs,
//! `name` at most 255 characters, `limit` is 1 to 1000 (10 by default),
//! `status` defaults to `pinned`. Every bad value is a 400 naming its
//! parameter; unknown parameters are ignored.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::{Cid, Millis, Pin};

use super::error::PinSvcError;
use super::types::ServiceStatus;
use crate::api::rest::options::Query;
use crate::api::time;

/// Most CIDs one `cid=` may list.
pub const CIDS_MAX: usize = 10;
/// Results when no `limit` is given.
pub const LIMIT_DEFAULT: usize = 10;
/// Largest `limit`.
pub const LIMIT_MAX: usize = 1000;
/// Longest `name` (in a query or a pin), in characters.
pub const NAME_MAX_CHARS: usize = 255;

/// How `name` is compared with pin names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameMatch {
    /// Equal, case-sensitive (the default).
    #[default]
    Exact,
    /// Equal, case-insensitive.
    IExact,
    /// Contained, case-sensitive.
    Partial,
    /// Contained, case-insensitive.
    IPartial,
}

impl NameMatch {
    /// Parses the `match` parameter.
    pub fn parse(text: &str) -> Option<NameMatch> {
        match text {
            "exact" => Some(NameMatch::Exact),
            "iexact" => Some(NameMatch::IExact),
            "partial" => Some(NameMatch::Partial),
            "ipartial" => Some(NameMatch::IPartial),
            _ => None,
        }
    }

    /// Whether `name` passes the filter `wanted`.
    pub fn matches(self, wanted: &str, name: &str) -> bool {
        match self {
            NameMatch::Exact => name == wanted,
            NameMatch::IExact => name.to_lowercase() == wanted.to_lowercase(),
            NameMatch::Partial => name.contains(wanted),
            NameMatch::IPartial => name.to_lowercase().contains(&wanted.to_lowercase()),
        }
    }
}

/// A parsed `GET /pins` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only these CIDs (empty: any).
    pub cids: Vec<Cid>,
    /// Only pins whose name matches (see `name_match`).
    pub name: Option<String>,
    /// How `name` is compared.
    pub name_match: NameMatch,
    /// Only pins in one of these states (never empty).
    pub statuses: BTreeSet<ServiceStatus>,
    /// Only pins created strictly before.
    pub before: Option<Millis>,
    /// Only pins created strictly after.
    pub after: Option<Millis>,
    /// Most results.
    pub limit: usize,
    /// Only pins whose metadata holds every one of these pairs.
    pub meta: BTreeMap<String, String>,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            cids: Vec::new(),
            name: None,
            name_match: NameMatch::Exact,
            statuses: BTreeSet::from([ServiceStatus::Pinned]),
            before: None,
            after: None,
            limit: LIMIT_DEFAULT,
            meta: BTreeMap::new(),
        }
    }
}

impl ListQuery {
    /// Parses the raw query string (`None`: none).
    pub fn parse(raw: Option<&str>) -> Result<ListQuery, PinSvcError> {
        let query = Query::parse(raw).map_err(|e| PinSvcError::param("query", e))?;
        let mut out = ListQuery::default();
        if let Some(list) = query.get("cid") {
            for text in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                let cid = Cid::parse(text).map_err(|e| PinSvcError::param("cid", e))?;
                if !out.cids.contains(&cid) {
                    out.cids.push(cid);
                }
                if out.cids.len() > CIDS_MAX {
                    return Err(PinSvcError::param(
                        "cid",
                        format!("more than {CIDS_MAX} CIDs"),
                    ));
                }
            }
        }
        if let Some(name) = query.get("name") {
            if name.chars().count() > NAME_MAX_CHARS {
                return Err(PinSvcError::param(
                    "name",
                    format!("longer than {NAME_MAX_CHARS} characters"),
                ));
            }
            out.name = Some(name.to_string());
        }
        if let Some(text) = query.get("match") {
            out.name_match = NameMatch::parse(text).ok_or_else(|| {
                PinSvcError::param(
                    "match",
                    format!("{:?} is not exact, iexact, partial or ipartial", cut(text)),
                )
            })?;
        }
        if let Some(list) = query.get("status") {
            let mut statuses = BTreeSet::new();
            for text in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let status = ServiceStatus::parse(text).ok_or_else(|| {
                    PinSvcError::param(
                        "status",
                        format!("{:?} is not queued, pinning, pinned or failed", cut(text)),
                    )
                })?;
                statuses.insert(status);
            }
            if statuses.is_empty() {
                return Err(PinSvcError::param("status", "no valid filter"));
            }
            out.statuses = statuses;
        }
        if let Some(text) = query.get("before") {
            // Go's zero time is "no time": nothing was created before it.
            let at = time::parse(text).map_err(|e| PinSvcError::param("before", e))?;
            out.before = Some(at.unwrap_or(Millis(0)));
        }
        if let Some(text) = query.get("after") {
            out.after = time::parse(text).map_err(|e| PinSvcError::param("after", e))?;
        }
        if let Some(text) = query.get("limit") {
            out.limit = match text.trim().parse::<usize>() {
                Ok(n) if (1..=LIMIT_MAX).contains(&n) => n,
                _ => {
                    return Err(PinSvcError::param(
                        "limit",
                        format!("{:?} is not an integer from 1 to {LIMIT_MAX}", cut(text)),
                    ))
                }
            };
        }
        if let Some(text) = query.get("meta") {
            out.meta = serde_json::from_str(text).map_err(|e| {
                PinSvcError::param("meta", format!("not a JSON object of strings: {e}"))
            })?;
        }
        Ok(out)
    }

    /// Whether `pin` passes every filter but the status (which needs the
    /// peers' trackers).
    pub fn admits(&self, pin: &Pin) -> bool {
        if !self.cids.is_empty() && !self.cids.contains(&pin.cid) {
            return false;
        }
        if let Some(wanted) = &self.name {
            if !self.name_match.matches(wanted, &pin.options.name) {
                return false;
            }
        }
        if self.before.is_some_and(|before| pin.timestamp >= before) {
            return false;
        }
        if self.after.is_some_and(|after| pin.timestamp <= after) {
            return false;
        }
        self.meta
            .iter()
            .all(|(k, v)| pin.options.metadata.get(k) == Some(v))
    }
}

/// At most 64 characters of `text`, for messages.
fn cut(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use cluster_core::PinOptions;

    use super::*;

    const A: &str = "QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq";
    const B: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

    fn q(raw: &str) -> Result<ListQuery, PinSvcError> {
        ListQuery::parse(Some(raw))
    }

    fn param_of(e: PinSvcError) -> &'static str {
        match e {
            PinSvcError::BadParam { name, .. } => name,
            other => panic!("not a parameter error: {other}"),
        }
    }

    fn pin(cid: &str, name: &str, at: u64, meta: &[(&str, &str)]) -> Pin {
        let options = PinOptions {
            name: name.into(),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PinOptions::default()
        };
        Pin::new(Cid::parse(cid).expect("cid"), options, Millis(at))
    }

    #[test]
    fn defaults_are_the_specs() {
        let d = ListQuery::parse(None).expect("ok");
        assert_eq!(d, ListQuery::default());
        assert_eq!(d.limit, 10);
        assert_eq!(d.statuses, BTreeSet::from([ServiceStatus::Pinned]));
        assert_eq!(q("").expect("ok"), d);
        assert_eq!(q("unknown=1&limit=").expect("ok"), d);
    }

    #[test]
    fn every_parameter_is_read() {
        let raw = format!(
            "cid={A},{B},{A}&name=Back&match=ipartial&status=queued,failed&before=2030-01-01T00:00:00Z\
             &after=2024-05-06T10:12:45.5Z&limit=1000&meta=%7B%22owner%22%3A%22alice%22%7D"
        );
        let got = q(&raw).expect("ok");
        assert_eq!(got.cids.len(), 2, "duplicates collapse");
        assert_eq!(got.name.as_deref(), Some("Back"));
        assert_eq!(got.name_match, NameMatch::IPartial);
        assert_eq!(
            got.statuses,
            BTreeSet::from([ServiceStatus::Queued, ServiceStatus::Failed])
        );
        assert_eq!(got.before, Some(Millis(1_893_456_000_000)));
        assert_eq!(got.after, Some(Millis(1_714_990_365_500)));
        assert_eq!(got.limit, 1000);
        assert_eq!(got.meta.get("owner").map(String::as_str), Some("alice"));
    }

    #[test]
    fn bad_values_name_their_parameter() {
        let eleven: Vec<String> = (1..=11u8)
            .map(|n| {
                let mut bytes = vec![0x12, 0x20];
                bytes.extend_from_slice(&[n; 32]);
                Cid::from_bytes(&bytes).expect("cid").to_string()
            })
            .collect();
        let ten = format!("cid={}", eleven[..10].join(","));
        assert_eq!(q(&ten).expect("ten CIDs are fine").cids.len(), 10);
        let long = format!("name={}", "é".repeat(NAME_MAX_CHARS + 1));
        assert!(q(&format!("name={}", "é".repeat(NAME_MAX_CHARS))).is_ok());
        for (raw, name) in [
            (format!("cid={}", eleven.join(",")), "cid"),
            ("cid=notacid".to_string(), "cid"),
            (format!("cid={A},nope"), "cid"),
            (long, "name"),
            ("match=fuzzy".to_string(), "match"),
            ("status=pinned,done".to_string(), "status"),
            ("status=,".to_string(), "status"),
            ("before=yesterday".to_string(), "before"),
            ("after=2024-13-01T00:00:00Z".to_string(), "after"),
            ("limit=0".to_string(), "limit"),
            ("limit=1001".to_string(), "limit"),
            ("limit=-1".to_string(), "limit"),
            ("limit=ten".to_string(), "limit"),
            ("meta=owner".to_string(), "meta"),
            ("meta=%5B%5D".to_string(), "meta"),
            ("meta=%7B%22n%22%3A1%7D".to_string(), "meta"),
        ] {
            let e = q(&raw).expect_err(&raw);
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{raw}");
            assert_eq!(param_of(e), name, "{raw}");
        }
    }

    #[test]
    fn name_match_modes() {
        use NameMatch::*;
        assert!(Exact.matches("backup", "backup"));
        assert!(!Exact.matches("backup", "Backup"));
        assert!(!Exact.matches("back", "backup"));
        assert!(IExact.matches("BACKUP", "backup"));
        assert!(!IExact.matches("back", "backup"));
        assert!(Partial.matches("ack", "backup"));
        assert!(!Partial.matches("ACK", "backup"));
        assert!(IPartial.matches("ACK", "backup"));
        assert!(!IPartial.matches("x", "backup"));
        assert_eq!(NameMatch::parse("exact"), Some(Exact));
        assert_eq!(NameMatch::parse("EXACT"), None);
    }

    #[test]
    fn filters_admit_only_matching_pins() {
        let p = pin(
            A,
            "Backup-2024",
            2_000,
            &[("owner", "alice"), ("team", "x")],
        );
        assert!(ListQuery::default().admits(&p));
        let with = |raw: &str| q(raw).expect(raw).admits(&p);
        assert!(with(&format!("cid={B},{A}")));
        assert!(!with(&format!("cid={B}")));
        assert!(with("name=Backup-2024"));
        assert!(!with("name=backup-2024"));
        assert!(with("name=backup-2024&match=iexact"));
        assert!(with("name=2024&match=partial"));
        assert!(!with("name=BACKUP&match=partial"));
        assert!(with("name=BACKUP&match=ipartial"));
        assert!(with("meta=%7B%22owner%22%3A%22alice%22%7D"));
        assert!(with("meta=%7B%7D"));
        assert!(!with("meta=%7B%22owner%22%3A%22bob%22%7D"));
        assert!(!with(
            "meta=%7B%22owner%22%3A%22alice%22%2C%22x%22%3A%22y%22%7D"
        ));
        // Strict bounds: a pin created at exactly `before`/`after` is out.
        assert!(with("before=1970-01-01T00:00:02.001Z"));
        assert!(!with("before=1970-01-01T00:00:02Z"));
        assert!(with("after=1970-01-01T00:00:01.999Z"));
        assert!(!with("after=1970-01-01T00:00:02Z"));
        assert!(!with("before=0001-01-01T00:00:00Z"));
        assert!(with("after=0001-01-01T00:00:00Z"));
    }
}
