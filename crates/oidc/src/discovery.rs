//! The OpenID Provider metadata (`/.well-known/openid-configuration`,
//! OpenID Connect Discovery 1.0 and RFC 8414): everything this provider
//! supports, and nothing it does not.

use serde_json::{Value, json};

/// The scopes, claims and methods advertised.
pub const SCOPES: &[&str] = &["openid", "email", "profile", "phone", "offline_access"];
pub const CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "amr",
    "acr",
    "sid",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "locale",
    "phone_number",
    "phone_number_verified",
];

/// The metadata for `issuer` (no trailing slash).
pub fn document(issuer: &str) -> Value {
    let at = |path: &str| format!("{issuer}{path}");
    json!({
        "issuer": issuer,
        "authorization_endpoint": at("/authorize"),
        "token_endpoint": at("/token"),
        "userinfo_endpoint": at("/userinfo"),
        "jwks_uri": at("/.well-known/jwks.json"),
        "revocation_endpoint": at("/revoke"),
        "introspection_endpoint": at("/introspect"),
        "end_session_endpoint": at("/logout"),
        "scopes_supported": SCOPES,
        "claims_supported": CLAIMS,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "userinfo_signing_alg_values_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": domicile_core::clients::LOCALES,
        "acr_values_supported": [
            domicile_core::mfa::ACR_ONE_FACTOR,
            domicile_core::mfa::ACR_TWO_FACTORS,
            domicile_core::mfa::ACR_PAPE_MULTI_FACTOR,
        ],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": false,
        "frontchannel_logout_supported": false,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_endpoint_is_under_the_issuer() {
        let d = super::document("https://id.example.com");
        for k in [
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
            "jwks_uri",
            "revocation_endpoint",
            "introspection_endpoint",
            "end_session_endpoint",
        ] {
            assert!(
                d[k].as_str()
                    .is_some_and(|u| u.starts_with("https://id.example.com/")),
                "{k}: {}",
                d[k]
            );
        }
        assert_eq!(d["id_token_signing_alg_values_supported"][0], "EdDSA");
        assert_eq!(
            d["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
    }
}
