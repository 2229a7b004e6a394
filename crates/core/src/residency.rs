//! The residency rule: where an identifier must live before it exists.
//!
//! One function, [`placement`], answers it for the edge (which routes a new
//! registration there) and for the node (which refuses to register an
//! identifier that must live elsewhere), so the two can never disagree.
//!
//! The rule, first match wins:
//! 1. the email domain matches a rule of `regions.toml`: a compliance pin,
//!    it beats the user's choice ([`Placement::Pinned`]);
//! 2. the user chose a region, and the federation lets users choose
//!    ([`Placement::Chosen`]);
//! 3. otherwise any region may take it ([`Placement::Free`]; GeoIP and the
//!    default region are placement hints, not rules).
//!
//! A preference that names no region of the federation, or any preference
//! where the federation does not let users choose, is refused
//! ([`PlacementError`]) whatever the domain says: the user asked for a
//! legal home we cannot give, and placing them elsewhere without telling
//! them would betray that choice. It is bad input and changes nothing.
//!
//! It does not cover users who already exist: their region is the index's
//! answer or their artifacts' region tag, never recomputed from rules.

use crate::{RegionCode, topology::Topology};

/// Where a new identifier must be homed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// An email-domain rule pins it to this region.
    Pinned(RegionCode),
    /// The user chose this region, as the federation allows.
    Chosen(RegionCode),
    /// Any region may take it.
    Free,
}

impl Placement {
    /// The region it must live in, if any.
    pub fn required(&self) -> Option<&RegionCode> {
        match self {
            Placement::Pinned(r) | Placement::Chosen(r) => Some(r),
            Placement::Free => None,
        }
    }
}

/// A region preference that cannot be honoured.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("this federation does not let users choose a region")]
    PreferenceNotAllowed,
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
}

/// Where an identifier with this (normalized, ASCII) email domain and this
/// region preference must be homed. An empty preference is no preference.
pub fn placement(
    topology: &Topology,
    email_domain: Option<&str>,
    preference: Option<&str>,
) -> Result<Placement, PlacementError> {
    let chosen = match preference.map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some(_) if !topology.federation.allow_region_preference => {
            return Err(PlacementError::PreferenceNotAllowed);
        }
        Some(code) => Some(
            topology
                .known_region(code)
                .cloned()
                .ok_or_else(|| PlacementError::UnknownRegion(code.to_owned()))?,
        ),
    };
    if let Some(pinned) = email_domain.and_then(|d| topology.region_for_domain(d)) {
        return Ok(Placement::Pinned(pinned.clone()));
    }
    Ok(chosen.map_or(Placement::Free, Placement::Chosen))
}

/// The case table both sides test against: (allow preference, email domain,
/// preference, expected placement). Shared so the edge's routing test and
/// the node's enforcement test check the very same cases.
pub mod cases {
    use super::{Placement, PlacementError};

    /// What a case expects: `Ok(Some(region))` must live there, `Ok(None)`
    /// free, `Err` refused.
    pub type Expected = Result<Option<&'static str>, PlacementError>;

    /// One row: `allow_region_preference`, domain, preference, expectation.
    pub type Case = (bool, &'static str, &'static str, Expected);

    /// The federation these cases assume, as `regions.toml` text: regions
    /// eu (domain `example.de`, `*.eu.example.org`; countries DE, FR), us
    /// (`example.com`; US) and ap (JP), no rule for `example.net`. The
    /// edge's routing tests and this module's tests parse it; the node
    /// suites' fixture has the same rules.
    pub fn federation_toml(allow_preference: bool) -> String {
        format!(
            r#"
[federation]
name = "t"
issuer = "https://id.example"
default_region = "eu"
allow_region_preference = {allow_preference}
[index]
host_region = "eu"
secret_file = "k"
store = {{ backend = "embedded", path = "i" }}
[regions.eu]
residency = "EU"
countries = ["DE", "FR"]
email_domains = ["example.de", "*.eu.example.org"]
nodes = [{{ address = "127.0.0.1:1" }}]
store = {{ backend = "embedded", path = "eu" }}
[regions.us]
residency = "US"
countries = ["US"]
email_domains = ["example.com"]
nodes = [{{ address = "127.0.0.1:2" }}]
store = {{ backend = "embedded", path = "us" }}
[regions.ap]
residency = "AP"
countries = ["JP"]
nodes = [{{ address = "127.0.0.1:3" }}]
store = {{ backend = "embedded", path = "ap" }}
"#
        )
    }

    pub const CASES: &[Case] = &[
        (true, "example.net", "", Ok(None)),
        (true, "example.net", "ap", Ok(Some("ap"))),
        (true, "example.net", "  us ", Ok(Some("us"))),
        (true, "example.de", "", Ok(Some("eu"))),
        // A pin beats the user's choice.
        (true, "example.de", "us", Ok(Some("eu"))),
        (true, "a.eu.example.org", "ap", Ok(Some("eu"))),
        (true, "example.com", "", Ok(Some("us"))),
        // Unknown regions are refused, pinned domain or not.
        (
            true,
            "example.net",
            "mars",
            Err(PlacementError::UnknownRegion(String::new())),
        ),
        (
            true,
            "example.de",
            "mars",
            Err(PlacementError::UnknownRegion(String::new())),
        ),
        // Where users may not choose, any choice is refused.
        (
            false,
            "example.net",
            "eu",
            Err(PlacementError::PreferenceNotAllowed),
        ),
        (
            false,
            "example.de",
            "eu",
            Err(PlacementError::PreferenceNotAllowed),
        ),
        (false, "example.net", "", Ok(None)),
        (false, "example.com", "", Ok(Some("us"))),
    ];

    /// Whether `got` is what `want` expects (unknown-region errors compare
    /// by kind: the case table does not restate the code).
    pub fn matches(got: &Result<Placement, PlacementError>, want: &Expected) -> bool {
        match (got, want) {
            (Ok(p), Ok(w)) => p.required().map(|r| r.as_str()) == *w,
            (Err(PlacementError::UnknownRegion(_)), Err(PlacementError::UnknownRegion(_))) => true,
            (Err(g), Err(w)) => g == w,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn federation(allow_preference: bool) -> Topology {
        let text = cases::federation_toml(allow_preference);
        match Topology::parse(std::path::Path::new("t.toml"), &text) {
            Ok(t) => t,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    #[test]
    fn the_shared_case_table() {
        let (open, closed) = (federation(true), federation(false));
        for (allow, domain, preference, want) in cases::CASES {
            let t = if *allow { &open } else { &closed };
            let got = placement(t, Some(domain), Some(preference));
            assert!(
                cases::matches(&got, want),
                "allow={allow} {domain} {preference:?}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn no_domain_and_no_preference_is_free() {
        assert_eq!(
            placement(&federation(true), None, None),
            Ok(Placement::Free)
        );
    }
}
