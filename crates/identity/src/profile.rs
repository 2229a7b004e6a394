//! Profiles: reading a user's profile and changing its fields, with
//! optimistic concurrency (a concurrent change wins, we retry a few times).

use crate::{Conflict, Identity, IdentityError, Unauthenticated};
use domicile_core::{RegionCode, UnixSeconds, token::AccessClaims};
use domicile_store::{AuditKind, UserRecord};

/// Longest profile text field, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest locale tag (BCP 47 tags in practice stay under 35).
pub const MAX_LOCALE_LEN: usize = 35;
/// Attempts of an update that loses to concurrent changes.
const UPDATE_ATTEMPTS: usize = 5;

/// Validated profile fields: `None` leaves a field as it is.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProfileChange {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub locale: Option<String>,
}

impl ProfileChange {
    /// Trims and checks each field given; errors name the field.
    pub fn new(
        given: Option<String>,
        family: Option<String>,
        display: Option<String>,
        locale: Option<String>,
    ) -> Result<Self, IdentityError> {
        Ok(Self {
            given_name: given.map(|s| text("given_name", s)).transpose()?,
            family_name: family.map(|s| text("family_name", s)).transpose()?,
            display_name: display.map(|s| text("display_name", s)).transpose()?,
            locale: locale.map(self::locale).transpose()?,
        })
    }

    /// A change for `UpdateProfile`: at least one field.
    pub fn update(
        given: Option<String>,
        family: Option<String>,
        display: Option<String>,
        locale: Option<String>,
    ) -> Result<Self, IdentityError> {
        let change = Self::new(given, family, display, locale)?;
        if change == Self::default() {
            return Err(IdentityError::invalid("profile", "no field to update"));
        }
        Ok(change)
    }

    /// Applies the change to `user`; returns the names of fields that differ.
    fn apply(&self, user: &mut UserRecord) -> Vec<&'static str> {
        let mut changed = Vec::new();
        for (name, field, value) in [
            ("given_name", &mut user.given_name, &self.given_name),
            ("family_name", &mut user.family_name, &self.family_name),
            ("display_name", &mut user.display_name, &self.display_name),
            ("locale", &mut user.locale, &self.locale),
        ] {
            if let Some(v) = value
                && field != v
            {
                field.clone_from(v);
                changed.push(name);
            }
        }
        changed
    }
}

