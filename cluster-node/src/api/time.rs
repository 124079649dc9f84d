//! Times on the wire: RFC 3339 text in UTC, as Go's `time.Time` prints it.
//!
//! The cluster keeps time as [`Millis`] since the Unix epoch; the API prints
//! it with millisecond precision (whole seconds print without a fraction).
//! Go's zero time (`0001-01-01T00:00:00Z`) means "no time" (e.g. no expiry)
//! and maps to `None`. Written here rather than pulled from a date crate:
//! the API needs only this one format.

use std::fmt;

use cluster_core::Millis;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Go's zero `time.Time`, printed for "no time".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

const MS_PER_DAY: i64 = 86_400_000;

/// Why a time text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 time {input:?}: {reason}")]
pub struct TimeError {
    /// The text given (truncated).
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// A wire time: `None` is Go's zero time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub Option<Millis>);

impl Timestamp {
    /// The time `at`.
    pub fn at(at: Millis) -> Timestamp {
        Timestamp(Some(at))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str(ZERO_TIME),
            Some(ms) => f.write_str(&format_millis(ms)),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_str(ZERO_TIME),
            Some(ms) => s.serialize_str(&format_millis(ms)),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&text)
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

/// `ms` as RFC 3339 in UTC (`2024-05-06T10:12:45.512Z`).
pub fn format_millis(ms: Millis) -> String {
    let mut out = Vec::with_capacity(24);
    write_millis(&mut out, ms);
    // Only ASCII digits and separators were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `ms` as RFC 3339 in UTC to `out` (what [`format_millis`]
/// returns), without the formatting machinery: listings print one or two
/// times per line.
pub fn write_millis(out: &mut Vec<u8>, ms: Millis) {
    let ms = i64::try_from(ms.0).unwrap_or(i64::MAX);
    let (days, in_day) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
    let (y, m, d) = civil_from_days(days);
    let (secs, frac) = (in_day / 1000, in_day % 1000);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    if (0..10_000).contains(&y) {
        digits(out, y, 4);
    } else {
        // Past year 9999 (only from absurd inputs): as `{:04}` prints it.
        out.extend_from_slice(y.to_string().as_bytes());
    }
    out.push(b'-');
    digits(out, m, 2);
    out.push(b'-');
    digits(out, d, 2);
    out.push(b'T');
    digits(out, hh, 2);
    out.push(b':');
    digits(out, mm, 2);
    out.push(b':');
    digits(out, ss, 2);
    if frac != 0 {
        out.push(b'.');
        digits(out, frac, 3);
    }
    out.push(b'Z');
}

/// `n` (0 ≤ n < 10^width) in `width` digits, zero-padded.
fn digits(out: &mut Vec<u8>, n: i64, width: u32) {
    for i in (0..width).rev() {
        out.push(b'0' + (n / 10_i64.pow(i) % 10) as u8);
    }
}

/// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`). Go's zero time
/// (any time in year 1) is `None`; other times before the Unix epoch are
/// refused (the cluster cannot hold them). Fractions beyond milliseconds
/// are truncated.
pub fn parse(text: &str) -> Result<Option<Millis>, TimeError> {
    let err = |reason| TimeError {
        input: text.chars().take(64).collect(),
        reason,
    };
    let b = text.as_bytes();
    if b.len() < 20 {
        return Err(err("too short"));
    }
    let num = |from: usize, len: usize| -> Result<i64, TimeError> {
        let part = b.get(from..from + len).ok_or(err("truncated"))?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(err("digits expected"));
        }
        Ok(part.iter().fold(0, |n, c| n * 10 + i64::from(c - b'0')))
    };
    let sep = |at: usize, want: &[u8]| -> Result<(), TimeError> {
        match b.get(at) {
            Some(c) if want.contains(c) => Ok(()),
            _ => Err(err("separator expected")),
        }
    };
    let year = num(0, 4)?;
    sep(4, b"-")?;
    let month = num(5, 2)?;
    sep(7, b"-")?;
    let day = num(8, 2)?;
    sep(10, b"Tt")?;
    let hour = num(11, 2)?;
    sep(13, b":")?;
    let minute = num(14, 2)?;
    sep(16, b":")?;
    let second = num(17, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(err("no such date"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(err("no such time of day"));
    }
    let mut at = 19;
    let mut frac_ms = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return Err(err("fraction digits expected"));
        }
        let digits = &b[start..at.min(start + 3)];
        frac_ms = digits.iter().fold(0, |n, c| n * 10 + i64::from(c - b'0'));
        for _ in digits.len()..3 {
            frac_ms *= 10;
        }
    }
    let offset_s = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == b.len() => {
            let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
            sep(at + 3, b":")?;
            if oh > 23 || om > 59 {
                return Err(err("bad zone offset"));
            }
            let s = oh * 3600 + om * 60;
            if *sign == b'-' {
                -s
            } else {
                s
            }
        }
        _ => return Err(err("zone (Z or ±HH:MM) expected at the end")),
    };
    if year == 1 {
        return Ok(None);
    }
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let ms = secs
        .checked_mul(1000)
        .and_then(|s| s.checked_add(frac_ms))
        .ok_or(err("out of range"))?;
    u64::try_from(ms)
        .map(|ms| Some(Millis(ms)))
        .map_err(|_| err("before 1970 (the Unix epoch)"))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the classic
/// era-based conversion: 400-year eras of 146,097 days).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back() {
        for ms in [
            0,
            1_000,
            1_714_990_365_512,
            951_782_400_000,
            4_102_444_800_999,
        ] {
            let text = format_millis(Millis(ms));
            assert_eq!(parse(&text), Ok(Some(Millis(ms))), "{text}");
        }
        assert_eq!(
            format_millis(Millis(1_714_990_365_000)),
            "2024-05-06T10:12:45Z"
        );
        assert_eq!(
            format_millis(Millis(1_714_990_365_512)),
            "2024-05-06T10:12:45.512Z"
        );
        assert_eq!(format_millis(Millis(5)), "1970-01-01T00:00:00.005Z");
        assert_eq!(
            format_millis(Millis(253_402_300_800_000)),
            "10000-01-01T00:00:00Z"
        );
        // 2000-02-29 (a leap day in a century year).
        assert_eq!(
            format_millis(Millis(951_782_400_000)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn parses_offsets_fractions_and_the_zero_time() {
        assert_eq!(parse(ZERO_TIME), Ok(None));
        assert_eq!(
            parse("2024-05-06T12:12:45.512304711+02:00"),
            Ok(Some(Millis(1_714_990_365_512)))
        );
        assert_eq!(
            parse("2024-05-06T05:12:45-05:00"),
            Ok(Some(Millis(1_714_990_365_000)))
        );
        assert_eq!(Timestamp(None).to_string(), ZERO_TIME);
    }

    #[test]
    fn refuses_garbage_naming_it() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-06 10:12:45Z",
            "2024-05-06T10:12:45",
            "2024-05-06T25:00:00Z",
            "1969-12-31T23:59:59Z",
            "2024-05-06T10:12:45.Z",
            "2024-05-06T10:12:45Zjunk",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.to_string().contains("invalid RFC 3339 time"), "{e}");
        }
    }
}
