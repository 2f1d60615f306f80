//! Wall-clock helpers. The mock keeps time as Unix milliseconds and speaks RFC 3339 on the wire.
//!
//! Hand-rolled because the workspace carries no date crate and the mock needs only two things:
//! UTC output with millisecond precision (what Trackstar sends) and tolerant parsing of the
//! timestamps clients put in `updated_date[gte]`.

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
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parses an RFC 3339 timestamp (any fraction length, `Z` or a numeric offset) or a bare
/// `YYYY-MM-DD` date (midnight UTC) into Unix milliseconds.
///
/// A space where the offset sign should be is read as `+`: an unencoded `+00:00` in a query
/// string arrives as a space after form decoding, and rejecting it would only confuse users.
pub fn parse_rfc3339(input: &str) -> Option<i64> {
    let s = input.trim();
    let digits = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let sep = |at: usize, c: u8| s.as_bytes().get(at) == Some(&c);

    let (year, month, day) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let date_ok =
        sep(4, b'-') && sep(7, b'-') && (1..=12).contains(&month) && (1..=31).contains(&day);
    if !date_ok {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    if s.len() == 10 {
        return Some(days * 86_400_000);
    }
    let time_sep = matches!(s.as_bytes().get(10), Some(b'T' | b't'));
    if !(time_sep && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (hour, min, sec) = (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?);
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }

    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        // Keep milliseconds; finer digits are truncated, as the mock stores milliseconds.
        let kept = &frac[..len.min(3)];
        millis = kept.parse::<i64>().ok()? * 10_i64.pow(3 - kept.len() as u32);
        rest = &frac[len..];
    }
    let offset_s = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-' | b' '), ..] => {
            let off = rest[1..].replace(':', "");
            if off.len() != 4 || !off.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let (oh, om): (i64, i64) = (off[..2].parse().ok()?, off[2..].parse().ok()?);
            let magnitude = oh * 3600 + om * 60;
            if *sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        _ => return None,
    };
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 → (year, month, day). Howard Hinnant's civil-from-days algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01; the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
