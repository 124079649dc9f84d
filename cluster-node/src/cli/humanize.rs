//! Sizes and times as people read them, in the words `ipfs-cluster-ctl`
//! prints (go-humanize's): `94 GB`, `24 seconds from now`, `1 minute ago`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::time::{format_millis, Timestamp};

/// Now as Unix nanoseconds (metrics carry their times so).
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `bytes` in SI units: `512 B`, `1.5 kB`, `94 GB`.
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    // One decimal below ten (as go-humanize), rounded to the nearest tenth.
    let value = (value * 10.0).round() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// How far `then` is from `now` (both Unix nanoseconds): `now`,
/// `3 seconds from now`, `2 hours ago`.
pub fn relative(then: i64, now: i64) -> String {
    let (diff, label) = if then >= now {
        (then - now, "from now")
    } else {
        (now - then, "ago")
    };
    let secs = u64::try_from(diff / 1_000_000_000).unwrap_or(0);
    let amount = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit} {label}")
        } else {
            format!("{n} {unit}s {label}")
        }
    };
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match secs {
        0 => "now".to_string(),
        s if s < MINUTE => amount(s, "second"),
        s if s < HOUR => amount(s / MINUTE, "minute"),
        s if s < DAY => amount(s / HOUR, "hour"),
        s if s < 7 * DAY => amount(s / DAY, "day"),
        s if s < 30 * DAY => amount(s / (7 * DAY), "week"),
        s if s < 365 * DAY => amount(s / (30 * DAY), "month"),
        s => amount(s / (365 * DAY), "year"),
    }
}

/// A wire time as Unix nanoseconds (`None` for Go's zero time).
pub fn timestamp_nanos(t: Timestamp) -> Option<i64> {
    t.0.map(|ms| i64::try_from(ms.0).unwrap_or(i64::MAX / 1_000_000) * 1_000_000)
}

/// `YYYY-MM-DD hh:mm:ss` in UTC, or `None` for Go's zero time.
pub fn date(t: Timestamp) -> Option<String> {
    t.0.map(|ms| {
        let text = format_millis(ms);
        text.get(..19).unwrap_or(&text).replacen('T', " ", 1)
    })
}

/// A duration for a progress line (`12s`).
pub fn elapsed(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::Millis;

    #[test]
    fn sizes_and_times_read_like_upstream() {
        assert_eq!(bytes(5), "5 B");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1_500), "1.5 kB");
        assert_eq!(bytes(94_000_000_000), "94 GB");
        let s = 1_000_000_000;
        assert_eq!(relative(10 * s, 10 * s), "now");
        assert_eq!(relative(34 * s, 10 * s), "24 seconds from now");
        assert_eq!(relative(10 * s, 70 * s), "1 minute ago");
        assert_eq!(relative(0, 7200 * s), "2 hours ago");
        let t = Timestamp::at(Millis(1_714_990_365_512));
        assert_eq!(date(t).unwrap(), "2024-05-06 10:12:45");
        assert_eq!(date(Timestamp(None)), None);
        assert_eq!(timestamp_nanos(t), Some(1_714_990_365_512_000_000));
    }
}
