//! The HTTP date a provider may send in `Retry-After`.
//!
//! Only IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) is accepted: it is the
//! one format senders must produce, and pulling in a date crate for the two obsolete forms is not
//! worth it in a crate that otherwise never handles calendars.

use crate::Millis;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses an IMF-fixdate into milliseconds since the epoch, or `None` if `s` is not one.
///
/// The day name must be a valid one but is not checked against the date: a sender that gets it
/// wrong still means the date it wrote, and ignoring its `Retry-After` would be worse.
pub fn parse_http_date(s: &str) -> Option<Millis> {
    let s = s.trim();
    // Fixed width and ASCII-only, so the byte offsets below are character offsets.
    if s.len() != 29 || !s.is_ascii() {
        return None;
    }
    let field = |from: usize, to: usize| &s[from..to];
    let separators_ok = field(3, 5) == ", "
        && field(7, 8) == " "
        && field(11, 12) == " "
        && field(16, 17) == " "
        && field(19, 20) == ":"
        && field(22, 23) == ":"
        && field(25, 29) == " GMT";
    if !separators_ok || !DAY_NAMES.contains(&field(0, 3)) {
        return None;
    }
    let day = digits(field(5, 7))?;
    let month = MONTHS.iter().position(|m| *m == field(8, 11))? as i64 + 1;
    let year = digits(field(12, 16))?;
    let (hour, minute, second) = (
        digits(field(17, 19))?,
        digits(field(20, 22))?,
        digits(field(23, 25))?,
    );
    // 60 is a leap second, which RFC 9110 allows.
    if day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1_000)
}

/// Only plain ASCII digits: `str::parse` would also take a sign.
fn digits(s: &str) -> Option<i64> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`): counting from March makes the leap day the last day of the year, so
/// every month before it has a fixed length.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rfc_example() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
    }

    #[test]
    fn handles_leap_years() {
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 12:00:00 GMT"),
            Some(1_709_208_000_000)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 23:59:59 GMT"),
            Some(951_868_799_000)
        );
        assert_eq!(parse_http_date("Wed, 29 Feb 2023 00:00:00 GMT"), None);
        assert_eq!(parse_http_date("Thu, 29 Feb 1900 00:00:00 GMT"), None);
        assert_eq!(
            parse_http_date("Mon, 01 Mar 2100 00:00:00 GMT"),
            Some(4_107_542_400_000)
        );
    }

    #[test]
    fn parses_the_epoch_and_tolerates_surrounding_space() {
        assert_eq!(parse_http_date(" Thu, 01 Jan 1970 00:00:00 GMT "), Some(0));
    }

    #[test]
    fn agrees_with_a_day_by_day_count() {
        let mut days = 0;
        for year in 1970..2101 {
            for month in 1..=12 {
                assert_eq!(days_from_civil(year, month, 1), days, "{year}-{month}");
                days += days_in_month(year, month);
            }
        }
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "",
            "120",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMTé",
            "Sün, 06 Nov 1994 08:49:37 GM",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}
