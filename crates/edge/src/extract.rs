//! What a request says about its user, read from the request itself: the
//! region of a routable artifact (bearer token, refresh token) and, for
//! identifier-bearing RPCs, the email or phone number and region preference
//! in the first (only) message. Bounded and allocation-light; never logs what it reads.

use base64::Engine as _;
use domicile_core::{
    RegionCode,
    email::Email,
    ids::{ArtifactKind, parse_artifact},
    phone::Phone,
    token::Kid,
};
use domicile_proto::v1 as pb;
use prost::Message;

/// Largest request body the edge reads (and proxies) for Identity RPCs.
pub const MAX_BODY: usize = 64 * 1024;

/// How the edge reads an RPC's request message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    Register,
    Login,
    /// Refresh, and CompleteSignIn: an artifact (a refresh token, a pending
    /// sign-in's `mfa_` token) in tag 1.
    Refresh,
    Logout,
    /// Authorized by the bearer token only (GetProfile, UpdateProfile,
    /// SendVerification).
    Bearer,
    /// RequestCode: its `email` or `phone`.
    RequestCode,
    /// ResetPassword, SignInWithCode, VerifyEmail: the `email` with its
    /// code, or the `link` (an `ol_` artifact). The three share these
    /// fields' tags, so one message type reads all three.
    CodeProof,
    /// Names nobody (StartPasskeySignIn): routed like a request without
    /// an identifier (GeoIP, the default region).
    Anonymous,
    /// PasskeySignIn: the user handle in its credential (tag 2), whose
    /// first bytes tag the home region.
    PasskeySignIn,
}

/// The Identity RPCs the edge proxies, and how to read each. New
/// identifier-bearing RPCs are added here.
pub const IDENTITY_RPCS: &[(&str, Rpc)] = &[
    ("/domicile.v1.Identity/Register", Rpc::Register),
    ("/domicile.v1.Identity/Login", Rpc::Login),
    ("/domicile.v1.Identity/Refresh", Rpc::Refresh),
    ("/domicile.v1.Identity/Logout", Rpc::Logout),
    ("/domicile.v1.Identity/GetProfile", Rpc::Bearer),
    ("/domicile.v1.Identity/UpdateProfile", Rpc::Bearer),
    ("/domicile.v1.Identity/RequestCode", Rpc::RequestCode),
    ("/domicile.v1.Identity/ResetPassword", Rpc::CodeProof),
    ("/domicile.v1.Identity/SignInWithCode", Rpc::CodeProof),
    ("/domicile.v1.Identity/SendVerification", Rpc::Bearer),
    ("/domicile.v1.Identity/VerifyEmail", Rpc::CodeProof),
    ("/domicile.v1.Identity/RequestEmailChange", Rpc::Bearer),
    ("/domicile.v1.Identity/ConfirmEmailChange", Rpc::CodeProof),
    ("/domicile.v1.Identity/SetPhone", Rpc::Bearer),
    ("/domicile.v1.Identity/ConfirmPhone", Rpc::Bearer),
    ("/domicile.v1.Identity/RemovePhone", Rpc::Bearer),
    // The pending sign-in token is tag 1, like a refresh token.
    ("/domicile.v1.Identity/CompleteSignIn", Rpc::Refresh),
    ("/domicile.v1.Identity/GetFactors", Rpc::Bearer),
    ("/domicile.v1.Identity/EnrollTotp", Rpc::Bearer),
    ("/domicile.v1.Identity/ConfirmTotp", Rpc::Bearer),
    ("/domicile.v1.Identity/RemoveTotp", Rpc::Bearer),
    ("/domicile.v1.Identity/RegenerateRecoveryCodes", Rpc::Bearer),
    (
        "/domicile.v1.Identity/StartPasskeyRegistration",
        Rpc::Bearer,
    ),
    (
        "/domicile.v1.Identity/FinishPasskeyRegistration",
        Rpc::Bearer,
    ),
    ("/domicile.v1.Identity/ListPasskeys", Rpc::Bearer),
    ("/domicile.v1.Identity/RenamePasskey", Rpc::Bearer),
    ("/domicile.v1.Identity/RemovePasskey", Rpc::Bearer),
    ("/domicile.v1.Identity/StartPasskeySignIn", Rpc::Anonymous),
    ("/domicile.v1.Identity/PasskeySignIn", Rpc::PasskeySignIn),
];

