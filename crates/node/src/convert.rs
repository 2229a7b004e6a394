//! Wire types stop here: every request is turned into a validated input of
//! the use cases before any logic runs, so bad input is refused before
//! anything is read or written; every result is turned back into its wire
//! type here too.

use domicile_identity::{
    IdentityError, Unauthenticated,
    login::Credentials,
    messages::Login,
    profile::{Profile, ProfileChange},
    registration::Registration,
    risk::Context,
    sessions::Authenticated,
};
use domicile_proto::v1 as pb;

/// Converts a `RegisterRequest`; errors name the field.
pub fn registration(r: pb::RegisterRequest) -> Result<Registration, IdentityError> {
    let p = r.profile.unwrap_or_default();
    let profile = ProfileChange::new(
        Some(p.given_name),
        Some(p.family_name),
        Some(p.display_name),
        Some(p.locale),
    )?;
    Registration::new(&r.email, r.password, profile, &r.region_preference)
}

/// Converts a `LoginRequest` and where it comes from; errors name the
/// field.
pub fn credentials(
    md: &tonic::metadata::MetadataMap,
    r: pb::LoginRequest,
) -> Result<Credentials, IdentityError> {
    let mut c = Credentials::new(&r.email, r.password)?;
    c.context = context(md)?;
    Ok(c)
}

/// Where a sign-in over the API comes from: the edge's GeoIP headers and
/// the app's device id (`domicile-device-id`).
pub fn context(md: &tonic::metadata::MetadataMap) -> Result<Context, IdentityError> {
    sign_in_context(|name| md.get(name).and_then(|v| v.to_str().ok()), None)
}

/// Where a sign-in comes from, from its headers (`get`): the edge's GeoIP
/// country and place, and the device id (`device`, else the
/// `domicile-device-id` header). A malformed value is refused, naming the
/// header.
pub fn sign_in_context<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    device: Option<&str>,
) -> Result<Context, IdentityError> {
    use domicile_core::region;
    Context::parse(
        get(region::CLIENT_COUNTRY_HEADER),
        get(region::CLIENT_LOCATION_HEADER),
        device.or_else(|| get(region::DEVICE_ID_METADATA)),
    )
}

/// Converts an `UpdateProfileRequest`: at least one field.
pub fn profile_change(r: pb::UpdateProfileRequest) -> Result<ProfileChange, IdentityError> {
    ProfileChange::update(r.given_name, r.family_name, r.display_name, r.locale)
}

/// The bearer token from `authorization: Bearer <token>` metadata.
pub fn bearer(md: &tonic::metadata::MetadataMap) -> Result<String, IdentityError> {
    let v = md
        .get("authorization")
        .ok_or(Unauthenticated::MissingBearer)?;
    let s = v.to_str().map_err(|_| Unauthenticated::MalformedBearer)?;
    let (scheme, token) = s.split_once(' ').ok_or(Unauthenticated::MalformedBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Unauthenticated::MalformedBearer.into());
    }
    Ok(token.trim().to_owned())
}

pub fn auth_response(a: Authenticated) -> pb::AuthResponse {
    pb::AuthResponse {
        user_id: a.user_id,
        region: a.region.to_string(),
        access_token: a.access_token,
        token_type: a.token_type.into(),
        expires_in: a.expires_in,
        refresh_token: a.refresh_token,
        refresh_expires_in: a.refresh_expires_in,
        session_id: a.session_id,
    }
}

pub fn factors(f: domicile_identity::mfa::FactorStatus) -> pb::Factors {
    pb::Factors {
        totp: f.totp,
        totp_enrolled_at: f.totp_enrolled_at.unwrap_or_default(),
        totp_pending: f.totp_pending,
        recovery_codes_left: u32::try_from(f.recovery_codes_left).unwrap_or(u32::MAX),
    }
}

