//! Rate-limit hints read from a provider's response headers (SPEC §3.3).
//!
//! Parsing is separate from applying ([`super::LimiterState::apply_hints`]) so that the
//! provider client can log what the provider said, and so that the outbound delivery path, which
//! also honours `Retry-After`, can reuse [`parse_retry_after`].

use crate::time::parse_http_date;
use crate::Millis;
use serde::{Deserialize, Serialize};

/// Above this, `x-rate-limit-reset` is a Unix time in seconds rather than a delay: 10^9 s is
/// 2001 as a date but 31 years as a delay, so no real value is ambiguous.
const EPOCH_SECONDS_ABOVE: u64 = 1_000_000_000;
/// Above this, `x-rate-limit-reset` is a Unix time in milliseconds (some providers send that);
/// read as seconds it would be a date tens of thousands of years away and block forever.
const EPOCH_MILLIS_ABOVE: u64 = 1_000_000_000_000;

/// What a provider's response said about its rate limit. Durations are relative to the moment
/// the response was read, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hints {
    /// Do not call again before this much time has passed.
    pub retry_after_ms: Option<u64>,
    /// Calls left in the provider's current window.
    pub remaining: Option<u64>,
    /// Size of the provider's window.
    pub limit: Option<u64>,
    /// Time until the provider's window resets.
    pub reset_ms: Option<u64>,
}

impl Hints {
    pub fn is_empty(&self) -> bool {
        *self == Hints::default()
    }
}

/// Reads the rate-limit headers of one response received at `now`.
///
/// `lookup` returns a header's value by name; names are asked for in lowercase (as HTTP/2 and the
/// `http` crate store them). Headers that are absent or malformed are left out rather than
/// failing the whole response.
///
/// - `Retry-After`: delay seconds or an HTTP date, see [`parse_retry_after`].
/// - `x-rate-limit-retry-after`: delay seconds, fractions allowed. When both retry headers are
///   present the longer wait wins.
/// - `x-rate-limit-remaining`, `x-rate-limit-limit`: whole numbers of calls.
/// - `x-rate-limit-reset`: seconds until the window resets (fractions allowed); a value above
///   10^9 is instead a Unix time in seconds, and above 10^12 a Unix time in milliseconds.
pub fn parse_hints(lookup: impl Fn(&str) -> Option<String>, now: Millis) -> Hints {
    let retry_after = lookup("retry-after").and_then(|v| parse_retry_after(&v, now));
    let x_retry_after = lookup("x-rate-limit-retry-after").and_then(|v| parse_seconds_ms(&v));
    Hints {
        retry_after_ms: retry_after.max(x_retry_after),
        remaining: lookup("x-rate-limit-remaining").and_then(|v| parse_count(&v)),
        limit: lookup("x-rate-limit-limit").and_then(|v| parse_count(&v)),
        reset_ms: lookup("x-rate-limit-reset").and_then(|v| parse_reset_ms(&v, now)),
    }
}

/// Parses a `Retry-After` value into milliseconds to wait from `now`: either delay seconds
/// (`120`; fractions are tolerated) or an HTTP date, which yields 0 when already past.
pub fn parse_retry_after(value: &str, now: Millis) -> Option<u64> {
    let value = value.trim();
    if value.starts_with(|c: char| c.is_ascii_digit()) {
        parse_seconds_ms(value)
    } else {
        parse_http_date(value).map(|at| until(at, now))
    }
}

fn parse_reset_ms(value: &str, now: Millis) -> Option<u64> {
    let ms = parse_seconds_ms(value)?;
    let seconds = ms / 1_000;
    if seconds > EPOCH_MILLIS_ABOVE {
        Some(until(Millis::try_from(seconds).ok()?, now))
    } else if seconds > EPOCH_SECONDS_ABOVE {
        Some(until(Millis::try_from(ms).ok()?, now))
    } else {
        Some(ms)
    }
}

/// Non-negative decimal seconds (`2`, `0.5`, `1.25`) to whole milliseconds, rounded up so that
/// waiting the result never calls a moment too early. Signs, exponents, `inf` and `NaN`, which
/// `f64::from_str` would take, are refused.
fn parse_seconds_ms(value: &str) -> Option<u64> {
    let value = value.trim();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let dangling_point = fraction.is_empty() && value.ends_with('.');
    if whole.is_empty() || dangling_point || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let millis = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, b| acc * 10 + u64::from(b - b'0'));
    let beyond_millis = fraction.bytes().skip(3).any(|b| b != b'0');
    Some(
        whole
            .saturating_mul(1_000)
            .saturating_add(millis)
            .saturating_add(u64::from(beyond_millis)),
    )
}

