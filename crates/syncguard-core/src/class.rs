//! Error classes: how a failed unit of work is treated by the queue (SPEC §3.1).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What kind of failure happened, which decides what the queue does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// 5xx, 408, network errors, timeouts: retry with backoff.
    Transient,
    /// 429: retry after the provider's hint.
    RateLimited,
    /// 400, 401 after one refresh, 403, 404, 409, 422, 423, validation: dead-letter at once.
    Permanent,
    /// The circuit for this connection is open: reschedule, attempt not counted.
    CircuitOpen,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 4] = [
        ErrorClass::Transient,
        ErrorClass::RateLimited,
        ErrorClass::Permanent,
        ErrorClass::CircuitOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Permanent => "permanent",
            ErrorClass::CircuitOpen => "circuit_open",
        }
    }

    /// Classifies an HTTP status code returned by a provider. Success codes have no class.
    pub fn from_status(status: u16) -> Option<ErrorClass> {
        match status {
            200..=399 => None,
            408 => Some(ErrorClass::Transient),
            429 => Some(ErrorClass::RateLimited),
            400..=499 => Some(ErrorClass::Permanent),
            _ => Some(ErrorClass::Transient),
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown error class `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_spec_classes() {
        for s in [500, 502, 503, 504, 408] {
            assert_eq!(
                ErrorClass::from_status(s),
                Some(ErrorClass::Transient),
                "{s}"
            );
        }
        assert_eq!(ErrorClass::from_status(429), Some(ErrorClass::RateLimited));
        for s in [400, 401, 403, 404, 409, 422, 423] {
            assert_eq!(
                ErrorClass::from_status(s),
                Some(ErrorClass::Permanent),
                "{s}"
            );
        }
        assert_eq!(ErrorClass::from_status(200), None);
        assert_eq!(ErrorClass::from_status(304), None);
    }

    #[test]
    fn names_round_trip() {
        for c in ErrorClass::ALL {
            assert_eq!(c.as_str().parse::<ErrorClass>().unwrap(), c);
        }
    }
}