/// The OpenID Connect endpoints the edge proxies, and how each names its
/// user: the sign-in page's `login_hint` (query), the sign-in form's
/// `email`, the token request's `code` or `refresh_token` (region-tagged),
/// userinfo's bearer token (read like every bearer token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Web {
    /// `GET /authorize`.
    AuthorizePage,
    /// `POST /authorize`: the form's `email`.
    SignInForm,
    /// `POST /recover`, `/passwordless` or `/code`: the form's one field,
    /// an email address or (for codes by text) a phone number.
    CodeForm,
    /// `POST /token`.
    Token,
    /// `GET` or `POST /userinfo`.
    UserInfo,
    /// `POST /revoke` or `POST /introspect`: the form's `token`.
    TokenAbout,
    /// `GET /signup`, `/signin` or `/recover` (a sealed request, no
    /// personal data).
    Page,
    /// `POST /signup`: the form's `email` and `region_preference`.
    SignUpForm,
    /// `GET` or `POST /logout`: the `id_token_hint`'s region, else the
    /// browser cookie's.
    Logout,
    /// `GET` or `POST /link`: a one-time link from an email (`t`, a
    /// region-tagged `ol_` artifact).
    Link,
    /// `POST /mfa`: a sign-in's second factor, with its pending sign-in
    /// (`mfa_token`, a region-tagged `mfa_` artifact).
    SecondFactor,
    /// `GET /account` and its forms (`POST /account/…`): the browser
    /// session cookie's region; the forms carry no identifier.
    Account,
    /// `POST /passkey/options`: a passkey ceremony for the sign-in page,
    /// which names nobody (routed like the sign-in page; JSON).
    PasskeyOptions,
    /// `POST /passkey`: a passkey's answer, whose `credential` carries the
    /// user handle, tagged with the home region.
    PasskeyForm,
}

impl Web {
    /// Whether a browser shows the answer (a hosted page or form), so a
    /// refusal by the edge is a page, not JSON.
    pub fn is_page(self) -> bool {
        matches!(
            self,
            Web::AuthorizePage
                | Web::SignInForm
                | Web::CodeForm
                | Web::Page
                | Web::SignUpForm
                | Web::Logout
                | Web::Link
                | Web::SecondFactor
                | Web::Account
                | Web::PasskeyForm
        )
    }
}

/// The bearer RPCs that send the caller a message.
pub fn sends_message(path: &str) -> bool {
    matches!(
        path,
        "/domicile.v1.Identity/SendVerification"
            | "/domicile.v1.Identity/RequestEmailChange"
            | "/domicile.v1.Identity/SetPhone"
    )
}

/// The hosted forms that must answer alike whether or not their address
/// has an account: their responses carry no routing headers.
pub fn conceals_route(path: &str) -> bool {
    matches!(path, "/recover" | "/passwordless" | "/code")
}

pub fn web_endpoint(method: &str, path: &str) -> Option<Web> {
    match (method, path) {
        ("GET", "/authorize") => Some(Web::AuthorizePage),
        // The hosted forms that name their user by `email`: sign-in, and
        // the one-time code journeys' requests and codes.
        ("POST", "/authorize") => Some(Web::SignInForm),
        ("POST", "/recover" | "/passwordless" | "/code") => Some(Web::CodeForm),
        ("POST", "/token") => Some(Web::Token),
        ("GET" | "POST", "/userinfo") => Some(Web::UserInfo),
        ("POST", "/revoke" | "/introspect") => Some(Web::TokenAbout),
        ("GET", "/signup" | "/signin" | "/recover") => Some(Web::Page),
        ("GET" | "POST", domicile_oidc::LINK_PATH) => Some(Web::Link),
        ("POST", "/mfa") => Some(Web::SecondFactor),
        ("POST", "/passkey/options") => Some(Web::PasskeyOptions),
        ("POST", "/passkey") => Some(Web::PasskeyForm),
        ("GET", "/account") => Some(Web::Account),
        (
            "POST",
            "/account/totp"
            | "/account/totp/confirm"
            | "/account/totp/remove"
            | "/account/recovery-codes"
            | "/account/passkeys"
            | "/account/passkeys/options"
            | "/account/passkeys/rename"
            | "/account/passkeys/remove",
        ) => Some(Web::Account),
        ("POST", "/signup") => Some(Web::SignUpForm),
        ("GET" | "POST", "/logout") => Some(Web::Logout),
        _ => None,
    }
}