fn parse_count(value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Milliseconds from `now` until `at`, 0 if `at` is past.
fn until(at: Millis, now: Millis) -> u64 {
    u64::try_from(at.saturating_sub(now)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NOW: Millis = 1_700_000_000_000;
    /// Sun, 06 Nov 1994 08:49:37 GMT
    const RFC_EXAMPLE: Millis = 784_111_777_000;

    fn hints(headers: &[(&str, &str)]) -> Hints {
        let map: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        parse_hints(|name| map.get(name).cloned(), NOW)
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after("120", NOW), Some(120_000));
        assert_eq!(parse_retry_after(" 0 ", NOW), Some(0));
        assert_eq!(parse_retry_after("1.5", NOW), Some(1_500));
    }

    #[test]
    fn retry_after_as_a_date_is_relative_to_now() {
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", RFC_EXAMPLE),
            Some(30_000)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", RFC_EXAMPLE),
            Some(0),
            "a date in the past means go ahead"
        );
    }

    #[test]
    fn retry_after_rejects_garbage() {
        for bad in [
            "", "soon", "-5", "+5", "1e3", "inf", "NaN", "5s", "1.", ".5",
        ] {
            assert_eq!(parse_retry_after(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn seconds_round_up_to_the_millisecond() {
        assert_eq!(parse_seconds_ms("0.0001"), Some(1));
        assert_eq!(parse_seconds_ms("0.1230"), Some(123));
        assert_eq!(parse_seconds_ms("2.000000"), Some(2_000));
        assert_eq!(parse_seconds_ms("99999999999999999999"), None);
        assert_eq!(parse_seconds_ms("18446744073709552"), Some(u64::MAX));
    }

    #[test]
    fn x_rate_limit_retry_after_takes_fractions() {
        let h = hints(&[("x-rate-limit-retry-after", "0.25")]);
        assert_eq!(h.retry_after_ms, Some(250));
    }

    #[test]
    fn the_longer_of_two_retry_headers_wins() {
        let h = hints(&[("Retry-After", "2"), ("x-rate-limit-retry-after", "3.5")]);
        assert_eq!(h.retry_after_ms, Some(3_500));
        let h = hints(&[("Retry-After", "9"), ("x-rate-limit-retry-after", "oops")]);
        assert_eq!(h.retry_after_ms, Some(9_000));
    }

    #[test]
    fn remaining_and_limit() {
        let h = hints(&[
            ("x-rate-limit-remaining", "7"),
            ("x-rate-limit-limit", "600"),
        ]);
        assert_eq!((h.remaining, h.limit), (Some(7), Some(600)));
        let h = hints(&[("x-rate-limit-remaining", "-1"), ("x-rate-limit-limit", "")]);
        assert_eq!((h.remaining, h.limit), (None, None));
    }

    #[test]
    fn reset_as_a_delay() {
        assert_eq!(
            hints(&[("x-rate-limit-reset", "30")]).reset_ms,
            Some(30_000)
        );
        assert_eq!(hints(&[("x-rate-limit-reset", "0.5")]).reset_ms, Some(500));
    }

    #[test]
    fn reset_as_unix_seconds_or_millis() {
        let in_45_s = (NOW / 1_000 + 45).to_string();
        assert_eq!(
            hints(&[("x-rate-limit-reset", &in_45_s)]).reset_ms,
            Some(45_000)
        );
        let in_1_5_s = (NOW + 1_500).to_string();
        assert_eq!(
            hints(&[("x-rate-limit-reset", &in_1_5_s)]).reset_ms,
            Some(1_500)
        );
        let past = (NOW / 1_000 - 10).to_string();
        assert_eq!(hints(&[("x-rate-limit-reset", &past)]).reset_ms, Some(0));
        // Exactly 10^9 is still a delay, the largest one.
        assert_eq!(
            hints(&[("x-rate-limit-reset", "1000000000")]).reset_ms,
            Some(1_000_000_000_000)
        );
    }

    #[test]
    fn no_headers_no_hints() {
        assert!(hints(&[]).is_empty());
        assert!(hints(&[("content-type", "application/json")]).is_empty());
    }
}
