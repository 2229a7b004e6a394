//! Client authentication at the token endpoint (RFC 6749 §2.3): HTTP Basic
//! (`client_secret_basic`, the id and secret form-urlencoded), form fields
//! (`client_secret_post`), or none (a public client naming itself with
//! `client_id`, proving itself later with PKCE). One method per request.

use base64::Engine as _;
use domicile_core::clients::{Client, Clients};

/// What a request presented.
#[derive(Clone, Copy, Debug, Default)]
pub struct Presented<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
}

/// Why a client is not authenticated; `code()` is the RFC 6749 error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    /// Unknown client, wrong or missing secret (answered 401).
    #[error("{0}")]
    InvalidClient(&'static str),
    /// More than one method, or a malformed one (answered 400).
    #[error("{0}")]
    InvalidRequest(&'static str),
}

impl ClientAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            ClientAuthError::InvalidClient(_) => "invalid_client",
            ClientAuthError::InvalidRequest(_) => "invalid_request",
        }
    }
}

fn decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The client `p` authenticates, if it does.
pub fn authenticate<'c>(
    clients: &'c Clients,
    p: Presented<'_>,
) -> Result<&'c Client, ClientAuthError> {
    use ClientAuthError::{InvalidClient, InvalidRequest};
    let basic = match p.authorization {
        None => None,
        Some(h) => {
            let creds = h.strip_prefix("Basic ").ok_or(InvalidRequest(
                "only Basic client authentication is accepted",
            ))?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(creds.trim())
                .map_err(|_| InvalidRequest("the Basic credentials are not base64"))?;
            let text = String::from_utf8(raw)
                .map_err(|_| InvalidRequest("the Basic credentials are not UTF-8"))?;
            let (id, secret) = text
                .split_once(':')
                .ok_or(InvalidRequest("the Basic credentials need id:secret"))?;
            let (id, secret) = (
                decode(id).ok_or(InvalidRequest("the Basic client id is malformed"))?,
                decode(secret).ok_or(InvalidRequest("the Basic secret is malformed"))?,
            );
            Some((id, secret))
        }
    };
    let (id, secret) = match (basic, p.client_secret) {
        (Some(_), Some(_)) => {
            return Err(InvalidRequest(
                "use one client authentication method, not Basic and client_secret",
            ));
        }
        (Some((id, secret)), None) => {
            if p.client_id.is_some_and(|f| f != id) {
                return Err(InvalidRequest("client_id differs from the Basic client id"));
            }
            (id, Some(secret))
        }
        (None, secret) => (
            p.client_id
                .ok_or(InvalidClient("the client is not identified (client_id)"))?
                .to_owned(),
            secret.map(str::to_owned),
        ),
    };
    let client = clients.get(&id).ok_or(InvalidClient("unknown client"))?;
    match (client.is_public(), secret) {
        (true, None) => Ok(client),
        (true, Some(_)) => Err(InvalidClient("a public client has no secret")),
        (false, None) => Err(InvalidClient(
            "this client must authenticate with its secret",
        )),
        (false, Some(s)) if client.secret_matches(&s) => Ok(client),
        (false, Some(_)) => Err(InvalidClient("wrong client secret")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domicile_core::clients::secret_sha256_hex;

    const SECRET: &str = "a-long-random-secret-of-the-server-app";

    fn clients() -> Clients {
        crate::test_clients(&format!(
            r#"
[clients.app]
name = "App"
client_type = "public"
redirect_uris = ["https://app.example.com/cb"]
[clients.srv]
name = "Server"
client_type = "confidential"
secret_sha256 = "{}"
redirect_uris = ["https://srv.example.com/cb"]
"#,
            secret_sha256_hex(SECRET)
        ))
    }

    fn basic(id: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    }

    /// (Authorization header, client_id, client_secret) → the client, or the error code.
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Result<&'a str, &'a str>,
    );

    #[test]
    fn each_method_and_its_refusals() {
        let c = clients();
        let good_basic = basic("srv", SECRET);
        let wrong_basic = basic("srv", "guess");
        let app_basic = basic("app", "");
        let cases: &[Case] = &[
            (Some(&good_basic), None, None, Ok("srv")),
            (Some(&good_basic), Some("srv"), None, Ok("srv")),
            (None, Some("srv"), Some(SECRET), Ok("srv")),
            (None, Some("app"), None, Ok("app")),
            (Some(&wrong_basic), None, None, Err("invalid_client")),
            (None, Some("srv"), Some("guess"), Err("invalid_client")),
            (None, Some("srv"), None, Err("invalid_client")),
            (None, Some("app"), Some("anything"), Err("invalid_client")),
            (Some(&app_basic), None, None, Err("invalid_client")),
            (None, Some("nobody"), None, Err("invalid_client")),
            (None, None, None, Err("invalid_client")),
            (
                Some(&good_basic),
                None,
                Some(SECRET),
                Err("invalid_request"),
            ),
            (Some(&good_basic), Some("app"), None, Err("invalid_request")),
            (Some("Bearer xyz"), None, None, Err("invalid_request")),
            (Some("Basic !!!"), None, None, Err("invalid_request")),
        ];
        for (authorization, client_id, client_secret, want) in cases {
            let got = authenticate(
                &c,
                Presented {
                    authorization: *authorization,
                    client_id: *client_id,
                    client_secret: *client_secret,
                },
            );
            assert_eq!(
                got.map(|c| c.id.as_str()).map_err(|e| e.code()),
                *want,
                "{authorization:?} {client_id:?} {client_secret:?}"
            );
        }
    }
}
