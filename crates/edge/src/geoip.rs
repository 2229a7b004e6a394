//! GeoIP: client address → ISO country, and place where the database has
//! one, from a MaxMind-format database.
//!
//! Both schemas in the wild are read: GeoIP2/GeoLite2 and DB-IP
//! (`country.iso_code`, and `location.latitude`/`longitude` in the City
//! editions) and databases with a top-level `country_code`.
//! [`build_database`] writes a small database from a readable source (one
//! `CIDR COUNTRY [LATITUDE,LONGITUDE]` per line): the repo ships one for
//! the local federation and tests, so nothing is downloaded.

use domicile_core::risk::Location;
use maxminddb::{Reader, path};
use std::{net::IpAddr, path::Path};

/// A loaded country database.
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
}

/// Why a database could not be loaded or built.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    #[error("GeoIP database {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("GeoIP source line {line}: {reason}")]
    Source { line: usize, reason: String },
    #[error("GeoIP database could not be written: {0}")]
    Write(String),
}

/// Which record layout `build_database` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// `{"country": {"iso_code": "DE"}}` (GeoIP2, GeoLite2, DB-IP).
    GeoIp2,
    /// `{"country_code": "DE"}` (some free country databases).
    CountryCode,
}

impl GeoIp {
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        let bytes = std::fs::read(path).map_err(|e| GeoIpError::Load {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_bytes(bytes).map_err(|reason| GeoIpError::Load {
            path: path.display().to_string(),
            reason,
        })
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        let reader = Reader::from_source(bytes).map_err(|e| e.to_string())?;
        Ok(Self { reader })
    }

    /// When the database was built (Unix seconds, from its metadata).
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// The ISO 3166-1 alpha-2 country of an address, if the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let found = self.reader.lookup(ip).ok()?;
        if !found.has_data() {
            return None;
        }
        let iso: Option<String> = found
            .decode_path(&path!["country", "iso_code"])
            .ok()
            .flatten();
        let code = iso.or_else(|| found.decode_path(&path!["country_code"]).ok().flatten())?;
        (code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()))
            .then(|| code.to_ascii_uppercase())
    }

    /// The place of an address (`location.latitude`/`longitude`), if the
    /// database has one for it (City editions; a Country database has
    /// none).
    pub fn location(&self, ip: IpAddr) -> Option<Location> {
        let found = self.reader.lookup(ip).ok()?;
        if !found.has_data() {
            return None;
        }
        let lat: f64 = found
            .decode_path(&path!["location", "latitude"])
            .ok()
            .flatten()?;
        let lon: f64 = found
            .decode_path(&path!["location", "longitude"])
            .ok()
            .flatten()?;
        Location::new(lat, lon).ok()
    }
}

