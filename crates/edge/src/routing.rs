//! The routing decision: which region serves a request, and why.
//!
//! Pure: the proxy gathers the facts (artifact region, index answer, email
//! domain, preference, GeoIP country) and this function applies the brief's
//! table, first rule that applies wins. No sockets, no clock.

use domicile_core::{
    RegionCode,
    residency::{self, Placement, PlacementError},
    topology::Topology,
};
use std::fmt;

/// Why a region was chosen (the `domicile-route` header and metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A routable artifact named the region (token `rgn`, id or token prefix).
    Artifact,
    /// The home-region index knows the identifier.
    Index,
    /// An email-domain rule (compliance pin) places the identifier.
    Domain,
    /// The user chose the region at registration, as policy allows.
    Preference,
    /// The client's country is assigned to the region.
    Geoip,
    /// Nothing else applied.
    Default,
    /// A node answered that the user lives elsewhere; the edge followed.
    Redirect,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Artifact => "artifact",
            Reason::Index => "index",
            Reason::Domain => "domain",
            Reason::Preference => "preference",
            Reason::Geoip => "geoip",
            Reason::Default => "default",
            Reason::Redirect => "redirect",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the edge learned about a request before deciding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Region named by a routable artifact in the request.
    pub artifact: Option<RegionCode>,
    /// Region the home-region index gives for the request's identifier.
    pub indexed: Option<RegionCode>,
    /// ASCII domain of the request's email identifier.
    pub email_domain: Option<String>,
    /// Region the user asked for (registration only).
    pub preference: Option<String>,
    /// ISO country of the client address.
    pub country: Option<String>,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub region: RegionCode,
    pub reason: Reason,
}

