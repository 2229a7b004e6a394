//! Risk signals of a sign-in, computed from the user's own history: where
//! the sign-in comes from ([`Seen`]: the GeoIP country and location the
//! edge found for the client's address, and the device's id), what the
//! home region remembers of the user's earlier sign-ins ([`Past`]), and
//! the rule that compares them ([`assess`]).
//!
//! Pure: no I/O, no clock; the caller keeps the history (in the user's
//! home region, like the user) and decides what a signal leads to. A
//! history that knows nothing of a kind (no country, no device yet) raises
//! no signal of that kind: there is nothing to be unlike.

use crate::UnixSeconds;
use serde::{Deserialize, Serialize};

/// Faster than this between the places of two consecutive sign-ins is
/// impossible travel (a long-haul airliner does about 900 km/h).
pub const MAX_TRAVEL_KMH: f64 = 1000.0;
/// Closer than this is never impossible travel: GeoIP places a city's
/// addresses (and a mobile carrier's) tens to hundreds of kilometres apart.
pub const MIN_TRAVEL_KM: f64 = 500.0;
/// Below this the time between two sign-ins counts as this much (one
/// minute), so two sign-ins in the same second do not divide by zero.
const MIN_TRAVEL_SECONDS: i64 = 60;

/// Kept locations are rounded to this many degrees (about 11 km): enough
/// to measure travel, no more precise than the user needs to be known.
const KEPT_PRECISION: f64 = 0.1;

/// What is wrong with a place or a device id as the edge or an app sent it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeenError {
    #[error("expected an upper-case ISO 3166-1 alpha-2 country code")]
    Country,
    #[error("expected `latitude,longitude` in degrees")]
    Location,
    #[error("a device id is 16 to 128 characters of A-Z, a-z, 0-9, `-`, `_` and `.`")]
    Device,
}

/// An ISO 3166-1 alpha-2 country code.
pub fn parse_country(s: &str) -> Result<String, SeenError> {
    let s = s.trim();
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s.to_owned())
    } else {
        Err(SeenError::Country)
    }
}

/// A point on Earth, in degrees.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
}

impl Location {
    pub fn new(latitude: f64, longitude: f64) -> Result<Self, SeenError> {
        let ok = latitude.is_finite()
            && longitude.is_finite()
            && (-90.0..=90.0).contains(&latitude)
            && (-180.0..=180.0).contains(&longitude);
        if ok {
            Ok(Self {
                latitude,
                longitude,
            })
        } else {
            Err(SeenError::Location)
        }
    }

    /// `latitude,longitude`, as [`header_value`](Self::header_value) writes it.
    pub fn parse(s: &str) -> Result<Self, SeenError> {
        let (lat, lon) = s.trim().split_once(',').ok_or(SeenError::Location)?;
        let number = |t: &str| t.trim().parse::<f64>().map_err(|_| SeenError::Location);
        Self::new(number(lat)?, number(lon)?)
    }

    pub fn header_value(&self) -> String {
        format!("{:.4},{:.4}", self.latitude, self.longitude)
    }

    /// This place rounded to what the history keeps.
    pub fn coarse(&self) -> Self {
        let round = |d: f64| (d / KEPT_PRECISION).round() * KEPT_PRECISION;
        Self {
            latitude: round(self.latitude),
            longitude: round(self.longitude),
        }
    }

    /// Great-circle distance (haversine, mean Earth radius), kilometres.
    pub fn distance_km(&self, other: &Location) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0;
        let (p1, p2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dp = p2 - p1;
        let dl = (other.longitude - self.longitude).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// A device's id as its client sent it (the hosted pages' device cookie,
/// or an app's own install id): kept only as a keyed hash. `Debug` shows
/// none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(s: &str) -> Result<Self, SeenError> {
        let ok = (16..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(SeenError::Device)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceId(..)")
    }
}

/// Where a sign-in comes from, as far as is known. `device` is the keyed
/// hash of the device's id (the caller hashes it, bound to the user).
/// `Debug` says only what is known, not what it is.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub country: Option<String>,
    pub location: Option<Location>,
    pub device: Option<[u8; 32]>,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seen")
            .field("country", &self.country.is_some())
            .field("location", &self.location.is_some())
            .field("device", &self.device.is_some())
            .finish()
    }
}

/// What the home region remembers of a user's earlier sign-ins.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Past<'a> {
    pub countries: &'a [String],
    pub devices: &'a [[u8; 32]],
    /// The place and time of the last sign-in whose place was known.
    pub last: Option<(Location, UnixSeconds)>,
}

/// Why a sign-in looks unlike the user's others (audited by these names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    /// From a country none of the user's sign-ins came from.
    NewCountry,
    /// From a device none of the user's sign-ins came from.
    NewDevice,
    /// Farther from the last sign-in's place than anyone travels in the
    /// time between them.
    ImpossibleTravel,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::NewCountry => "new_country",
            Signal::NewDevice => "new_device",
            Signal::ImpossibleTravel => "impossible_travel",
        }
    }
}

