//! A connection's status (SPEC §1 "connection"): `pending → active ⇄ paused`, `error`,
//! `disconnected`. The store keeps it as text; code compares and matches on
//! [`ConnectionStatus`], never on string literals.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Created without usable credentials yet (a link flow or credentials to come).
    Pending,
    /// Syncing, publishing and receiving webhooks.
    Active,
    /// Stopped by an operator; webhooks are still received.
    Paused,
    /// Stopped by a permanent failure (bad credentials); new credentials make it active again.
    Error,
    /// Gone for good: secrets erased, nothing runs for it.
    Disconnected,
}

impl ConnectionStatus {
    pub const ALL: [ConnectionStatus; 5] = [
        ConnectionStatus::Pending,
        ConnectionStatus::Active,
        ConnectionStatus::Paused,
        ConnectionStatus::Error,
        ConnectionStatus::Disconnected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Pending => "pending",
            ConnectionStatus::Active => "active",
            ConnectionStatus::Paused => "paused",
            ConnectionStatus::Error => "error",
            ConnectionStatus::Disconnected => "disconnected",
        }
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnectionStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!("unknown connection status `{s}` (expected pending, active, paused, error or disconnected)")
            })
    }
}

/// Lets a stored status (text) be compared with a typed one: `conn.status == Active`.
impl PartialEq<ConnectionStatus> for String {
    fn eq(&self, other: &ConnectionStatus) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<ConnectionStatus> for str {
    fn eq(&self, other: &ConnectionStatus) -> bool {
        self == other.as_str()
    }
}

impl From<ConnectionStatus> for String {
    fn from(s: ConnectionStatus) -> String {
        s.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_text() {
        for s in ConnectionStatus::ALL {
            assert_eq!(s.as_str().parse::<ConnectionStatus>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            let stored: String = s.into();
            assert!(stored == s);
        }
        assert!("Active".parse::<ConnectionStatus>().is_err());
        let stored = String::from("active");
        assert!(stored != ConnectionStatus::Paused);
        assert!(*"paused" == ConnectionStatus::Paused);
    }
}
