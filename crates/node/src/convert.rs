//! Wire types stop here: every request is turned into a validated input
//! before any logic runs, so bad input is refused before anything is read or
//! written.

use crate::error::NodeError;
use domicile_core::{RegionCode, email::Email, ids::RefreshToken, password};
use domicile_proto::v1 as pb;

/// Longest profile text field, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest locale tag (BCP 47 tags in practice stay under 35).
pub const MAX_LOCALE_LEN: usize = 35;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProfileInput {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub locale: Option<String>,
}

pub struct RegisterInput {
    pub email: Email,
    pub password: String,
    pub profile: ProfileInput,
    pub preference: Option<String>,
}

pub struct LoginInput {
    pub email: Email,
    pub password: String,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> NodeError {
    NodeError::Invalid(format!("{field}: {why}"))
}

fn email(s: &str) -> Result<Email, NodeError> {
    Email::parse(s).map_err(|e| invalid("email", e))
}

fn text(field: &str, s: String) -> Result<String, NodeError> {
    let t = s.trim().to_owned();
    if t.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(t)
}

fn locale(s: String) -> Result<String, NodeError> {
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
        Err(invalid(
            "locale",
            "must be a BCP 47 language tag such as \"en-GB\"",
        ))
    }
}

impl ProfileInput {
    fn from_fields(
        given: Option<String>,
        family: Option<String>,
        display: Option<String>,
        loc: Option<String>,
    ) -> Result<Self, NodeError> {
        Ok(Self {
            given_name: given.map(|s| text("given_name", s)).transpose()?,
            family_name: family.map(|s| text("family_name", s)).transpose()?,
            display_name: display.map(|s| text("display_name", s)).transpose()?,
            locale: loc.map(locale).transpose()?,
        })
    }
}

impl TryFrom<pb::RegisterRequest> for RegisterInput {
    type Error = NodeError;
    fn try_from(r: pb::RegisterRequest) -> Result<Self, NodeError> {
        let email = email(&r.email)?;
        password::check_policy(&r.password).map_err(|e| invalid("password", e))?;
        let p = r.profile.unwrap_or_default();
        let profile = ProfileInput::from_fields(
            Some(p.given_name),
            Some(p.family_name),
            Some(p.display_name),
            Some(p.locale),
        )?;
        let preference = match r.region_preference.trim() {
            "" => None,
            code => {
                RegionCode::parse(code).map_err(|e| invalid("region_preference", e))?;
                Some(code.to_owned())
            }
        };
        Ok(Self {
            email,
            password: r.password,
            profile,
            preference,
        })
    }
}

impl TryFrom<pb::LoginRequest> for LoginInput {
    type Error = NodeError;
    fn try_from(r: pb::LoginRequest) -> Result<Self, NodeError> {
        let email = email(&r.email)?;
        if r.password.is_empty() {
            return Err(invalid("password", "must not be empty"));
        }
        if r.password.len() > password::MAX_PASSWORD_BYTES {
            return Err(invalid("password", password::PasswordError::TooLong));
        }
        Ok(Self {
            email,
            password: r.password,
        })
    }
}

pub fn refresh_token(s: &str) -> Result<RefreshToken, NodeError> {
    if s.is_empty() {
        return Err(invalid("refresh_token", "must not be empty"));
    }
    RefreshToken::parse(s).map_err(|e| invalid("refresh_token", e))
}

impl TryFrom<pb::UpdateProfileRequest> for ProfileInput {
    type Error = NodeError;
    fn try_from(r: pb::UpdateProfileRequest) -> Result<Self, NodeError> {
        let p = ProfileInput::from_fields(r.given_name, r.family_name, r.display_name, r.locale)?;
        if p == ProfileInput::default() {
            return Err(NodeError::Invalid("no field to update".into()));
        }
        Ok(p)
    }
}

/// The bearer token from `authorization: Bearer <token>` metadata.
pub fn bearer(md: &tonic::metadata::MetadataMap) -> Result<String, NodeError> {
    let v = md.get("authorization").ok_or_else(|| {
        NodeError::Unauthenticated("missing authorization metadata (Bearer access token)".into())
    })?;
    let s = v
        .to_str()
        .map_err(|_| NodeError::Unauthenticated("authorization metadata is not ASCII".into()))?;
    let (scheme, token) = s.split_once(' ').ok_or_else(|| {
        NodeError::Unauthenticated("authorization must be \"Bearer <token>\"".into())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(NodeError::Unauthenticated(
            "authorization must be \"Bearer <token>\"".into(),
        ));
    }
    Ok(token.trim().to_owned())
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
    fn register_requests() {
        let ok = pb::RegisterRequest {
            email: "A@Example.com".into(),
            password: "long enough".into(),
            ..Default::default()
        };
        let r = RegisterInput::try_from(ok.clone()).unwrap();
        assert_eq!(r.email.as_str(), "a@example.com");
        let cases: Vec<(pb::RegisterRequest, &str)> = vec![
            (pb::RegisterRequest::default(), "email"),
            (
                pb::RegisterRequest {
                    password: "short".into(),
                    ..ok.clone()
                },
                "password",
            ),
            (
                pb::RegisterRequest {
                    password: "x".repeat(1025),
                    ..ok.clone()
                },
                "password",
            ),
            (
                pb::RegisterRequest {
                    region_preference: "EU!".into(),
                    ..ok.clone()
                },
                "region_preference",
            ),
            (
                pb::RegisterRequest {
                    profile: Some(pb::ProfileFields {
                        given_name: "a\u{0}b".into(),
                        ..Default::default()
                    }),
                    ..ok.clone()
                },
                "given_name",
            ),
            (
                pb::RegisterRequest {
                    profile: Some(pb::ProfileFields {
                        display_name: "x".repeat(257),
                        ..Default::default()
                    }),
                    ..ok
                },
                "display_name",
            ),
        ];
        for (req, field) in cases {
            match RegisterInput::try_from(req) {
                Err(NodeError::Invalid(m)) => {
                    assert!(m.starts_with(field), "{m} should name {field}")
                }
                _ => panic!("expected an error naming {field}"),
            }
        }
    }
}