/// The signals a sign-in `seen` at `now` raises against `past`.
pub fn assess(past: &Past<'_>, seen: &Seen, now: UnixSeconds) -> Vec<Signal> {
    let mut signals = Vec::new();
    if let Some(country) = &seen.country
        && !past.countries.is_empty()
        && !past.countries.contains(country)
    {
        signals.push(Signal::NewCountry);
    }
    if let Some(device) = &seen.device
        && !past.devices.is_empty()
        && !past.devices.contains(device)
    {
        signals.push(Signal::NewDevice);
    }
    if let (Some(here), Some((there, then))) = (seen.location, past.last) {
        let km = here.distance_km(&there);
        let hours = (now - then).max(MIN_TRAVEL_SECONDS) as f64 / 3600.0;
        if km >= MIN_TRAVEL_KM && km / hours > MAX_TRAVEL_KMH {
            signals.push(Signal::ImpossibleTravel);
        }
    }
    signals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lat: f64, lon: f64) -> Location {
        Location::new(lat, lon).unwrap()
    }

    const BERLIN: (f64, f64) = (52.52, 13.40);
    const PARIS: (f64, f64) = (48.86, 2.35);
    const NEW_YORK: (f64, f64) = (40.71, -74.01);
    const POTSDAM: (f64, f64) = (52.40, 13.07);

    #[test]
    fn distances_are_great_circles() {
        for (a, b, km) in [
            (BERLIN, PARIS, 878.0),
            (BERLIN, NEW_YORK, 6385.0),
            (BERLIN, BERLIN, 0.0),
            ((0.0, 0.0), (0.0, 180.0), 20015.0),
        ] {
            let d = at(a.0, a.1).distance_km(&at(b.0, b.1));
            assert!(
                (d - km).abs() < 10.0,
                "{a:?} → {b:?}: {d} km, expected ≈{km}"
            );
        }
    }

    #[test]
    fn places_and_devices_are_validated() {
        assert_eq!(Location::parse(" 52.52,13.4 ").unwrap(), at(52.52, 13.4));
        for bad in [
            "", "52.5", "91,0", "0,181", "NaN,0", "inf,1", "a,b", "1,2,3",
        ] {
            assert_eq!(Location::parse(bad), Err(SeenError::Location), "{bad:?}");
        }
        assert_eq!(parse_country("DE").unwrap(), "DE");
        for bad in ["de", "DEU", "", "D1"] {
            assert_eq!(parse_country(bad), Err(SeenError::Country), "{bad:?}");
        }
        assert!(DeviceId::parse("abcdefghijklmnop").is_ok());
        for bad in [
            "short",
            "has space in it ....",
            &"x".repeat(129),
            "ünïcödé-device-id",
        ] {
            assert_eq!(DeviceId::parse(bad), Err(SeenError::Device), "{bad:?}");
        }
        let id = DeviceId::parse("secret-device-id-0123").unwrap();
        assert!(!format!("{id:?}").contains("secret"));
        let seen = Seen {
            country: Some("DE".into()),
            ..Seen::default()
        };
        assert!(!format!("{seen:?}").contains("DE"));
    }

    #[test]
    fn kept_places_are_coarse() {
        let c = at(52.5219, 13.4132).coarse();
        assert!((c.latitude - 52.5).abs() < 1e-9 && (c.longitude - 13.4).abs() < 1e-9);
        assert_eq!(at(52.52, 13.4).header_value(), "52.5200,13.4000");
    }

    #[test]
    fn signals_compare_a_sign_in_with_the_users_own_history() {
        let countries = vec!["DE".to_owned(), "US".to_owned()];
        let devices = vec![[1u8; 32]];
        let hour = 3600;
        let berlin_an_hour_ago = Some((at(BERLIN.0, BERLIN.1), -hour));
        let berlin_a_day_ago = Some((at(BERLIN.0, BERLIN.1), -24 * hour));
        let seen = |country: Option<&str>, place: Option<(f64, f64)>, device: Option<u8>| Seen {
            country: country.map(str::to_owned),
            location: place.map(|p| at(p.0, p.1)),
            device: device.map(|d| [d; 32]),
        };
        use Signal::*;
        #[rustfmt::skip]
        let cases: Vec<(&str, Past<'_>, Seen, Vec<Signal>)> = vec![
            ("all known", Past { countries: &countries, devices: &devices, last: berlin_an_hour_ago },
                seen(Some("DE"), Some(POTSDAM), Some(1)), vec![]),
            ("new country, flown in time", Past { countries: &countries, devices: &devices, last: berlin_a_day_ago },
                seen(Some("FR"), Some(PARIS), Some(1)), vec![NewCountry]),
            ("Paris an hour after Berlin (a plane)", Past { countries: &countries, devices: &devices, last: berlin_an_hour_ago },
                seen(Some("FR"), Some(PARIS), Some(1)), vec![NewCountry]),
            ("Paris ten minutes after Berlin", Past { countries: &countries, devices: &devices, last: Some((at(BERLIN.0, BERLIN.1), -600)) },
                seen(Some("FR"), Some(PARIS), Some(1)), vec![NewCountry, ImpossibleTravel]),
            ("known country, impossible travel", Past { countries: &countries, devices: &devices, last: berlin_an_hour_ago },
                seen(Some("US"), Some(NEW_YORK), Some(1)), vec![ImpossibleTravel]),
            ("new device", Past { countries: &countries, devices: &devices, last: None },
                seen(Some("DE"), None, Some(2)), vec![NewDevice]),
            ("nothing known of the sign-in", Past { countries: &countries, devices: &devices, last: berlin_an_hour_ago },
                Seen::default(), vec![]),
            ("no history yet", Past::default(),
                seen(Some("JP"), Some(NEW_YORK), Some(9)), vec![]),
            ("same second, near", Past { last: Some((at(BERLIN.0, BERLIN.1), 0)), ..Past::default() },
                seen(None, Some(POTSDAM), None), vec![]),
            ("same second, far", Past { last: Some((at(BERLIN.0, BERLIN.1), 0)), ..Past::default() },
                seen(None, Some(PARIS), None), vec![ImpossibleTravel]),
        ];
        for (name, past, seen, expected) in cases {
            assert_eq!(assess(&past, &seen, 0), expected, "{name}");
        }
    }
}
