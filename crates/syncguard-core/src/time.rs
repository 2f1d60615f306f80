//! Times on the wire, to and from Unix milliseconds: RFC 3339 (API output, provider
//! timestamps) and the HTTP date of `Retry-After`.
//!
//! The calendar work is `jiff`'s (RFC 3339) and `httpdate`'s (HTTP dates), so impossible dates
//! such as 2026-02-31 are refused rather than rolled over. This module only decides which
//! spellings are accepted. Nothing here reads a clock.

use crate::Millis;
use std::time::UNIX_EPOCH;

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix milliseconds. The date and time may be
/// separated by `T`, `t` or a space, `Z` may be lowercase; fractions beyond milliseconds are
/// truncated. Anything else, and any date the calendar does not have, is `None`.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits = |from: usize, to: usize| {
        b.get(from..to)
            .is_some_and(|p| p.iter().all(u8::is_ascii_digit))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let shape = digits(0, 4)
        && at(4, b'-')
        && digits(5, 7)
        && at(7, b'-')
        && digits(8, 10)
        && matches!(b.get(10), Some(b'T' | b't' | b' '))
        && digits(11, 13)
        && at(13, b':')
        && digits(14, 16)
        && at(16, b':')
        && digits(17, 19);
    if !shape {
        return None;
    }
    let mut rest = &s[19..];
    let mut fraction = "";
    if let Some(after_point) = rest.strip_prefix('.') {
        let len = after_point.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        fraction = &after_point[..len.min(3)];
        rest = &after_point[len..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => "Z",
        [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            rest
        }
        _ => return None,
    };
    let point = if fraction.is_empty() { "" } else { "." };
    let normal = format!("{}T{}{point}{fraction}{offset}", &s[..10], &s[11..19]);
    let t: jiff::Timestamp = normal.parse().ok()?;
    Some(t.as_millisecond())
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, always three fraction digits).
pub fn format_rfc3339_ms(ms: Millis) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => format!("{t:.3}"),
        // Beyond jiff's range (years -9999..=9999): clamp to its ends.
        Err(_) if ms < 0 => format!("{:.3}", jiff::Timestamp::MIN),
        Err(_) => format!("{:.3}", jiff::Timestamp::MAX),
    }
}

/// An HTTP date (RFC 9110 §5.6.7: IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`, and
/// the obsolete RFC 850 and asctime forms recipients must also accept) to Unix milliseconds.
pub fn parse_http_date(s: &str) -> Option<Millis> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    Millis::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Millis = 1_767_323_045_678; // 2026-01-02T03:04:05.678Z

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("2026-01-02T03:04:05.678Z"), Some(T));
        assert_eq!(parse_rfc3339("2026-01-02T05:04:05.678123+02:00"), Some(T));
        assert_eq!(parse_rfc3339("2026-01-01T22:04:05.678-05:00"), Some(T));
        assert_eq!(parse_rfc3339("2026-01-02t03:04:05.678z"), Some(T));
        assert_eq!(parse_rfc3339(" 2026-01-02 03:04:05.678Z "), Some(T));
        assert_eq!(parse_rfc3339("2026-01-02T03:04:05Z"), Some(T - 678));
        assert_eq!(parse_rfc3339("2026-01-02T08:34:05.6+05:30"), Some(T - 78));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.500Z"), Some(-500));
    }

    #[test]
    fn impossible_dates_are_refused() {
        for bad in [
            "2026-02-31T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T12:00:00Z",
            "2026-13-02T03:04:05Z",
            "2026-00-10T03:04:05Z",
            "2026-01-02T24:00:00Z",
            "2026-01-02T03:60:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert!(
            parse_rfc3339("2024-02-29T00:00:00Z").is_some(),
            "a leap day"
        );
    }

    #[test]
    fn other_spellings_are_refused() {
        for bad in [
            "",
            "yesterday",
            "2026-01-02",
            "2026-01-02T03:04:05",
            "2026-01-02T03:04:05.Z",
            "2026-01-02T03:04:05+0200",
            "2026-01-02T03:04:05+02",
            "2026-01-02T03:04Z",
            "2026/01/02T03:04:05Z",
            "2026-01-02T03:04:05Z[Europe/Paris]",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_utc_with_milliseconds_and_round_trips() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(T), "2026-01-02T03:04:05.678Z");
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        for ms in [0, 1, -1, 951_782_400_000, T, 4_102_444_800_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339_ms(ms)), Some(ms), "{ms}");
        }
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let rfc_example = Some(784_111_777_000);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            rfc_example
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            rfc_example
        );
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), rfc_example);
        assert_eq!(parse_http_date(" Thu, 01 Jan 1970 00:00:00 GMT "), Some(0));
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 12:00:00 GMT"),
            Some(1_709_208_000_000)
        );
    }

    #[test]
    fn http_dates_that_do_not_exist_are_refused() {
        for bad in [
            "",
            "120",
            "Wed, 29 Feb 2023 00:00:00 GMT",
            "Thu, 29 Feb 1900 00:00:00 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMTé",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}
