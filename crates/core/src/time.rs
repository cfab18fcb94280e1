//! Timestamps with microsecond precision, stored as integers in every backend.
//!
//! Konnect-style APIs print them as ISO-8601 with microseconds (`2025-09-26T05:30:50.551157Z`);
//! Kong Admin API–style APIs print Unix seconds. One type serves both.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// Microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self(Utc::now().timestamp_micros())
    }

    /// From whole Unix seconds.
    pub fn from_unix_seconds(secs: i64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }

    /// Whole Unix seconds (rounded down).
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// Microseconds since the epoch.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// This instant plus `secs` seconds.
    pub fn plus_seconds(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }

    /// As a chrono UTC date-time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// ISO-8601 / RFC 3339 with microseconds and `Z`, as Konnect prints timestamps.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

impl serde::Serialize for Timestamp {
    /// Serialised as RFC 3339; APIs that want Unix seconds call [`Timestamp::unix_seconds`].
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    /// Reads what [`Serialize`](serde::Serialize) writes, RFC 3339, losslessly.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| Self(t.timestamp_micros()))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_konnect_style() {
        let t = Timestamp(1_758_864_650_551_157);
        assert_eq!(t.to_rfc3339(), "2025-09-26T05:30:50.551157Z");
        assert_eq!(t.unix_seconds(), 1_758_864_650);
        assert_eq!(t.plus_seconds(10).unix_seconds(), 1_758_864_660);
    }

    #[test]
    fn reads_back_what_it_writes() {
        let t = Timestamp(1_758_864_650_551_157);
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&text).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }
}
