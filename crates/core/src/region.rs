//! Region codes: `[a-z][a-z0-9]{1,15}` (e.g. `eu`, `us`, `ap`, `eu2`).

use std::fmt;

/// Response header (gRPC metadata) naming a user's home region: sent by a
/// node that refuses a request for a user it does not home, followed once
/// by the edge.
pub const HOME_REGION_HEADER: &str = "domicile-home-region";

/// The client's address as the edge saw it (after its trusted proxies),
/// set by the edge on every request it forwards to a node, replacing any
/// the client sent. Nodes use it for per-address limits; they are reached
/// only through the edge.
pub const CLIENT_ADDRESS_HEADER: &str = "domicile-client-address";
/// The ISO country of the client's address (the edge's GeoIP), set or
/// removed by the edge beside `CLIENT_ADDRESS_HEADER`.
pub const CLIENT_COUNTRY_HEADER: &str = "domicile-client-country";
/// The place of the client's address (`latitude,longitude`, the edge's
/// GeoIP), set or removed by the edge beside `CLIENT_ADDRESS_HEADER`.
pub const CLIENT_LOCATION_HEADER: &str = "domicile-client-location";
/// Request metadata an app with its own UI may send on sign-in: its own
/// stable id of the device (an install id), for the new-device signal.
pub const DEVICE_ID_METADATA: &str = "domicile-device-id";
/// Response header naming the region the edge chose for a request.
pub const REGION_HEADER: &str = "domicile-region";
/// Response header naming why the edge chose it (`docs/routing.md`).
pub const ROUTE_HEADER: &str = "domicile-route";
/// Response header carrying the request's trace id.
pub const TRACE_ID_HEADER: &str = "domicile-trace-id";

/// A validated region code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RegionCode(String);

/// Why a string is not a region code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid region code {0:?}: expected 2 to 16 characters, a lower-case ASCII letter followed by lower-case letters or digits"
)]
pub struct InvalidRegion(pub String);

impl RegionCode {
    /// Parses and validates a region code.
    pub fn parse(s: &str) -> Result<Self, InvalidRegion> {
        let b = s.as_bytes();
        let ok = (2..=16).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidRegion(s.chars().take(40).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RegionCode {
    type Err = InvalidRegion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(input: &str, valid: bool) {
        assert_eq!(RegionCode::parse(input).is_ok(), valid, "{input:?}");
    }

    #[test]
    fn region_codes() {
        for ok in ["eu", "us", "ap", "eu2", "a1", "abcdefghijklmnop"] {
            check(ok, true);
        }
        for bad in [
            "",
            "e",
            "EU",
            "1eu",
            "eu-west",
            "eu_1",
            "abcdefghijklmnopq",
            "é1",
            " eu",
        ] {
            check(bad, false);
        }
    }
}