/// What an OpenID Connect request's query (the page) or form body says
/// about its user. Fields that do not parse are not an error here: the
/// node answers them.
pub fn read_web(web: Web, query_or_form: &[u8]) -> Identity {
    let field = |name: &str| {
        url::form_urlencoded::parse(query_or_form)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match web {
        Web::AuthorizePage => Identity {
            email: field("login_hint").and_then(|h| Email::parse(&h).ok()),
            ..Identity::default()
        },
        Web::SignInForm => Identity {
            email: field("email").and_then(|e| Email::parse(&e).ok()),
            ..Identity::default()
        },
        // One field takes an email address or (for codes by text
        // message) a phone number. Only here: the password sign-in form
        // takes no number, and its answer carries routing headers.
        Web::CodeForm => {
            let typed = field("email");
            Identity {
                email: typed.as_deref().and_then(|e| Email::parse(e).ok()),
                phone: typed.as_deref().and_then(|p| Phone::parse(p).ok()),
                ..Identity::default()
            }
        }
        Web::Token => Identity {
            artifact: field("code")
                .or_else(|| field("refresh_token"))
                .and_then(|t| artifact_region(&t)),
            ..Identity::default()
        },
        Web::TokenAbout => Identity {
            artifact: field("token").and_then(|t| artifact_region(&t).or_else(|| jwt_region(&t))),
            ..Identity::default()
        },
        Web::SignUpForm => Identity {
            email: field("email").and_then(|e| Email::parse(&e).ok()),
            preference: field("region_preference")
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty()),
            ..Identity::default()
        },
        Web::Logout => Identity {
            artifact: field("id_token_hint").and_then(|t| jwt_region(&t)),
            ..Identity::default()
        },
        Web::Link => Identity {
            artifact: field("t").and_then(|t| match parse_artifact(&t) {
                Some((ArtifactKind::OneTimeLink, region, _)) => Some(region),
                _ => None,
            }),
            ..Identity::default()
        },
        Web::SecondFactor => Identity {
            artifact: field("mfa_token").and_then(|t| match parse_artifact(&t) {
                Some((ArtifactKind::PendingSignIn, region, _)) => Some(region),
                _ => None,
            }),
            ..Identity::default()
        },
        Web::PasskeyForm => Identity {
            passkey_tag: field("credential").and_then(|c| passkey_tag(&c)),
            ..Identity::default()
        },
        Web::UserInfo | Web::Page | Web::Account | Web::PasskeyOptions => Identity::default(),
    }
}

/// The region tag of the user handle in a passkey's answer
/// (`response.userHandle`, base64url, sixteen bytes), read without
/// checking anything else (the home node does).
pub fn passkey_tag(credential_json: &str) -> Option<[u8; domicile_core::passkey::TAG_LEN]> {
    if credential_json.len() > MAX_BODY {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(credential_json).ok()?;
    let handle = v.pointer("/response/userHandle")?.as_str()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(handle.trim_end_matches('='))
        .ok()?;
    domicile_core::passkey::UserHandle::from_slice(&bytes).map(|h| h.tag())
}

/// The region of the hosted pages' browser session cookie in a `Cookie`
/// header (either name), read without verifying it (the home node does):
/// the sign-in page and logout go where the browser's session lives.
pub fn browser_region<'h>(cookie_headers: impl IntoIterator<Item = &'h str>) -> Option<RegionCode> {
    cookie_headers
        .into_iter()
        .flat_map(|h| h.split(';'))
        .find_map(|c| {
            let (name, value) = c.trim().split_once('=')?;
            if name != domicile_oidc::BROWSER_COOKIE && name != domicile_oidc::BROWSER_COOKIE_SECURE
            {
                return None;
            }
            match parse_artifact(value) {
                Some((ArtifactKind::BrowserSession, region, _)) => Some(region),
                _ => None,
            }
        })
}

