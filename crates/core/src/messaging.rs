//! How a region sends messages to its users (`[regions.<r>.email]` and
//! `[regions.<r>.sms]`) and the federation's account-recovery policy
//! (`[accounts]`), as `regions.toml` writes them: parsed with the topology
//! and validated the same way (file, key, reason).
//!
//! What is here: where a region's email goes (an SMTP relay, or a file
//! outbox for local federations), where its SMS goes (a signed HTTP
//! webhook, or a file outbox), and the policy the journeys follow
//! (verification before sign-in, sessions ended by a reset, passwordless
//! sign-in, request limits). What is not: sending (`domicile-messages`)
//! and the journeys (`domicile-identity`). Secrets are never in the file:
//! the file names the environment variables that hold them.

use crate::topology::ConfigError;
use serde::Deserialize;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

// ---- As written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    /// The sender, `addr@host` or `Name <addr@host>`.
    from: String,
    /// Local federations: a directory each message is written to as an
    /// `.eml` file (one directory per region).
    #[serde(default)]
    outbox: Option<PathBuf>,
    /// Production: the SMTP relay the region's messages leave through.
    #[serde(default)]
    smtp: Option<RawSmtp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    /// Host name of the relay (checked against its certificate).
    host: String,
    /// Port (default: 587 for `starttls`, 465 for `implicit`, 25 for `none`).
    #[serde(default)]
    port: Option<u16>,
    /// `starttls` (RFC 3207, required), `implicit` (TLS from the first
    /// byte, RFC 8314) or `none` (loopback relays only).
    #[serde(default = "default_tls")]
    tls: String,
    /// User name for SMTP AUTH.
    #[serde(default)]
    username: Option<String>,
    /// Name of the environment variable holding the SMTP password.
    #[serde(default)]
    password_env: Option<String>,
    /// PEM file of a private CA the relay's certificate chains to (added
    /// to the system's roots).
    #[serde(default)]
    ca_file: Option<PathBuf>,
    /// Per-message timeout in milliseconds (default 10000).
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSms {
    /// Local federations: a directory each message is written to as a
    /// JSON file.
    #[serde(default)]
    outbox: Option<PathBuf>,
    /// Production: the URL messages are POSTed to as signed JSON (https,
    /// or http on a loopback address).
    #[serde(default)]
    webhook: Option<String>,
    /// Name of the environment variable holding the webhook's signing
    /// secret (at least 32 bytes).
    #[serde(default)]
    secret_env: Option<String>,
    /// Or: a file holding the secret (a mounted container secret); one
    /// trailing newline is not part of it.
    #[serde(default)]
    secret_file: Option<PathBuf>,
    /// Per-attempt timeout in milliseconds (default 5000).
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Attempts per message, 1 to 5 (default 3).
    #[serde(default)]
    attempts: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccounts {
    /// Whether sign-in completes only once the user's email is verified
    /// (a client's `require_verified_email` overrides it).
    #[serde(default)]
    require_verified_email: bool,
    /// Whether a completed password reset ends every session of the user.
    #[serde(default = "yes")]
    reset_revokes_sessions: bool,
    /// Whether the sign-in page offers a code or link by email instead of
    /// the password.
    #[serde(default = "yes")]
    passwordless_email: bool,
    /// Whether a verified phone number can sign in with a code by text
    /// message (in regions with an SMS sender).
    #[serde(default = "yes")]
    passwordless_sms: bool,
    /// Code requests (reset, sign-in, verification) per identifier and window.
    #[serde(default = "default_per_identifier")]
    requests_per_identifier: u32,
    /// Code requests per client address and window.
    #[serde(default = "default_per_address")]
    requests_per_address: u32,
    /// The window of both limits, in seconds.
    #[serde(default = "default_window")]
    request_window_seconds: u64,
}

impl Default for RawAccounts {
    fn default() -> Self {
        Self {
            require_verified_email: false,
            reset_revokes_sessions: true,
            passwordless_email: true,
            passwordless_sms: true,
            requests_per_identifier: default_per_identifier(),
            requests_per_address: default_per_address(),
            request_window_seconds: default_window(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_tls() -> String {
    "starttls".into()
}
fn default_per_identifier() -> u32 {
    5
}
fn default_per_address() -> u32 {
    30
}
fn default_window() -> u64 {
    900
}

// ---- Validated ----

/// A region's senders. A channel without a sender is not offered: a
/// journey that needs it is refused, never silently dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Messaging {
    pub email: Option<EmailSender>,
    pub sms: Option<SmsSender>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailSender {
    /// `addr@host` or `Name <addr@host>`.
    pub from: String,
    pub transport: EmailTransport,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmailTransport {
    /// `.eml` files in this directory.
    Outbox(PathBuf),
    Smtp(Smtp),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Implicit,
    /// Plain text: loopback relays only.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsSender {
    /// JSON files in this directory.
    Outbox(PathBuf),
    Webhook(Webhook),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub secret: SecretSource,
    pub timeout: Duration,
    pub attempts: u32,
}

/// Where a secret is read from when the senders start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's name.
    Env(String),
    /// A file's path.
    File(PathBuf),
}

/// The journeys' policy, the same in every region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountPolicy {
    pub require_verified_email: bool,
    pub reset_revokes_sessions: bool,
    pub passwordless_email: bool,
    pub passwordless_sms: bool,
    pub requests_per_identifier: u32,
    pub requests_per_address: u32,
    pub request_window_seconds: i64,
}

impl Default for AccountPolicy {
    fn default() -> Self {
        Self {
            require_verified_email: false,
            reset_revokes_sessions: true,
            passwordless_email: true,
            passwordless_sms: true,
            requests_per_identifier: default_per_identifier(),
            requests_per_address: default_per_address(),
            request_window_seconds: 900,
        }
    }
}

/// Whether `host` names this machine (plain-text relays and http
/// webhooks are allowed only there).
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn env_name_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The address inside a `from` (`Name <addr>` or `addr`), if it looks
/// like one: what sender parsing in `domicile-messages` refuses is
/// refused there at start; this catches the obvious mistakes early.
fn from_address(from: &str) -> Option<&str> {
    let addr = match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b && b == from.len() - 1 => &from[a + 1..b],
        (None, None) => from,
        _ => return None,
    };
    let (local, domain) = addr.trim().rsplit_once('@')?;
    (!local.is_empty() && domain.contains('.') || domain == "localhost")
        .then_some(addr.trim())
        .filter(|a| !a.contains(char::is_whitespace))
}

type Err<'a> = &'a dyn Fn(String, String) -> ConfigError;

/// Validates a region's `email` and `sms` tables (`key` is
/// `regions.<r>`); `path` resolves relative paths.
pub(crate) fn build(
    key: &str,
    email: Option<&RawEmail>,
    sms: Option<&RawSms>,
    path: &dyn Fn(&Path) -> PathBuf,
    err: Err<'_>,
) -> Result<Messaging, ConfigError> {
    let email = match email {
        None => None,
        Some(e) => Some(build_email(&format!("{key}.email"), e, path, err)?),
    };
    let sms = match sms {
        None => None,
        Some(s) => Some(build_sms(&format!("{key}.sms"), s, path, err)?),
    };
    Ok(Messaging { email, sms })
}

fn build_email(
    key: &str,
    e: &RawEmail,
    path: &dyn Fn(&Path) -> PathBuf,
    err: Err<'_>,
) -> Result<EmailSender, ConfigError> {
    if from_address(&e.from).is_none() {
        return Err(err(
            format!("{key}.from"),
            format!("{:?} is not addr@host or Name <addr@host>", e.from),
        ));
    }
    let transport = match (&e.outbox, &e.smtp) {
        (Some(dir), None) => EmailTransport::Outbox(path(dir)),
        (None, Some(s)) => EmailTransport::Smtp(build_smtp(&format!("{key}.smtp"), s, path, err)?),
        _ => {
            return Err(err(
                key.to_owned(),
                "give exactly one of outbox (a directory) or smtp (a relay)".into(),
            ));
        }
    };
    Ok(EmailSender {
        from: e.from.clone(),
        transport,
    })
}

fn build_smtp(
    key: &str,
    s: &RawSmtp,
    path: &dyn Fn(&Path) -> PathBuf,
    err: Err<'_>,
) -> Result<Smtp, ConfigError> {
    let host_ok = !s.host.is_empty()
        && s.host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !host_ok {
        return Err(err(
            format!("{key}.host"),
            format!("{:?} is not a host name or address", s.host),
        ));
    }
    let (tls, default_port) = match s.tls.as_str() {
        "starttls" => (SmtpTls::StartTls, 587),
        "implicit" => (SmtpTls::Implicit, 465),
        "none" if is_loopback_host(&s.host) => (SmtpTls::None, 25),
        "none" => {
            return Err(err(
                format!("{key}.tls"),
                "plain-text SMTP is allowed only to a loopback relay; use starttls or implicit"
                    .into(),
            ));
        }
        other => {
            return Err(err(
                format!("{key}.tls"),
                format!("{other:?}: expected \"starttls\", \"implicit\" or \"none\""),
            ));
        }
    };
    if let Some(env) = &s.password_env {
        if s.username.is_none() {
            return Err(err(
                format!("{key}.username"),
                "password_env needs a username".into(),
            ));
        }
        if !env_name_ok(env) {
            return Err(err(
                format!("{key}.password_env"),
                "must name an environment variable".into(),
            ));
        }
    }
    let timeout = s.timeout_ms.unwrap_or(10_000);
    if !(100..=120_000).contains(&timeout) {
        return Err(err(
            format!("{key}.timeout_ms"),
            "must be between 100 and 120000".into(),
        ));
    }
    Ok(Smtp {
        host: s.host.clone(),
        port: s.port.filter(|p| *p > 0).unwrap_or(default_port),
        tls,
        username: s.username.clone(),
        password_env: s.password_env.clone(),
        ca_file: s.ca_file.as_deref().map(path),
        timeout: Duration::from_millis(timeout),
    })
}

fn build_sms(
    key: &str,
    s: &RawSms,
    path: &dyn Fn(&Path) -> PathBuf,
    err: Err<'_>,
) -> Result<SmsSender, ConfigError> {
    match (&s.outbox, &s.webhook) {
        (Some(dir), None) => {
            if s.secret_env.is_some()
                || s.secret_file.is_some()
                || s.timeout_ms.is_some()
                || s.attempts.is_some()
            {
                return Err(err(
                    key.to_owned(),
                    "secret_env, secret_file, timeout_ms and attempts are the webhook's settings"
                        .into(),
                ));
            }
            Ok(SmsSender::Outbox(path(dir)))
        }
        (None, Some(url)) => {
            let parsed = url::Url::parse(url).map_err(|e| {
                err(
                    format!("{key}.webhook"),
                    format!("{url:?} is not a URL: {e}"),
                )
            })?;
            let host = parsed.host_str().unwrap_or_default();
            let ok = match parsed.scheme() {
                "https" => !host.is_empty(),
                "http" => is_loopback_host(host),
                _ => false,
            };
            if !ok {
                return Err(err(
                    format!("{key}.webhook"),
                    "must be https (or http on a loopback address)".into(),
                ));
            }
            let secret = match (&s.secret_env, &s.secret_file) {
                (Some(var), None) => {
                    if !env_name_ok(var) {
                        return Err(err(
                            format!("{key}.secret_env"),
                            "must name an environment variable".into(),
                        ));
                    }
                    SecretSource::Env(var.clone())
                }
                (None, Some(file)) => SecretSource::File(path(file)),
                _ => {
                    return Err(err(
                        format!("{key}.secret_env"),
                        "a webhook needs its signing secret from exactly one of secret_env (an environment variable) or secret_file".into(),
                    ));
                }
            };
            let timeout = s.timeout_ms.unwrap_or(5_000);
            if !(100..=60_000).contains(&timeout) {
                return Err(err(
                    format!("{key}.timeout_ms"),
                    "must be between 100 and 60000".into(),
                ));
            }
            let attempts = s.attempts.unwrap_or(3);
            if !(1..=5).contains(&attempts) {
                return Err(err(
                    format!("{key}.attempts"),
                    "must be between 1 and 5".into(),
                ));
            }
            Ok(SmsSender::Webhook(Webhook {
                url: url.clone(),
                secret,
                timeout: Duration::from_millis(timeout),
                attempts,
            }))
        }
        _ => Err(err(
            key.to_owned(),
            "give exactly one of outbox (a directory) or webhook (a URL)".into(),
        )),
    }
}

/// Validates `[accounts]`.
pub(crate) fn build_accounts(a: &RawAccounts, err: Err<'_>) -> Result<AccountPolicy, ConfigError> {
    if !(1..=1_000).contains(&a.requests_per_identifier) {
        return Err(err(
            "accounts.requests_per_identifier".into(),
            "must be between 1 and 1000".into(),
        ));
    }
    if !(1..=100_000).contains(&a.requests_per_address) {
        return Err(err(
            "accounts.requests_per_address".into(),
            "must be between 1 and 100000".into(),
        ));
    }
    if !(60..=86_400).contains(&a.request_window_seconds) {
        return Err(err(
            "accounts.request_window_seconds".into(),
            "must be between 60 and 86400".into(),
        ));
    }
    Ok(AccountPolicy {
        require_verified_email: a.require_verified_email,
        reset_revokes_sessions: a.reset_revokes_sessions,
        passwordless_email: a.passwordless_email,
        passwordless_sms: a.passwordless_sms,
        requests_per_identifier: a.requests_per_identifier,
        requests_per_address: a.requests_per_address,
        request_window_seconds: a.request_window_seconds.cast_signed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_addresses() {
        for ok in [
            "no-reply@id.example.eu",
            "Example ID <no-reply@id.example.eu>",
            "x@localhost",
        ] {
            assert!(from_address(ok).is_some(), "{ok}");
        }
        for bad in ["", "no at sign", "a@b", "<a@b.c", "a b@c.d", "@c.d"] {
            assert!(from_address(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "localhost", "[::1]", "::1", "127.3.4.5"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["smtp.example.eu", "10.0.0.1", "localhost.example"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