/// Builds a database from `CIDR COUNTRY [LATITUDE,LONGITUDE]` lines (`#`
/// starts a comment; a place is written in the GeoIP2 schema only).
/// `build_epoch` (Unix seconds) goes into the metadata; the same source and
/// epoch always give the same bytes.
pub fn build_database(
    source: &str,
    schema: Schema,
    build_epoch: u64,
) -> Result<Vec<u8>, GeoIpError> {
    let database_type = match schema {
        Schema::GeoIp2 => "GeoLite2-Country",
        Schema::CountryCode => "Domicile-Country",
    };
    let mut writer = mmdb_writer::Writer::builder(database_type)
        .build_epoch(std::time::UNIX_EPOCH + std::time::Duration::from_secs(build_epoch))
        .build();
    for (i, raw) in source.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| GeoIpError::Source {
            line: i + 1,
            reason,
        };
        let mut fields = line.split_whitespace();
        let (Some(cidr), Some(country), place, None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(err(format!(
                "expected `CIDR COUNTRY [LATITUDE,LONGITUDE]`, got {line:?}"
            )));
        };
        let place = place
            .map(|p| {
                Location::parse(p).map_err(|_| err(format!("{p:?} is not LATITUDE,LONGITUDE")))
            })
            .transpose()?;
        let net: ipnet::IpNet = cidr
            .parse()
            .map_err(|_| err(format!("{cidr:?} is not a CIDR")))?;
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(err(format!(
                "{country:?} is not an upper-case ISO 3166-1 alpha-2 code"
            )));
        }
        let written = match schema {
            Schema::GeoIp2 => {
                let mut record = serde_json::json!({ "country": { "iso_code": country } });
                if let Some(p) = place {
                    record["location"] =
                        serde_json::json!({ "latitude": p.latitude, "longitude": p.longitude });
                }
                writer.insert(net, &record)
            }
            Schema::CountryCode => {
                writer.insert(net, &serde_json::json!({ "country_code": country }))
            }
        };
        written.map_err(|e| err(e.to_string()))?;
    }
    writer
        .to_bytes()
        .map_err(|e| GeoIpError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str =
        "# test\n192.0.2.0/24 DE\n198.51.100.0/24 US  # comment\n2001:db8::/32 JP\n";

    fn check(db: &GeoIp, ip: &str, expected: Option<&str>) {
        assert_eq!(db.country(ip.parse().unwrap()).as_deref(), expected, "{ip}");
    }

    #[test]
    fn both_schemas_are_read() {
        for schema in [Schema::GeoIp2, Schema::CountryCode] {
            let db = GeoIp::from_bytes(build_database(SOURCE, schema, 1).unwrap()).unwrap();
            check(&db, "192.0.2.77", Some("DE"));
            check(&db, "198.51.100.1", Some("US"));
            check(&db, "2001:db8::1", Some("JP"));
            check(&db, "203.0.113.5", None);
            check(&db, "::1", None);
        }
    }

    #[test]
    fn places_are_read_where_the_database_has_them() {
        let src = "192.0.2.0/24 DE 52.52,13.40\n198.51.100.0/24 US\n";
        let db = GeoIp::from_bytes(build_database(src, Schema::GeoIp2, 1).unwrap()).unwrap();
        let berlin = db.location("192.0.2.1".parse().unwrap()).unwrap();
        assert!((berlin.latitude - 52.52).abs() < 1e-9 && (berlin.longitude - 13.40).abs() < 1e-9);
        assert_eq!(db.location("198.51.100.1".parse().unwrap()), None);
        assert_eq!(db.location("203.0.113.1".parse().unwrap()), None);
        check(&db, "192.0.2.1", Some("DE"));
    }

    #[test]
    fn the_shipped_database_is_built_from_its_source() {
        let source = include_str!("../../../deploy/geoip/local.txt");
        let shipped = include_bytes!("../../../deploy/geoip/local.mmdb");
        let db = GeoIp::from_bytes(shipped.to_vec()).unwrap();
        let rebuilt = build_database(source, Schema::GeoIp2, db.build_epoch()).unwrap();
        assert!(
            rebuilt == shipped,
            "rebuild deploy/geoip/local.mmdb (see local.txt)"
        );
        check(&db, "203.0.113.7", Some("JP"));
        check(&db, "100.64.1.1", Some("FR"));
        check(&db, "2001:db8:1::9", Some("US"));
        assert!(db.location("192.0.2.7".parse().unwrap()).is_some());
    }

    #[test]
    fn bad_sources_name_the_line() {
        let check_err =
            |src: &str, line: usize, text: &str| match build_database(src, Schema::GeoIp2, 1) {
                Err(GeoIpError::Source { line: l, reason }) => {
                    assert!(l == line && reason.contains(text), "{l} {reason}")
                }
                other => panic!("expected a source error, got {:?}", other.map(|b| b.len())),
            };
        check_err("192.0.2.0/24\n", 1, "expected `CIDR COUNTRY");
        check_err("\n192.0.2.0/33 DE\n", 2, "not a CIDR");
        check_err("192.0.2.0/24 Germany\n", 1, "alpha-2");
        check_err("192.0.2.0/24 DE extra\n", 1, "LATITUDE,LONGITUDE");
        check_err("192.0.2.0/24 DE 91,0\n", 1, "LATITUDE,LONGITUDE");
        check_err("192.0.2.0/24 DE 52.5,13.4 extra\n", 1, "expected");
        assert!(GeoIp::from_bytes(b"not a database".to_vec()).is_err());
    }
}