fn text(field: &'static str, s: String) -> Result<String, IdentityError> {
    let t = s.trim().to_owned();
    if t.chars().count() > MAX_NAME_CHARS {
        return Err(IdentityError::invalid(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(IdentityError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t)
}

fn locale(s: String) -> Result<String, IdentityError> {
    let ok = s.is_empty()
        || (s.len() <= MAX_LOCALE_LEN
            && s.split('-').all(|p| {
                (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            && s.split('-').next().is_some_and(|p| {
                (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic())
            }));
    if ok {
        Ok(s)
    } else {
        Err(IdentityError::invalid(
            "locale",
            "must be a BCP 47 language tag such as \"en-GB\"",
        ))
    }
}

/// A user's profile as the API shows it. Personal data: its `Debug` shows
/// only the user id and region.
#[derive(Clone, PartialEq, Eq)]
pub struct Profile {
    pub user_id: String,
    pub region: RegionCode,
    pub email: String,
    pub email_verified: bool,
    /// The verified phone number (E.164), if any.
    pub phone_number: Option<String>,
    /// A number waiting for its code, masked (`+49•••••••••78`), if any.
    pub pending_phone: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub display_name: String,
    pub locale: String,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("user_id", &self.user_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Identity {
    async fn user(&self, claims: &AccessClaims) -> Result<UserRecord, IdentityError> {
        self.store
            .get_user(&claims.sub)
            .await?
            .ok_or_else(|| Unauthenticated::UserGone.into())
    }

    /// The user record of the bearer token's user.
    pub(crate) async fn bearer_user(&self, bearer: &str) -> Result<UserRecord, IdentityError> {
        self.user(&self.authorize(bearer).await?).await
    }

    /// Writes `user` with `change` applied as its next version, unless it
    /// changed since it was read: the user as now stored, or
    /// `Conflict::ProfileChanged` (nothing written).
    pub(crate) async fn save_user(
        &self,
        user: &UserRecord,
        change: impl FnOnce(&mut UserRecord),
    ) -> Result<UserRecord, IdentityError> {
        let user = self.settle(user.clone()).await?;
        self.write_user(&user, change).await
    }

    /// `save_user` without the move check: for the compliance operations
    /// that set or take off a move's mark themselves.
    pub(crate) async fn write_user(
        &self,
        user: &UserRecord,
        change: impl FnOnce(&mut UserRecord),
    ) -> Result<UserRecord, IdentityError> {
        let mut updated = user.clone();
        change(&mut updated);
        updated.version = user.version + 1;
        updated.updated_at = self.now();
        if self
            .store
            .update_user(&updated, user.version)
            .await?
            .is_applied()
        {
            Ok(updated)
        } else {
            Err(crate::Conflict::ProfileChanged.into())
        }
    }

    pub(crate) fn profile(&self, u: &UserRecord) -> Profile {
        Profile {
            user_id: u.user_id.clone(),
            region: self.region.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            phone_number: u.phone.clone(),
            pending_phone: u
                .pending_phone
                .as_deref()
                .map(domicile_core::phone::mask_stored),
            given_name: u.given_name.clone(),
            family_name: u.family_name.clone(),
            display_name: u.display_name.clone(),
            locale: u.locale.clone(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }

    /// The profile of the bearer's user.
    pub async fn get_profile(&self, bearer: &str) -> Result<Profile, IdentityError> {
        let claims = self.authorize(bearer).await?;
        Ok(self.profile(&self.user(&claims).await?))
    }

    /// Changes the bearer's profile; audited with the names of the fields
    /// that changed (never their values).
    pub async fn update_profile(
        &self,
        bearer: &str,
        change: &ProfileChange,
    ) -> Result<Profile, IdentityError> {
        let claims = self.authorize(bearer).await?;
        for _ in 0..UPDATE_ATTEMPTS {
            // Not while a move touches the account.
            let current = self.settle(self.user(&claims).await?).await?;
            let mut next = current.clone();
            let changed = change.apply(&mut next);
            next.version = current.version + 1;
            next.updated_at = self.now();
            if self
                .store
                .update_user(&next, current.version)
                .await?
                .is_applied()
            {
                self.audit.record(
                    &next.user_id,
                    AuditKind::ProfileUpdated,
                    Some(&claims.sid),
                    format!("changed: {}", changed.join(", ")),
                );
                return Ok(self.profile(&next));
            }
        }
        Err(Conflict::ProfileChanged.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_locale(s: &str, ok: bool) {
        assert_eq!(locale(s.into()).is_ok(), ok, "{s:?}");
    }

    #[test]
    fn locales() {
        for s in ["", "en", "en-GB", "zh-Hant-TW", "es-419"] {
            check_locale(s, true);
        }
        for s in [
            "e",
            "english-language",
            "en_GB",
            "-en",
            "en--GB",
            "12-AB",
            &"en-".repeat(20),
        ] {
            check_locale(s, false);
        }
    }

    #[test]
    fn profiles_do_not_print_personal_data() {
        let p = Profile {
            user_id: "usr_eu_01JD0000000000000000000001".into(),
            region: RegionCode::parse("eu").unwrap(),
            email: "ada@example.net".into(),
            email_verified: false,
            phone_number: Some("+4915112345678".into()),
            pending_phone: Some("+33•••••••78".into()),
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            display_name: "Countess".into(),
            locale: "en-GB".into(),
            created_at: 1,
            updated_at: 2,
        };
        let shown = format!("{p:?} {p:#?}");
        for secret in [
            "ada@",
            "example.net",
            "Ada",
            "Lovelace",
            "Countess",
            "151123",
            "+33",
        ] {
            assert!(!shown.contains(secret), "{shown} shows {secret}");
        }
    }
}