/// Services the edge forwards to the default region (no user data).
pub const PASSTHROUGH_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
];

pub fn identity_rpc(path: &str) -> Option<Rpc> {
    IDENTITY_RPCS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, r)| *r)
}

/// What the request body revealed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub email: Option<Email>,
    /// A phone number naming the user (code requests and proofs only).
    pub phone: Option<Phone>,
    pub preference: Option<String>,
    pub artifact: Option<RegionCode>,
    /// A passkey user handle's region tag (resolved against the topology).
    pub passkey_tag: Option<[u8; domicile_core::passkey::TAG_LEN]>,
}

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is over {MAX_BODY} bytes")]
    TooLarge,
    #[error("malformed gRPC frame: {0}")]
    Frame(&'static str),
    #[error("compressed gRPC messages are not accepted")]
    Compressed,
    #[error("malformed request message")]
    Message,
}

/// The one message of a unary gRPC request body: a 5-byte header (flag,
/// big-endian length) and exactly that many bytes.
pub fn unary_message(body: &[u8]) -> Result<&[u8], BodyError> {
    if body.len() > MAX_BODY + 5 {
        return Err(BodyError::TooLarge);
    }
    let (header, rest) = body
        .split_at_checked(5)
        .ok_or(BodyError::Frame("shorter than its 5-byte header"))?;
    match header[0] {
        0 => {}
        1 => return Err(BodyError::Compressed),
        _ => return Err(BodyError::Frame("unknown flags")),
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_BODY {
        return Err(BodyError::TooLarge);
    }
    if rest.len() != len {
        return Err(BodyError::Frame(
            "length does not match the body (one message expected)",
        ));
    }
    Ok(rest)
}

/// Reads the identifier and artifacts of an Identity RPC's message. Invalid
/// emails are not an error here: the node refuses them with a clear message.
pub fn read(rpc: Rpc, message: &[u8]) -> Result<Identity, BodyError> {
    let bad = |_| BodyError::Message;
    Ok(match rpc {
        Rpc::Register => {
            let m = pb::RegisterRequest::decode(message).map_err(bad)?;
            let preference = Some(m.region_preference.trim().to_owned()).filter(|p| !p.is_empty());
            Identity {
                email: Email::parse(&m.email).ok(),
                preference,
                ..Identity::default()
            }
        }
        Rpc::Login => {
            let m = pb::LoginRequest::decode(message).map_err(bad)?;
            Identity {
                email: Email::parse(&m.email).ok(),
                ..Identity::default()
            }
        }
        Rpc::Refresh => {
            let m = pb::RefreshRequest::decode(message).map_err(bad)?;
            Identity {
                artifact: artifact_region(&m.refresh_token),
                ..Identity::default()
            }
        }
        Rpc::Logout => {
            let m = pb::LogoutRequest::decode(message).map_err(bad)?;
            Identity {
                artifact: artifact_region(&m.refresh_token),
                ..Identity::default()
            }
        }
        Rpc::Bearer | Rpc::Anonymous => {
            pb::GetProfileRequest::decode(message).map_err(bad)?;
            Identity::default()
        }
        Rpc::PasskeySignIn => {
            let m = pb::PasskeySignInRequest::decode(message).map_err(bad)?;
            Identity {
                passkey_tag: passkey_tag(&m.credential_json),
                ..Identity::default()
            }
        }
        Rpc::RequestCode => {
            let m = pb::RequestCodeRequest::decode(message).map_err(bad)?;
            Identity {
                email: Email::parse(&m.email).ok(),
                phone: Phone::parse(&m.phone).ok(),
                ..Identity::default()
            }
        }
        Rpc::CodeProof => {
            let m = pb::SignInWithCodeRequest::decode(message).map_err(bad)?;
            Identity {
                email: Email::parse(&m.email).ok(),
                phone: Phone::parse(&m.phone).ok(),
                artifact: match parse_artifact(&m.link) {
                    Some((ArtifactKind::OneTimeLink, region, _)) => Some(region),
                    _ => None,
                },
                ..Identity::default()
            }
        }
    })
}

/// The region of an id or opaque token (`usr_eu_…`, `rt_us_…`).
pub fn artifact_region(s: &str) -> Option<RegionCode> {
    parse_artifact(s).map(|(_, region, _)| region)
}

/// The region of a bearer access token, read without verifying it (the home
/// node verifies): the `rgn` claim, or else the region of the `kid`.
pub fn bearer_region(authorization: &str) -> Option<RegionCode> {
    let token = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))?
        .trim();
    jwt_region(token)
}

