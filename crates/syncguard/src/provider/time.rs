//! Times as providers write them: in `since` query parameters and in items' updated-at fields.
//!
//! Hand-rolled because the workspace has no date crate and providers need only RFC 3339 (with
//! `Z` or a numeric offset) and Unix numbers. `humantime` formats, but cannot parse offsets.

use super::definition::TimeFormat;
use serde_json::Value;
use syncguard_core::Millis;

/// `ms` as the provider expects it in a query parameter.
pub fn format_instant(ms: Millis, format: TimeFormat) -> String {
    match format {
        TimeFormat::Rfc3339 => crate::clock::rfc3339(ms),
        TimeFormat::UnixSeconds => ms.div_euclid(1_000).to_string(),
        TimeFormat::UnixMillis => ms.to_string(),
    }
}

/// Reads a time from an item: an RFC 3339 string, or a number (or numeric string) in the
/// unit of `format` (seconds unless it says milliseconds).
pub fn parse_instant(value: &Value, format: TimeFormat) -> Option<Millis> {
    let scale = |n: f64| match format {
        TimeFormat::UnixMillis => n,
        TimeFormat::Rfc3339 | TimeFormat::UnixSeconds => n * 1_000.0,
    };
    match value {
        Value::Number(n) => n
            .as_f64()
            .map(scale)
            .filter(|v| v.is_finite())
            .map(|v| v as Millis),
        Value::String(s) => parse_rfc3339(s).or_else(|| {
            let n: f64 = s.trim().parse().ok()?;
            Some(scale(n))
                .filter(|v| v.is_finite())
                .map(|v| v as Millis)
        }),
        _ => None,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix milliseconds; fractions beyond milliseconds
/// are truncated.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-')
        && at(7, b'-')
        && matches!(b.get(10), Some(b'T' | b't' | b' '))
        && at(13, b':')
        && at(16, b':'))
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &frac[..digits.min(3)];
        millis = kept.parse::<i64>().ok()? * 10_i64.pow(3 - kept.len() as u32);
        rest = &frac[digits..];
    }
    let offset_min = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            let total = h * 60 + m;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_min * 60;
    Some(secs * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_round_trips_with_offsets_and_fractions() {
        let t = 1_767_323_045_678; // 2026-01-02T03:04:05.678Z
        assert_eq!(
            format_instant(t, TimeFormat::Rfc3339),
            "2026-01-02T03:04:05.678Z"
        );
        assert_eq!(parse_rfc3339("2026-01-02T03:04:05.678Z"), Some(t));
        assert_eq!(parse_rfc3339("2026-01-02T05:04:05.678123+02:00"), Some(t));
        assert_eq!(parse_rfc3339("2026-01-01T22:04:05.678-05:00"), Some(t));
        assert_eq!(parse_rfc3339("2026-01-02T03:04:05Z"), Some(t - 678));
        for bad in [
            "",
            "2026-01-02",
            "2026-13-02T03:04:05Z",
            "2026-01-02T03:04:05",
            "2026-01-02T03:04:05.Z",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_follow_the_format_unit() {
        assert_eq!(
            parse_instant(&json!(1_700_000_000), TimeFormat::UnixSeconds),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_instant(&json!("1700000000123"), TimeFormat::UnixMillis),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_instant(&json!(null), TimeFormat::Rfc3339), None);
        assert_eq!(
            format_instant(1_700_000_000_999, TimeFormat::UnixSeconds),
            "1700000000"
        );
    }
}