/// Applies the routing table. Regions not in the topology are ignored. A
/// region preference that cannot be honoured (unknown region, or users may
/// not choose) is refused, exactly as the node refuses it: the same
/// `residency::placement` decides both (see `docs/routing.md`).
pub fn route(topology: &Topology, facts: &Facts) -> Result<Route, PlacementError> {
    let known = |r: &RegionCode| topology.region(r).is_some();
    let pick = |region: &RegionCode, reason| Route {
        region: region.clone(),
        reason,
    };
    let placement = residency::placement(
        topology,
        facts.email_domain.as_deref(),
        facts.preference.as_deref(),
    )?;
    if let Some(r) = facts.artifact.as_ref().filter(|r| known(r)) {
        return Ok(pick(r, Reason::Artifact));
    }
    if let Some(r) = facts.indexed.as_ref().filter(|r| known(r)) {
        return Ok(pick(r, Reason::Index));
    }
    match &placement {
        Placement::Pinned(r) => return Ok(pick(r, Reason::Domain)),
        Placement::Chosen(r) => return Ok(pick(r, Reason::Preference)),
        Placement::Free => {}
    }
    if let Some(r) = facts
        .country
        .as_deref()
        .and_then(|c| topology.region_for_country(c))
    {
        return Ok(pick(r, Reason::Geoip));
    }
    Ok(pick(&topology.federation.default_region, Reason::Default))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn topology(allow_preference: bool) -> Topology {
        let text = residency::cases::federation_toml(allow_preference);
        Topology::parse(Path::new("t.toml"), &text).unwrap()
    }

    fn r(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    struct Case {
        artifact: Option<&'static str>,
        indexed: Option<&'static str>,
        domain: Option<&'static str>,
        preference: Option<&'static str>,
        country: Option<&'static str>,
    }

    const NONE: Case = Case {
        artifact: None,
        indexed: None,
        domain: None,
        preference: None,
        country: None,
    };

    fn check(t: &Topology, c: Case, region: &str, reason: Reason) {
        let facts = Facts {
            artifact: c.artifact.map(r),
            indexed: c.indexed.map(r),
            email_domain: c.domain.map(str::to_owned),
            preference: c.preference.map(str::to_owned),
            country: c.country.map(str::to_owned),
        };
        assert_eq!(
            route(t, &facts),
            Ok(Route {
                region: r(region),
                reason
            }),
            "{facts:?}"
        );
    }

    #[test]
    fn each_row_of_the_table() {
        let t = topology(true);
        check(
            &t,
            Case {
                artifact: Some("ap"),
                ..NONE
            },
            "ap",
            Reason::Artifact,
        );
        check(
            &t,
            Case {
                indexed: Some("us"),
                ..NONE
            },
            "us",
            Reason::Index,
        );
        check(
            &t,
            Case {
                domain: Some("example.de"),
                ..NONE
            },
            "eu",
            Reason::Domain,
        );
        check(
            &t,
            Case {
                domain: Some("mail.eu.example.org"),
                ..NONE
            },
            "eu",
            Reason::Domain,
        );
        check(
            &t,
            Case {
                preference: Some("ap"),
                ..NONE
            },
            "ap",
            Reason::Preference,
        );
        check(
            &t,
            Case {
                country: Some("JP"),
                ..NONE
            },
            "ap",
            Reason::Geoip,
        );
        check(
            &t,
            Case {
                country: Some("us"),
                ..NONE
            },
            "us",
            Reason::Geoip,
        );
        check(&t, NONE, "eu", Reason::Default);
    }

    #[test]
    fn precedence_between_rows() {
        let t = topology(true);
        let all = Case {
            artifact: Some("ap"),
            indexed: Some("us"),
            domain: Some("example.de"),
            preference: Some("us"),
            country: Some("US"),
        };
        check(&t, all, "ap", Reason::Artifact);
        // The index beats a domain rule: an existing user stays where they live.
        check(
            &t,
            Case {
                indexed: Some("us"),
                domain: Some("example.de"),
                preference: Some("ap"),
                country: Some("JP"),
                ..NONE
            },
            "us",
            Reason::Index,
        );
        // A compliance pin beats the user's choice and GeoIP.
        check(
            &t,
            Case {
                domain: Some("example.com"),
                preference: Some("eu"),
                country: Some("JP"),
                ..NONE
            },
            "us",
            Reason::Domain,
        );
        // A preference beats GeoIP.
        check(
            &t,
            Case {
                preference: Some("eu"),
                country: Some("JP"),
                ..NONE
            },
            "eu",
            Reason::Preference,
        );
        // An unpinned domain falls through to the next rows.
        check(
            &t,
            Case {
                domain: Some("gmail.com"),
                country: Some("JP"),
                ..NONE
            },
            "ap",
            Reason::Geoip,
        );
    }

    /// The residency rule's shared case table, as the edge applies it: a
    /// required region routes there (`domain` or `preference`), a free
    /// identifier falls through to GeoIP, a refused preference is refused.
    #[test]
    fn the_shared_residency_cases() {
        let (open, closed) = (topology(true), topology(false));
        for (allow, domain, preference, want) in residency::cases::CASES {
            let t = if *allow { &open } else { &closed };
            let facts = Facts {
                email_domain: Some((*domain).to_owned()),
                preference: Some((*preference).to_owned()),
                country: Some("JP".into()),
                ..Facts::default()
            };
            let got = route(t, &facts);
            let as_placement = got.clone().map(|r| match r.reason {
                Reason::Domain => Placement::Pinned(r.region),
                Reason::Preference => Placement::Chosen(r.region),
                _ => Placement::Free,
            });
            assert!(
                residency::cases::matches(&as_placement, want),
                "allow={allow} {domain} {preference:?}: got {got:?}, want {want:?}"
            );
            if let Ok(Route {
                reason: Reason::Geoip,
                region,
            }) = &got
            {
                assert_eq!(
                    region.as_str(),
                    "ap",
                    "a free identifier falls through to GeoIP"
                );
            }
        }
    }

    #[test]
    fn unknown_regions_named_by_facts_are_ignored() {
        let t = topology(true);
        check(
            &t,
            Case {
                artifact: Some("mars"),
                country: Some("JP"),
                ..NONE
            },
            "ap",
            Reason::Geoip,
        );
        check(
            &t,
            Case {
                indexed: Some("mars"),
                ..NONE
            },
            "eu",
            Reason::Default,
        );
        check(
            &t,
            Case {
                country: Some("BR"),
                ..NONE
            },
            "eu",
            Reason::Default,
        );
    }
}
