//! The stored format: one version byte, then the record as JSON.
//!
//! Version 1 is the only format so far. A reader meeting a newer version
//! refuses it (it must not guess); an older version would be migrated in
//! `decode` by upgrading the value before use.

use serde::{Serialize, de::DeserializeOwned};

/// The format this build writes.
pub const FORMAT_VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = vec![FORMAT_VERSION];
    serde_json::to_writer(&mut out, value).map_err(|e| e.to_string())?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => serde_json::from_slice(body).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!("unknown record format version {v}")),
        None => Err("empty record".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let bytes = encode(&("a", 1)).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<(String, i32)>(&bytes), Ok(("a".into(), 1)));
        assert!(
            decode::<(String, i32)>(&[9, b'{', b'}'])
                .unwrap_err()
                .contains("version 9")
        );
        assert!(decode::<(String, i32)>(&[]).is_err());
        assert!(decode::<(String, i32)>(&[1, b'x']).is_err());
    }
}
