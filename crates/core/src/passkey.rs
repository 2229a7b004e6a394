//! Passkey user handles: the 16 bytes an authenticator keeps with a
//! discoverable credential and hands back when it signs in. The first
//! two bytes tag the user's home region (a truncated SHA-256 of the
//! region code, which anyone holding the topology can recompute: the edge
//! routes a passwordless passkey sign-in home by it, without the index);
//! the other fourteen are a keyed hash of the user id (computed by the
//! identity nodes), so the handle names nobody outside the home region.
//!
//! It does not hash user ids itself (the key lives with the nodes) and
//! does not parse WebAuthn messages.

use crate::{RegionCode, topology::Topology};
use sha2::Digest;

/// Bytes of a user handle (webauthn-rs keeps it as a UUID).
pub const HANDLE_LEN: usize = 16;
/// Bytes of the region tag at its start.
pub const TAG_LEN: usize = 2;

/// A passkey's user handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserHandle(pub [u8; HANDLE_LEN]);

impl UserHandle {
    /// The handle of a user of `region` whose keyed id hash is `keyed`
    /// (its first fourteen bytes are used).
    pub fn new(region: &RegionCode, keyed: &[u8; 32]) -> Self {
        let mut bytes = [0u8; HANDLE_LEN];
        bytes[..TAG_LEN].copy_from_slice(&region_tag(region));
        bytes[TAG_LEN..].copy_from_slice(&keyed[..HANDLE_LEN - TAG_LEN]);
        Self(bytes)
    }

    /// A handle as an authenticator returned it: exactly sixteen bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn tag(&self) -> [u8; TAG_LEN] {
        [self.0[0], self.0[1]]
    }
}

/// The tag of `region`'s handles.
pub fn region_tag(region: &RegionCode) -> [u8; TAG_LEN] {
    let digest = sha2::Sha256::new()
        .chain_update(b"domicile passkey region:")
        .chain_update(region.as_str().as_bytes())
        .finalize();
    [digest[0], digest[1]]
}

/// The region of `topology` whose tag `handle` carries, if any.
pub fn handle_region(topology: &Topology, handle: &UserHandle) -> Option<RegionCode> {
    tag_region(topology, handle.tag())
}

/// The region of `topology` tagged `tag`. The topology refuses two
/// regions with one tag, so at most one matches.
pub fn tag_region(topology: &Topology, tag: [u8; TAG_LEN]) -> Option<RegionCode> {
    topology
        .regions
        .keys()
        .find(|code| region_tag(code) == tag)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    #[test]
    fn handles_carry_their_region_tag_and_the_keyed_hash() {
        let keyed = [9u8; 32];
        let eu = UserHandle::new(&code("eu"), &keyed);
        let us = UserHandle::new(&code("us"), &keyed);
        assert_eq!(eu.tag(), region_tag(&code("eu")));
        assert_ne!(eu.tag(), us.tag());
        assert_eq!(&eu.0[TAG_LEN..], &keyed[..HANDLE_LEN - TAG_LEN]);
        assert_eq!(UserHandle::from_slice(&eu.0), Some(eu));
        for bad in [&[][..], &[1u8; 15][..], &[1u8; 17][..]] {
            assert_eq!(UserHandle::from_slice(bad), None);
        }
    }
}
