//! Wall-clock helpers. The mock keeps time as Unix milliseconds and speaks RFC 3339 on the wire.
//!
//! UTC output with millisecond precision (what Trackstar sends) and tolerant parsing of the
//! timestamps clients put in `updated_date[gte]`; both lean on `syncguard_core::time`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    syncguard_core::time::format_rfc3339_ms(ms)
}

/// Parses an RFC 3339 timestamp (any fraction length, `Z` or a numeric offset) or a bare
/// `YYYY-MM-DD` date (midnight UTC) into Unix milliseconds; the calendar work is
/// `syncguard_core::time`'s, which refuses dates that do not exist.
///
/// Laxer than RFC 3339 where clients of the mock are: a space where the offset sign should be
/// is read as `+` (an unencoded `+00:00` in a query string arrives as a space after form
/// decoding, and rejecting it would only confuse users), and the offset's colon may be left out.
pub fn parse_rfc3339(input: &str) -> Option<i64> {
    let s = input.trim();
    if s.len() == 10 {
        return syncguard_core::time::parse_rfc3339(&format!("{s}T00:00:00Z"));
    }
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    // The offset starts after the seconds and any fraction.
    let fraction = s
        .get(19..)?
        .strip_prefix('.')
        .map_or(0, |f| 1 + f.bytes().take_while(u8::is_ascii_digit).count());
    let (head, offset) = s.split_at_checked(19 + fraction)?;
    let offset = match offset.as_bytes() {
        [b'Z' | b'z'] => "Z".to_string(),
        [sign @ (b'+' | b'-' | b' '), ..] => {
            let digits = offset[1..].replace(':', "");
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let sign = if *sign == b'-' { '-' } else { '+' };
            format!("{sign}{}:{}", &digits[..2], &digits[2..])
        }
        _ => return None,
    };
    syncguard_core::time::parse_rfc3339(&format!("{head}{offset}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_milliseconds() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(1_709_251_199_123),
            "2024-02-29T23:59:59.123Z"
        );
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for ms in [0, 1, 951_782_400_000, 1_709_251_199_123, 4_102_444_800_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339_ms(ms)), Some(ms), "{ms}");
        }
    }

    #[test]
    fn parses_offsets_fractions_and_dates() {
        let base = parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00+02:00"), Some(base));
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00 02:00"), Some(base));
        assert_eq!(parse_rfc3339("2024-05-01T07:30:00-0430"), Some(base));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.5Z"), Some(base + 500));
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.123456789Z"),
            Some(base + 123)
        );
        assert_eq!(parse_rfc3339("2024-05-01"), Some(base - 12 * 3_600_000));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-05-01T25:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+2",
            "2024/05/01",
            "2024-02-30T00:00:00Z",
            "2026-02-31",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
