//! Identifiers and timestamps of the envelope: [`RunId`] and [`Timestamp`].
//!
//! Both are validated on construction, so a value of these types is always well-formed
//! and the rest of the code never re-checks them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest run id, in bytes (all allowed characters are ASCII).
pub const MAX_RUN_ID_LEN: usize = 128;

/// A run id: 1 to 128 characters of `[A-Za-z0-9._:-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(String);

/// Why a string is not a valid [`RunId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRunId {
    reason: &'static str,
}

impl fmt::Display for InvalidRunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid run id: {}", self.reason)
    }
}

impl std::error::Error for InvalidRunId {}

impl RunId {
    /// Checks `s` against the run id charset and length.
    pub fn new(s: impl Into<String>) -> Result<RunId, InvalidRunId> {
        let s = s.into();
        if s.is_empty() {
            return Err(InvalidRunId {
                reason: "it is empty",
            });
        }
        if s.len() > MAX_RUN_ID_LEN {
            return Err(InvalidRunId {
                reason: "it is longer than 128 characters",
            });
        }
        if !s.bytes().all(is_run_id_byte) {
            return Err(InvalidRunId {
                reason: "only A-Z, a-z, 0-9, '.', '_', ':' and '-' are allowed",
            });
        }
        Ok(RunId(s))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_run_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RunId {
    type Err = InvalidRunId;
    fn from_str(s: &str) -> Result<RunId, InvalidRunId> {
        RunId::new(s)
    }
}

impl AsRef<str> for RunId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for RunId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RunId, D::Error> {
        let s = String::deserialize(d)?;
        RunId::new(s).map_err(serde::de::Error::custom)
    }
}

/// A point in time, UTC, with microsecond precision: the envelope's `ts`.
///
/// It is written as RFC 3339 with exactly six fractional digits and a `Z`
/// (`2026-11-22T01:07:00.123456Z`). Parsing accepts any RFC 3339 offset and converts it
/// to UTC; finer precision is truncated to microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

/// Why a string is not a valid [`Timestamp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTimestamp {
    reason: &'static str,
}

impl fmt::Display for InvalidTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for InvalidTimestamp {}

impl Timestamp {
    /// The timestamp for a chrono UTC time, truncated to microseconds.
    pub fn from_datetime(t: DateTime<Utc>) -> Timestamp {
        Timestamp(t.trunc_subsecs(6))
    }

    /// The timestamp `micros` microseconds after the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Timestamp {
        Timestamp(DateTime::from_timestamp_micros(micros).unwrap_or_default())
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    /// The underlying chrono time.
    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// Seconds from `earlier` to `self`, negative when `earlier` is later.
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        (self.unix_micros() - earlier.unix_micros()) as f64 / 1e6
    }

    /// This time moved by `secs` seconds (rounded to microseconds).
    pub fn add_seconds(self, secs: f64) -> Timestamp {
        Timestamp::from_unix_micros(self.unix_micros() + (secs * 1e6).round() as i64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl FromStr for Timestamp {
    type Err = InvalidTimestamp;
    fn from_str(s: &str) -> Result<Timestamp, InvalidTimestamp> {
        let t = DateTime::parse_from_rfc3339(s)
            .map_err(|_| InvalidTimestamp {
                reason: "not an RFC 3339 timestamp (expected e.g. 2026-11-22T01:07:00.123456Z)",
            })?
            .with_timezone(&Utc);
        // RFC 3339 writes four-digit years. A time its offset moves out of them in UTC
        // (`9999-12-31T23:59:59-01:00`) would be written `+10000-01-01T...Z`, which no
        // parser, this one included, reads back.
        if !(0..=9999).contains(&t.year()) {
            return Err(InvalidTimestamp {
                reason: "outside the years 0000 to 9999 once in UTC",
            });
        }
        Ok(Timestamp::from_datetime(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids() {
        for ok in ["a", "run-1", "A.b_c:d-9", &"x".repeat(128)] {
            assert!(RunId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "a\n", "a\u{0}", &"x".repeat(129)] {
            assert!(RunId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_round_trip_with_micros() {
        let t: Timestamp = "2026-11-22T01:07:00.123456789+02:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-21T23:07:00.123456Z");
        let t: Timestamp = "2026-11-22T01:07:00Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-22T01:07:00.000000Z");
        assert_eq!(Timestamp::from_unix_micros(t.unix_micros()), t);
        for bad in [
            "",
            "yesterday",
            "2026-11-22",
            "2026-11-22 01:07:00",
            "2026-13-01T00:00:00Z",
            "9999-12-31T23:59:59-00:01",
            "0000-01-01T00:00:00+00:01",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
        // Every timestamp that parses is written as one that parses back to it.
        for edge in [
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999+00:00",
        ] {
            let t: Timestamp = edge.parse().unwrap();
            assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t), "{edge}");
        }
    }
}