/// The region of a JWT, read without verifying it: the `rgn` claim, or
/// else the region of the `kid`.
pub fn jwt_region(token: &str) -> Option<RegionCode> {
    if token.len() > domicile_core::token::MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (header, payload) = (parts.next()?, parts.next()?);
    let decode = |s: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .ok()?,
        )
        .ok()
    };
    let from_claim = decode(payload).and_then(|c| {
        c.get("rgn")?
            .as_str()
            .and_then(|r| RegionCode::parse(r).ok())
    });
    from_claim.or_else(|| {
        decode(header)
            .and_then(|h| Kid::parse(h.get("kid")?.as_str()?))
            .map(|k| k.region)
    })
}

/// Frames a message as a unary gRPC request body.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_frame(body: &[u8], expected: Result<&[u8], BodyError>) {
        assert_eq!(unary_message(body), expected, "{body:?}");
    }

    /// (endpoint, query or form) → the email or region read.
    #[test]
    fn only_the_code_forms_take_a_phone_number() {
        let form = b"req=x&csrf=y&email=%2B49+151+12345678";
        let code = read_web(Web::CodeForm, form);
        assert_eq!(
            code.phone.as_ref().map(Phone::as_str),
            Some("+4915112345678")
        );
        assert!(code.email.is_none());
        // The password form's answer carries routing headers: a number
        // there would tell whether it has an account.
        assert_eq!(read_web(Web::SignInForm, form), Identity::default());
        let email = read_web(Web::CodeForm, b"email=ada%40example.de");
        assert!(email.email.is_some() && email.phone.is_none());
    }

    #[test]
    fn web_requests_name_their_user() {
        for (web, text, email, artifact) in [
            (
                Web::AuthorizePage,
                "client_id=demo&login_hint=Ada%40Example.de",
                Some("ada@example.de"),
                None,
            ),
            (
                Web::AuthorizePage,
                "client_id=demo&login_hint=not-an-email",
                None,
                None,
            ),
            (
                Web::SignInForm,
                "req=x&csrf=y&email=chiyo%40example.jp&password=p",
                Some("chiyo@example.jp"),
                None,
            ),
            (
                Web::Token,
                "grant_type=authorization_code&code=ac_ap_AAAA",
                None,
                Some("ap"),
            ),
            (
                Web::Token,
                "grant_type=refresh_token&refresh_token=rt_us_01JD_x",
                None,
                Some("us"),
            ),
            (
                Web::Token,
                "grant_type=authorization_code&code=forged",
                None,
                None,
            ),
            (Web::UserInfo, "", None, None),
            (
                Web::TokenAbout,
                "token=rt_eu_01JD_x&token_type_hint=refresh_token",
                None,
                Some("eu"),
            ),
            (
                Web::TokenAbout,
                "token=eyJhbGciOiJFZERTQSJ9.eyJyZ24iOiJ1cyJ9.sig",
                None,
                Some("us"),
            ),
            (Web::TokenAbout, "token=garbage", None, None),
            (
                Web::Link,
                "t=ol_ap_01JD0000000000000000000000_c2VjcmV0&p=reset_password",
                None,
                Some("ap"),
            ),
            // Another artifact kind in `t` is not a link.
            (Web::Link, "t=rt_us_01JD_x&p=sign_in", None, None),
            (
                Web::SecondFactor,
                "mfa_token=mfa_ap_01JD0000000000000000000000_c2VjcmV0&code=123456",
                None,
                Some("ap"),
            ),
            (
                Web::SecondFactor,
                "mfa_token=ol_us_01JD_x&code=1",
                None,
                None,
            ),
            (Web::Link, "p=sign_in", None, None),
            (
                Web::SignUpForm,
                "req=x&email=eve%40example.com&region_preference=ap",
                Some("eve@example.com"),
                None,
            ),
            (
                Web::Logout,
                "id_token_hint=eyJhbGciOiJFZERTQSIsImtpZCI6ImFwLTEifQ.e30.sig&state=s",
                None,
                Some("ap"),
            ),
            (Web::Logout, "post_logout_redirect_uri=x", None, None),
        ] {
            let got = read_web(web, text.as_bytes());
            assert_eq!(got.email.as_ref().map(Email::as_str), email, "{text}");
            assert_eq!(
                got.artifact.as_ref().map(RegionCode::as_str),
                artifact,
                "{text}"
            );
        }
        assert_eq!(web_endpoint("GET", "/authorize"), Some(Web::AuthorizePage));
        assert_eq!(web_endpoint("POST", "/logout"), Some(Web::Logout));
        assert_eq!(web_endpoint("POST", "/recover"), Some(Web::CodeForm));
        assert_eq!(web_endpoint("POST", "/passwordless"), Some(Web::CodeForm));
        assert_eq!(web_endpoint("POST", "/code"), Some(Web::CodeForm));
        assert_eq!(web_endpoint("POST", "/authorize"), Some(Web::SignInForm));
        assert_eq!(web_endpoint("GET", "/recover"), Some(Web::Page));
        assert_eq!(web_endpoint("GET", "/link"), Some(Web::Link));
        assert_eq!(web_endpoint("POST", "/link"), Some(Web::Link));
        assert_eq!(web_endpoint("POST", "/mfa"), Some(Web::SecondFactor));
        assert_eq!(web_endpoint("POST", "/passkey"), Some(Web::PasskeyForm));
        assert_eq!(
            web_endpoint("POST", "/passkey/options"),
            Some(Web::PasskeyOptions)
        );
        assert_eq!(web_endpoint("GET", "/passkey"), None);
        assert_eq!(web_endpoint("GET", "/mfa"), None);
        assert_eq!(web_endpoint("GET", "/account"), Some(Web::Account));
        assert_eq!(web_endpoint("POST", "/account/totp"), Some(Web::Account));
        assert_eq!(web_endpoint("POST", "/account/other"), None);
        assert_eq!(web_endpoint("GET", "/code"), None);
        assert_eq!(web_endpoint("DELETE", "/token"), None);
        assert_eq!(web_endpoint("GET", "/token"), None);
    }

    /// A passkey answer's user handle → its region tag; anything but a
    /// sixteen-byte base64url handle → none.
    #[test]
    fn a_passkey_answer_names_its_handle_tag() {
        let tagged =
            domicile_core::passkey::UserHandle::new(&RegionCode::parse("ap").unwrap(), &[5; 32]);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tagged.0);
        let with = |handle: serde_json::Value| {
            serde_json::json!({ "id": "x", "response": { "userHandle": handle } }).to_string()
        };
        assert_eq!(passkey_tag(&with(b64.clone().into())), Some(tagged.tag()));
        assert_eq!(
            passkey_tag(&with(format!("{b64}==").into())),
            Some(tagged.tag())
        );
        for bad in [
            with(serde_json::Value::Null),
            with("AAAA".into()),
            with(1.into()),
            "not json".to_owned(),
            "{}".to_owned(),
        ] {
            assert_eq!(passkey_tag(&bad), None, "{bad}");
        }
        let form = format!(
            "req=x&csrf=y&state=s&credential={}",
            url::form_urlencoded::byte_serialize(with(b64.into()).as_bytes()).collect::<String>()
        );
        assert_eq!(
            read_web(Web::PasskeyForm, form.as_bytes()).passkey_tag,
            Some(tagged.tag())
        );
        let rpc = pb::PasskeySignInRequest {
            state: "s".into(),
            credential_json: with(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(tagged.0)
                    .into(),
            ),
        };
        assert_eq!(
            read(Rpc::PasskeySignIn, &rpc.encode_to_vec())
                .unwrap()
                .passkey_tag,
            Some(tagged.tag())
        );
    }

    /// (Cookie headers) → the browser session's region.
    #[test]
    fn the_browser_cookie_names_its_region() {
        let bs = "bs_ap_01JD0000000000000000000000_AAAA";
        for (headers, want) in [
            (vec![format!("domicile_session={bs}")], Some("ap")),
            (
                vec![format!("a=1; __Host-domicile_session={bs}; b=2")],
                Some("ap"),
            ),
            (
                vec!["a=1".to_owned(), format!("domicile_session={bs}")],
                Some("ap"),
            ),
            // Another kind of artifact is not a browser session.
            (vec!["domicile_session=rt_us_01JD_x".to_owned()], None),
            (vec![format!("other_session={bs}")], None),
            (vec!["domicile_session=garbage".to_owned()], None),
            (vec![], None),
        ] {
            assert_eq!(
                browser_region(headers.iter().map(String::as_str))
                    .as_ref()
                    .map(RegionCode::as_str),
                want,
                "{headers:?}"
            );
        }
    }

    #[test]
    fn frames() {
        check_frame(&frame(b"abc"), Ok(b"abc"));
        check_frame(&frame(b""), Ok(b""));
        check_frame(b"", Err(BodyError::Frame("shorter than its 5-byte header")));
        check_frame(
            &[0, 0, 0],
            Err(BodyError::Frame("shorter than its 5-byte header")),
        );
        check_frame(&[1, 0, 0, 0, 1, 9], Err(BodyError::Compressed));
        check_frame(&[7, 0, 0, 0, 1, 9], Err(BodyError::Frame("unknown flags")));
        check_frame(
            &[0, 0, 0, 0, 5, 1],
            Err(BodyError::Frame(
                "length does not match the body (one message expected)",
            )),
        );
        check_frame(&[0, 0xff, 0xff, 0xff, 0xff], Err(BodyError::TooLarge));
        let mut two = frame(b"a");
        two.extend(frame(b"b"));
        check_frame(
            &two,
            Err(BodyError::Frame(
                "length does not match the body (one message expected)",
            )),
        );
        check_frame(&vec![0; MAX_BODY + 6], Err(BodyError::TooLarge));
    }

    #[test]
    fn identifiers_from_messages() {
        let reg = pb::RegisterRequest {
            email: " Ada@Example.DE ".into(),
            region_preference: "ap".into(),
            ..Default::default()
        };
        let got = read(Rpc::Register, &reg.encode_to_vec()).unwrap();
        assert_eq!(
            got.email.map(|e| e.as_str().to_owned()),
            Some("ada@example.de".into())
        );
        assert_eq!(got.preference.as_deref(), Some("ap"));
        let login = pb::LoginRequest {
            email: "not an email".into(),
            password: "x".into(),
        };
        assert_eq!(
            read(Rpc::Login, &login.encode_to_vec()).unwrap(),
            Identity::default()
        );
        let refresh = pb::RefreshRequest {
            refresh_token: "rt_us_abc".into(),
        };
        assert_eq!(
            read(Rpc::Refresh, &refresh.encode_to_vec())
                .unwrap()
                .artifact,
            RegionCode::parse("us").ok()
        );
        assert_eq!(
            read(Rpc::Login, &[0xff, 0xff, 0xff]),
            Err(BodyError::Message)
        );
        let ask = pb::RequestCodeRequest {
            email: "Chiyo@Example.JP".into(),
            purpose: pb::CodePurpose::SignIn as i32,
            ..Default::default()
        };
        assert_eq!(
            read(Rpc::RequestCode, &ask.encode_to_vec())
                .unwrap()
                .email
                .map(|e| e.as_str().to_owned()),
            Some("chiyo@example.jp".into())
        );
        // The three code-bearing messages are read alike: by the email, or
        // by the link's region tag (another artifact kind is not a link).
        let reset = pb::ResetPasswordRequest {
            link: "ol_ap_01JD0000000000000000000000_c2VjcmV0".into(),
            new_password: "a new passphrase".into(),
            ..Default::default()
        };
        assert_eq!(
            read(Rpc::CodeProof, &reset.encode_to_vec())
                .unwrap()
                .artifact,
            RegionCode::parse("ap").ok()
        );
        let verify = pb::VerifyEmailRequest {
            email: "ada@example.de".into(),
            code: "123456".into(),
            ..Default::default()
        };
        assert!(
            read(Rpc::CodeProof, &verify.encode_to_vec())
                .unwrap()
                .email
                .is_some()
        );
        let not_a_link = pb::SignInWithCodeRequest {
            link: "rt_us_abc".into(),
            ..Default::default()
        };
        assert_eq!(
            read(Rpc::CodeProof, &not_a_link.encode_to_vec()).unwrap(),
            Identity::default()
        );
        // A phone number names its user in code requests and proofs.
        let by_phone = pb::RequestCodeRequest {
            phone: "+49 151 12345678".into(),
            purpose: pb::CodePurpose::SignIn as i32,
            ..Default::default()
        };
        let got = read(Rpc::RequestCode, &by_phone.encode_to_vec()).unwrap();
        assert_eq!(
            got.phone.as_ref().map(Phone::as_str),
            Some("+4915112345678")
        );
        assert!(got.email.is_none());
        let proof = pb::ResetPasswordRequest {
            phone: "+33 6 12 34 56 78".into(),
            code: "123456".into(),
            new_password: "a new passphrase".into(),
            ..Default::default()
        };
        assert_eq!(
            read(Rpc::CodeProof, &proof.encode_to_vec())
                .unwrap()
                .phone
                .as_ref()
                .map(Phone::as_str),
            Some("+33612345678")
        );
        let not_a_number = pb::SignInWithCodeRequest {
            phone: "030 1234567".into(),
            code: "123456".into(),
            ..Default::default()
        };
        assert_eq!(
            read(Rpc::CodeProof, &not_a_number.encode_to_vec()).unwrap(),
            Identity::default()
        );
        assert_eq!(
            identity_rpc("/domicile.v1.Identity/Login"),
            Some(Rpc::Login)
        );
        assert_eq!(identity_rpc("/domicile.v1.HomeIndex/Lookup"), None);
    }

    #[test]
    fn bearer_regions() {
        let enc = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = |h, c| format!("Bearer {}.{}.sig", enc(h), enc(c));
        let check = |auth: &str, want: Option<&str>| {
            assert_eq!(
                bearer_region(auth).map(|r| r.to_string()).as_deref(),
                want,
                "{auth}"
            )
        };
        check(
            &token(
                serde_json::json!({"kid": "eu-1"}),
                serde_json::json!({"rgn": "ap"}),
            ),
            Some("ap"),
        );
        check(
            &token(serde_json::json!({"kid": "us-3"}), serde_json::json!({})),
            Some("us"),
        );
        check(
            &token(
                serde_json::json!({}),
                serde_json::json!({"rgn": "NOT A REGION"}),
            ),
            None,
        );
        check("Bearer garbage", None);
        check("Basic dXNlcg==", None);
        check(&format!("Bearer {}", "a.".repeat(5000)), None);
    }
}
