//! Where a sign-in comes from ([`Context`], as the transport found it:
//! the edge's GeoIP country and place of the client's address, and the
//! device's id) and what the home region makes of it: the device id
//! becomes a keyed hash bound to the user, the signals of
//! `domicile_core::risk` are computed against the user's sign-in history,
//! and a finished sign-in is added to that history.
//!
//! What a signal leads to (a second factor, or an emailed code) is
//! `second_factor`'s decision, not this module's.

use crate::{Identity, IdentityError};
use domicile_core::{
    UnixSeconds,
    risk::{self, DeviceId, Location, Seen, Signal},
};

/// Where a sign-in comes from, as far as its transport knows. `Debug`
/// says only what is known.
#[derive(Clone, Default, PartialEq)]
pub struct Context {
    /// ISO country of the client's address (the edge's GeoIP).
    pub country: Option<String>,
    /// Place of the client's address (the edge's GeoIP).
    pub location: Option<Location>,
    /// The device's id: the hosted pages' device cookie, or an app's own.
    pub device: Option<DeviceId>,
}

impl Context {
    /// The context from its transport's values: the edge's GeoIP country
    /// (`domicile-client-country`) and place (`domicile-client-location`),
    /// and the device id; a malformed one is refused, naming its header.
    pub fn parse(
        country: Option<&str>,
        location: Option<&str>,
        device: Option<&str>,
    ) -> Result<Self, IdentityError> {
        use domicile_core::region;
        Ok(Self {
            country: country
                .map(risk::parse_country)
                .transpose()
                .map_err(|e| IdentityError::invalid(region::CLIENT_COUNTRY_HEADER, e))?,
            location: location
                .map(Location::parse)
                .transpose()
                .map_err(|e| IdentityError::invalid(region::CLIENT_LOCATION_HEADER, e))?,
            device: device
                .map(DeviceId::parse)
                .transpose()
                .map_err(|e| IdentityError::invalid(region::DEVICE_ID_METADATA, e))?,
        })
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("country", &self.country.is_some())
            .field("location", &self.location.is_some())
            .field("device", &self.device.is_some())
            .finish()
    }
}

impl Identity {
    /// `context` as the history keeps it for `user_id`: the device id as
    /// a keyed hash bound to the user (so the store cannot link one device
    /// across accounts, nor recover the cookie).
    pub(crate) fn seen(&self, user_id: &str, context: &Context) -> Result<Seen, IdentityError> {
        use hmac::Mac;
        let device = match &context.device {
            Some(d) => {
                let key = self.secret.derive("sign-in devices");
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key)
                    .map_err(|e| IdentityError::internal("sign-in device", e))?;
                for part in [user_id, d.expose()] {
                    mac.update(&(part.len() as u64).to_be_bytes());
                    mac.update(part.as_bytes());
                }
                Some(mac.finalize().into_bytes().into())
            }
            None => None,
        };
        Ok(Seen {
            country: context.country.clone(),
            location: context.location,
            device,
        })
    }

    /// The signals a sign-in `seen` now raises against `user_id`'s history.
    pub(crate) async fn signals(
        &self,
        user_id: &str,
        seen: &Seen,
        now: UnixSeconds,
    ) -> Result<Vec<Signal>, IdentityError> {
        Ok(match self.store.get_history(user_id).await? {
            Some(h) => risk::assess(&h.past(), seen, now),
            None => Vec::new(),
        })
    }

    /// Adds a finished sign-in to the user's history. Best effort: a
    /// sign-in that finished is not failed by its bookkeeping (logged
    /// without personal data).
    pub(crate) async fn remember_sign_in(&self, user_id: &str, seen: &Seen) {
        if let Err(e) = self.store.record_sign_in(user_id, seen, self.now()).await {
            tracing::warn!(user_id, error = %e, "sign-in history not updated");
        }
    }
}