pub fn profile(p: Profile) -> pb::Profile {
    pb::Profile {
        user_id: p.user_id,
        region: p.region.to_string(),
        email: p.email,
        email_verified: p.email_verified,
        given_name: p.given_name,
        family_name: p.family_name,
        display_name: p.display_name,
        locale: p.locale,
        created_at: p.created_at,
        updated_at: p.updated_at,
        phone_number: p.phone_number.unwrap_or_default(),
        pending_phone: p.pending_phone.unwrap_or_default(),
    }
}

/// The client's address the edge saw (`domicile-client-address`), if any.
fn client_address(md: &tonic::metadata::MetadataMap) -> Option<std::net::IpAddr> {
    md.get(domicile_core::region::CLIENT_ADDRESS_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Who asks for a message over the API: the client's address only.
pub fn asked_from(md: &tonic::metadata::MetadataMap) -> domicile_identity::messages::Asked {
    domicile_identity::messages::Asked {
        address: client_address(md),
        ..Default::default()
    }
}

/// Who asks for a code over the API: the address, and the message's app
/// (an unknown client id gets the federation's neutral branding) and
/// language (a malformed tag is refused).
pub fn asked(
    md: &tonic::metadata::MetadataMap,
    r: &pb::RequestCodeRequest,
) -> Result<domicile_identity::messages::Asked, IdentityError> {
    let client_id = match r.client_id.trim() {
        "" => None,
        id => Some(id.to_owned()),
    };
    let locale = match r.locale.trim() {
        "" => None,
        l if l.len() <= 35
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some(l.to_owned())
        }
        _ => {
            return Err(IdentityError::Invalid {
                field: "locale",
                reason: "must be a language tag such as de or en-GB".into(),
            });
        }
    };
    Ok(domicile_identity::messages::Asked {
        client_id,
        locale,
        ..asked_from(md)
    })
}

/// The email or the phone number: exactly one of them.
pub fn login<'a>(email: &'a str, phone: &'a str) -> Result<Login<'a>, IdentityError> {
    match (email.is_empty(), phone.is_empty()) {
        (false, true) => Ok(Login::Email(email)),
        (true, false) => Ok(Login::Phone(phone)),
        _ => Err(IdentityError::Invalid {
            field: "email",
            reason: "give the email or the phone number (one of them)".into(),
        }),
    }
}

/// A code with its address or number, or a link: exactly one of them.
pub fn proof<'a>(
    email: &'a str,
    phone: &'a str,
    link: &'a str,
    code: &'a str,
) -> Result<domicile_identity::one_time::Proof<'a>, IdentityError> {
    use domicile_identity::one_time::Proof;
    let code_given = !(email.is_empty() && phone.is_empty() && code.is_empty());
    match (code_given, link.is_empty()) {
        (true, true) => Ok(Proof::Code {
            login: login(email, phone)?,
            code,
        }),
        (false, false) => Ok(Proof::Link(link)),
        _ => Err(IdentityError::Invalid {
            field: "link",
            reason: "give the email or phone number and its code, or the link".into(),
        }),
    }
}

/// A passkey as the API shows it (no key material).
pub fn passkey(k: domicile_identity::passkeys::PasskeyInfo) -> pb::Passkey {
    pb::Passkey {
        id: k.id,
        name: k.name,
        created_at: k.created_at,
        last_used_at: k.last_used_at.unwrap_or(0),
    }
}

pub fn passkeys(list: Vec<domicile_identity::passkeys::PasskeyInfo>) -> pb::Passkeys {
    pb::Passkeys {
        passkeys: list.into_iter().map(passkey).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_requests() {
        let ok = pb::RegisterRequest {
            email: "A@Example.com".into(),
            password: "long enough".into(),
            ..Default::default()
        };
        let r = registration(ok.clone()).unwrap();
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
            match registration(req) {
                Err(e @ IdentityError::Invalid { .. }) => {
                    let m = e.to_string();
                    assert!(m.starts_with(field), "{m} should name {field}")
                }
                _ => panic!("expected an error naming {field}"),
            }
        }
    }
}
