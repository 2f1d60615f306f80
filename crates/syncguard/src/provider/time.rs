//! Times as providers write them: in `since` query parameters and in items' updated-at fields.
//!
//! RFC 3339 (with `Z` or a numeric offset) is parsed by `syncguard_core::time`, which refuses
//! dates the calendar does not have; Unix numbers are read here.

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

pub use syncguard_core::time::parse_rfc3339;

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
