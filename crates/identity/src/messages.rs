//! Messages to users and the asking for them: what a journey hands the
//! region's [`Courier`](crate::ports::Courier) (a [`Message`]), sending off
//! the request path (bounded), the per-identifier and per-address request
//! limits, and the one way every journey asks for a code by email or by
//! text message ([`Identity::request_code`]), which answers alike whether
//! or not an account exists.
//!
//! Rendering and transports are not here (`domicile-messages`). Messages
//! leave only from the user's home region: a journey reaches this module
//! only in the region that homes the user (the store's identifier row or
//! the user id's region tag says so), and the courier is the region's own.

use crate::{Identity, IdentityError, env::random};
use domicile_core::{
    email::Email,
    index::{IdentifierKey, IndexState},
    phone::Phone,
};
use domicile_store::Purpose;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

/// How many messages a node sends at once; more are refused (`Busy`).
pub const SENDING: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

/// What a message says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// A code and link proving the address is the user's.
    VerifyEmail,
    /// A code and link to choose a new password.
    ResetPassword,
    /// A code and link to sign in without the password.
    SignInCode,
    /// A notice: the password was changed (no code).
    PasswordChanged,
    /// A code and link to the new address of an email change.
    ConfirmNewEmail,
    /// A notice to the old address: the account's address was changed.
    EmailChanged,
    /// A code by text message to a new phone number (no link).
    VerifyPhone,
    /// A notice by email: the account's phone number was added, replaced
    /// or removed.
    PhoneChanged,
    /// A notice by email: an authenticator app was added or removed, or
    /// the recovery codes were replaced.
    SecondFactorChanged,
    /// A notice by email: a recovery code was used to sign in.
    RecoveryCodeUsed,
    /// A code by email (no link) confirming a password sign-in that looks
    /// unlike the user's others, bound to that sign-in.
    SignInCheck,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::VerifyEmail => "verify_email",
            MessageKind::ResetPassword => "reset_password",
            MessageKind::SignInCode => "sign_in_code",
            MessageKind::PasswordChanged => "password_changed",
            MessageKind::ConfirmNewEmail => "confirm_new_email",
            MessageKind::EmailChanged => "email_changed",
            MessageKind::VerifyPhone => "verify_phone",
            MessageKind::PhoneChanged => "phone_changed",
            MessageKind::SecondFactorChanged => "second_factor_changed",
            MessageKind::RecoveryCodeUsed => "recovery_code_used",
            MessageKind::SignInCheck => "sign_in_check",
        }
    }

    /// The one-time code's purpose, for the kinds that carry one.
    pub fn purpose(self) -> Option<Purpose> {
        match self {
            MessageKind::VerifyEmail => Some(Purpose::VerifyEmail),
            MessageKind::ResetPassword => Some(Purpose::ResetPassword),
            MessageKind::SignInCode => Some(Purpose::SignIn),
            MessageKind::ConfirmNewEmail => Some(Purpose::ChangeEmail),
            MessageKind::VerifyPhone => Some(Purpose::VerifyPhone),
            MessageKind::SignInCheck => Some(Purpose::SignInCheck),
            MessageKind::PasswordChanged
            | MessageKind::EmailChanged
            | MessageKind::PhoneChanged
            | MessageKind::SecondFactorChanged
            | MessageKind::RecoveryCodeUsed => None,
        }
    }

    /// Whether an email of this kind carries a link beside its code. A
    /// sign-in check does not: it confirms a sign-in in the browser (or
    /// app) that started it, not in whatever the mail opens.
    pub fn carries_link(self) -> bool {
        self != MessageKind::SignInCheck
    }

    /// The one channel a kind goes by, for kinds tied to one: a phone's
    /// verification by text message, the notices and an email's own
    /// confirmations by email. `None`: either (codes for a reset or a
    /// sign-in go where the user asked them to).
    pub fn only_channel(self) -> Option<Channel> {
        match self {
            MessageKind::VerifyPhone => Some(Channel::Sms),
            MessageKind::VerifyEmail
            | MessageKind::ConfirmNewEmail
            | MessageKind::PasswordChanged
            | MessageKind::EmailChanged
            | MessageKind::PhoneChanged
            | MessageKind::SecondFactorChanged
            | MessageKind::RecoveryCodeUsed
            | MessageKind::SignInCheck => Some(Channel::Email),
            MessageKind::ResetPassword | MessageKind::SignInCode => None,
        }
    }
}

/// The identifier a code is asked for or presented with: an email
/// address or a phone number, as the user typed it (validated here).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Login<'a> {
    Email(&'a str),
    Phone(&'a str),
}

impl<'a> Login<'a> {
    /// What a user typed into one "email or phone number" field: a phone
    /// number when it has no `@` and starts like an international number
    /// (`+`, `00`), else an email address (whose validation then says what
    /// is wrong).
    pub fn typed(input: &'a str) -> Self {
        let t = input.trim_start();
        if !t.contains('@') && (t.starts_with('+') || t.starts_with("00")) {
            Login::Phone(input)
        } else {
            Login::Email(input)
        }
    }
}

impl std::fmt::Debug for Login<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Login::Email(_) => "Login::Email(<redacted>)",
            Login::Phone(_) => "Login::Phone(<redacted>)",
        })
    }
}

/// One message to one user. Personal data and secrets: `Debug` shows only
/// the kind, channel, user id and client.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub channel: Channel,
    /// The address (email) or number (E.164).
    pub to: String,
    pub kind: MessageKind,
    pub user_id: String,
    /// The app the user was signing in to (its branding), if any.
    pub client_id: Option<String>,
    /// The language asked for (`de`, `en-GB`…), if any.
    pub locale: Option<String>,
    pub code: Option<String>,
    /// The whole URL of the link.
    pub link: Option<String>,
    pub expires_in_minutes: i64,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("channel", &self.channel)
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Who asked, from where, and how the message should look: the app
/// (branding), the language, the client's address (limits), and the
/// continuation the link carries back (the hosted pages' sealed request),
/// and what the code is bound to besides its user (a sign-in check's
/// pending sign-in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    pub client_id: Option<String>,
    pub locale: Option<String>,
    pub address: Option<IpAddr>,
    pub continuation: Option<String>,
    pub bound_to: Option<[u8; 32]>,
}

/// What a limit counts.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Counted {
    Identifier([u8; 32]),
    Address(IpAddr),
}

/// Fixed-window request counters, per identifier (its keyed hash: the
/// same for an account that exists and one that does not) and per client
/// address. Kept in the node's memory: a region with several nodes allows
/// up to that many times the limit (`docs/messages.md`).
pub(crate) struct Throttle {
    counts: Mutex<HashMap<Counted, (i64, u32)>>,
}

/// Entries above which old windows are swept.
const SWEEP_AT: usize = 100_000;

impl Throttle {
    pub(crate) fn new() -> Self {
        Self {
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request against every key, or refuses with the seconds
    /// until the fullest key's window ends (then nothing is counted).
    fn admit(&self, keys: &[(Counted, u32)], window: i64, now: i64) -> Result<(), IdentityError> {
        let start = now - now.rem_euclid(window);
        let Ok(mut counts) = self.counts.lock() else {
            return Err(IdentityError::internal("throttle", "lock poisoned"));
        };
        if counts.len() > SWEEP_AT {
            counts.retain(|_, (s, _)| *s == start);
            if counts.len() > SWEEP_AT {
                // Still full within one window (a flood of distinct keys):
                // start the window's counts afresh rather than sweep on
                // every request. The account's own limits (issue 17) do
                // not depend on this map.
                counts.clear();
            }
        }
        for (key, limit) in keys {
            if let Some((s, n)) = counts.get(key)
                && *s == start
                && *n >= *limit
            {
                return Err(IdentityError::Throttled {
                    retry_after: start + window - now,
                });
            }
        }
        for (key, _) in keys {
            let entry = counts.entry(key.clone()).or_insert((start, 0));
            if entry.0 != start {
                *entry = (start, 0);
            }
            entry.1 += 1;
        }
        Ok(())
    }
}

impl Identity {
    /// Whether this region sends over `channel`.
    pub fn sends(&self, channel: Channel) -> bool {
        self.courier.offers(channel)
    }

    /// Whether the sign-in page offers a code by email.
    pub fn offers_sign_in_by_email(&self) -> bool {
        self.sends(Channel::Email) && self.topology.accounts.passwordless_email
    }

    /// Counts a request for a message about `identifier` (its keyed hash)
    /// from `address`, under `[accounts]`' limits.
    pub(crate) fn admit_request(
        &self,
        identifier: [u8; 32],
        channel: Channel,
        address: Option<IpAddr>,
    ) -> Result<(), IdentityError> {
        self.admit_requests(&[identifier], channel, address)
    }

    /// `admit_request` for a request counted against several identifiers
    /// at once (a number and the account asking for it).
    pub(crate) fn admit_requests(
        &self,
        identifiers: &[[u8; 32]],
        channel: Channel,
        address: Option<IpAddr>,
    ) -> Result<(), IdentityError> {
        let a = &self.topology.accounts;
        let mut keys: Vec<(Counted, u32)> = identifiers
            .iter()
            .map(|i| (Counted::Identifier(*i), a.requests_per_identifier))
            .collect();
        if let Some(ip) = address {
            keys.push((Counted::Address(prefix(ip)), a.requests_per_address));
        }
        self.throttle
            .admit(&keys, a.request_window_seconds, self.now())
            .inspect_err(|_| self.meter.message("request", channel.as_str(), "refused"))
    }

    /// What an account's own requests (verification mails, numbers asked
    /// for) are counted under: the SHA-256 of its user id, which no
    /// identifier key can equal.
    pub(crate) fn account_counter(&self, user_id: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(user_id.as_bytes()).into()
    }

    /// Whether any region of the federation texts (`answerable`).
    fn federation_texts(&self) -> bool {
        self.topology
            .regions
            .values()
            .any(|r| r.messaging.sms.is_some())
    }

    /// The link of a one-time code: the hosted pages' `/link` with the
    /// code's secret and purpose, and the continuation when there is one.
    fn link_url(&self, secret: &str, purpose: Purpose, continuation: Option<&str>) -> String {
        let mut url = format!(
            "{}{}?",
            self.topology.federation.issuer,
            domicile_oidc::LINK_PATH
        );
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("t", secret)
            .append_pair("p", purpose.as_str());
        if let Some(c) = continuation {
            q.append_pair("req", c);
        }
        url.push_str(&q.finish());
        url
    }

    /// Validates `login`: its index key and the channel a code for it
    /// goes by.
    pub(crate) fn resolve(
        &self,
        login: Login<'_>,
    ) -> Result<(IdentifierKey, Channel), IdentityError> {
        Ok(match login {
            Login::Email(e) => {
                let email = Email::parse(e).map_err(|e| IdentityError::invalid("email", e))?;
                (self.secret.email_key(&email), Channel::Email)
            }
            Login::Phone(p) => {
                let phone = Phone::parse(p).map_err(|e| IdentityError::invalid("phone", e))?;
                (self.secret.phone_key(&phone), Channel::Sms)
            }
        })
    }

    /// Whether `kind` may be asked for by `channel` under the federation's
    /// policy and this region's senders.
    pub(crate) fn offered(&self, kind: MessageKind, channel: Channel) -> Result<(), IdentityError> {
        if !self.courier.offers(channel) {
            return Err(IdentityError::NotOffered(match channel {
                Channel::Email => "email",
                Channel::Sms => "text messaging",
            }));
        }
        self.offered_by_policy(kind, channel)
    }

    /// Whether a request naming its user by `channel`'s identifier is
    /// answered here: `offered`, except that a region without an SMS
    /// sender in a federation that texts answers requests by number (as
    /// for a number nobody here has: none of its users can have one), so
    /// that where the edge's default sends an unknown number does not tell
    /// it from a known one.
    pub(crate) fn answerable(
        &self,
        kind: MessageKind,
        channel: Channel,
    ) -> Result<(), IdentityError> {
        if channel == Channel::Sms && !self.courier.offers(channel) && self.federation_texts() {
            return self.offered_by_policy(kind, channel);
        }
        self.offered(kind, channel)
    }

    /// The federation's policy part of `offered`.
    fn offered_by_policy(&self, kind: MessageKind, channel: Channel) -> Result<(), IdentityError> {
        let policy = &self.topology.accounts;
        match (kind, channel) {
            (MessageKind::SignInCode, Channel::Email) if !policy.passwordless_email => {
                Err(IdentityError::NotOffered("sign-in by email"))
            }
            (MessageKind::SignInCode, Channel::Sms) if !policy.passwordless_sms => {
                Err(IdentityError::NotOffered("sign-in by text message"))
            }
            _ => Ok(()),
        }
    }

    /// Asks for a code for `kind` (a reset, a sign-in) by email or by
    /// text message: the same answer, after the same steps, whether or
    /// not an account has this address or number. The identifier is
    /// validated; the request is counted against its limits; the region's
    /// identifier row and the index are read (both, always); a user homed
    /// elsewhere is `WrongRegion` (the edge follows it); then a sending
    /// slot is taken (`Busy` when none) and, only for an account homed
    /// here, the code is issued and sent in the background, so neither
    /// the store write nor the sender's latency shows in the answer. A
    /// phone number is an identifier only once verified, so a code by
    /// text message goes only to a verified number.
    pub async fn request_code(
        self: &Arc<Self>,
        login: Login<'_>,
        kind: MessageKind,
        asked: &Asked,
    ) -> Result<(), IdentityError> {
        let (key, channel) = self.resolve(login)?;
        self.answerable(kind, channel)?;
        self.admit_request(key.0, channel, asked.address)?;
        let local = self.store.get_identifier(&key).await?;
        let indexed = self.index.lookup(&key).await?;
        if local.is_none()
            && let Some(entry) = indexed
            && entry.region != self.region
            && entry.state == IndexState::Active
        {
            return Err(IdentityError::WrongRegion { home: entry.region });
        }
        let permit = Arc::clone(&self.sending)
            .try_acquire_owned()
            .map_err(|_| IdentityError::Busy)?;
        if let Some(user_id) = local {
            let me = Arc::clone(self);
            let asked = asked.clone();
            tokio::spawn(async move {
                let _permit = permit;
                me.issue_and_send(&user_id, kind, channel, None, &asked)
                    .await;
            });
        }
        Ok(())
    }

    /// Sends `kind` to `user_id` (homed here) in the background, taking a
    /// sending slot (`Busy` when none), to the account's address or number
    /// (or, for `ConfirmNewEmail` and `VerifyPhone`, its pending one).
    pub(crate) fn send_in_background(
        self: &Arc<Self>,
        user_id: &str,
        kind: MessageKind,
        asked: &Asked,
    ) -> Result<(), IdentityError> {
        self.dispatch(user_id, kind, None, asked)
    }

    /// `send_in_background` for a notice, whose failure to leave is
    /// logged (without personal data) rather than failing the change it
    /// tells of.
    pub(crate) fn notify(self: &Arc<Self>, user_id: &str, kind: MessageKind, to: Option<String>) {
        if let Err(e) = self.dispatch(user_id, kind, to, &Asked::default()) {
            tracing::warn!(user_id, kind = kind.as_str(), error = %e, "notice not sent");
        }
    }

    fn dispatch(
        self: &Arc<Self>,
        user_id: &str,
        kind: MessageKind,
        to: Option<String>,
        asked: &Asked,
    ) -> Result<(), IdentityError> {
        let channel = kind.only_channel().unwrap_or(Channel::Email);
        self.offered(kind, channel)?;
        let permit = Arc::clone(&self.sending)
            .try_acquire_owned()
            .map_err(|_| IdentityError::Busy)?;
        let me = Arc::clone(self);
        let (user_id, asked) = (user_id.to_owned(), asked.clone());
        tokio::spawn(async move {
            let _permit = permit;
            me.issue_and_send(&user_id, kind, channel, to, &asked).await;
        });
        Ok(())
    }

    /// Reads the user, issues the code (for the kinds that carry one) and
    /// hands the message to the courier; the outcome is counted and
    /// logged without personal data. A text message carries the code only:
    /// a link in a text is what phishing looks like.
    async fn issue_and_send(
        &self,
        user_id: &str,
        kind: MessageKind,
        channel: Channel,
        to: Option<String>,
        asked: &Asked,
    ) {
        let outcome = async {
            let user =
                self.store
                    .get_user(user_id)
                    .await?
                    .ok_or(IdentityError::Unauthenticated(
                        crate::Unauthenticated::UserGone,
                    ))?;
            // A change's code is bound to the address or number it is
            // sent to.
            let subject = match kind {
                MessageKind::ConfirmNewEmail => user
                    .pending_email
                    .as_deref()
                    .and_then(|e| Email::parse(e).ok())
                    .map(|e| self.secret.email_key(&e).0),
                MessageKind::VerifyPhone => user
                    .pending_phone
                    .as_deref()
                    .map(|p| self.secret.phone_key_e164(p).0),
                MessageKind::SignInCheck => asked.bound_to,
                // A texted code is bound to the number it went to: after
                // the number changes, it no longer signs in.
                _ if channel == Channel::Sms => user
                    .phone
                    .as_deref()
                    .map(|p| self.secret.phone_key_e164(p).0),
                _ => None,
            };
            let (code, link, minutes) = match kind.purpose() {
                Some(purpose) => {
                    let issued = self
                        .issue_one_time_for(user_id, purpose, channel, subject)
                        .await?;
                    let link = (channel == Channel::Email && kind.carries_link()).then(|| {
                        self.link_url(&issued.link, purpose, asked.continuation.as_deref())
                    });
                    (Some(issued.code), link, issued.expires_in / 60)
                }
                None => (None, None, 0),
            };
            let locale = asked
                .locale
                .clone()
                .or_else(|| (!user.locale.is_empty()).then(|| user.locale.clone()));
            let to = match (to, channel, kind) {
                (Some(to), _, _) => to,
                (None, Channel::Email, MessageKind::ConfirmNewEmail) => {
                    user.pending_email.clone().ok_or_else(|| {
                        IdentityError::internal("send message", "no pending address to confirm")
                    })?
                }
                (None, Channel::Email, _) => user.email.clone(),
                (None, Channel::Sms, MessageKind::VerifyPhone) => {
                    user.pending_phone.clone().ok_or_else(|| {
                        IdentityError::internal("send message", "no pending number to confirm")
                    })?
                }
                (None, Channel::Sms, _) => user.phone.clone().ok_or_else(|| {
                    IdentityError::internal("send message", "the account has no phone number")
                })?,
            };
            let message = Message {
                channel,
                to,
                kind,
                user_id: user_id.to_owned(),
                client_id: asked.client_id.clone(),
                locale,
                code,
                link,
                expires_in_minutes: minutes,
            };
            self.courier
                .deliver(message)
                .await
                .map_err(|e| IdentityError::internal("send message", e))
        }
        .await;
        match outcome {
            Ok(()) => {
                self.meter.message(kind.as_str(), channel.as_str(), "sent");
                tracing::info!(
                    user_id,
                    kind = kind.as_str(),
                    channel = channel.as_str(),
                    "message sent"
                );
            }
            Err(e) => {
                self.meter
                    .message(kind.as_str(), channel.as_str(), "failed");
                tracing::warn!(
                    user_id,
                    kind = kind.as_str(),
                    channel = channel.as_str(),
                    error = %e,
                    "message not sent"
                );
            }
        }
    }

    /// A user id of this region that no account has: what a code for an
    /// unknown address is checked against, so that the check does the
    /// same store work (and refuses) whether or not the account exists.
    pub(crate) fn nobody(&self) -> String {
        domicile_core::ids::UserId::new(
            &self.region,
            0,
            u128::from_le_bytes(random::<16>(self.entropy.as_ref())),
        )
        .to_string()
    }
}

/// What an address limit counts: the address itself (IPv4), or its /64
/// (IPv6, where one subscriber holds a whole /64).
fn prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_counts_per_window_and_refuses_with_the_wait() {
        let t = Throttle::new();
        let id = |b: u8| (Counted::Identifier([b; 32]), 2);
        let window = 900;
        assert!(t.admit(&[id(1)], window, 1_000).is_ok());
        assert!(t.admit(&[id(1)], window, 1_001).is_ok());
        match t.admit(&[id(1)], window, 1_010) {
            Err(IdentityError::Throttled { retry_after }) => assert_eq!(retry_after, 1_800 - 1_010),
            other => panic!("{other:?}"),
        }
        // Another identifier is not affected; the next window starts afresh.
        assert!(t.admit(&[id(2)], window, 1_010).is_ok());
        assert!(t.admit(&[id(1)], window, 1_800).is_ok());
        // A refusal counts nothing: the address stays under its limit.
        let addr = (Counted::Address("192.0.2.1".parse().unwrap()), 10);
        assert!(t.admit(&[id(3), addr.clone()], window, 2_000).is_ok());
        assert!(t.admit(&[id(3), addr.clone()], window, 2_000).is_ok());
        assert!(t.admit(&[id(3), addr.clone()], window, 2_000).is_err());
        let counts = t.counts.lock().unwrap();
        assert_eq!(counts.get(&addr.0).map(|c| c.1), Some(2));
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(prefix(a), prefix(b));
        assert_ne!(prefix(a), prefix(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(prefix(v4), v4);
    }

    #[test]
    fn one_field_tells_numbers_from_addresses() {
        for (typed, phone) in [
            ("+49 151 12345678", true),
            (" 0049151 12345678", true),
            ("ada@example.net", false),
            ("+ada@example.net", false),
            ("0151 12345678", false),
            ("", false),
        ] {
            assert_eq!(
                matches!(Login::typed(typed), Login::Phone(_)),
                phone,
                "{typed:?}"
            );
        }
    }

    #[test]
    fn messages_do_not_print_addresses_or_codes() {
        let m = Message {
            channel: Channel::Email,
            to: "ada@example.net".into(),
            kind: MessageKind::ResetPassword,
            user_id: "usr_eu_x".into(),
            client_id: None,
            locale: None,
            code: Some("123456".into()),
            link: Some("https://id/link?t=ol_secret".into()),
            expires_in_minutes: 15,
        };
        let shown = format!("{m:?}");
        for s in ["ada@", "123456", "ol_secret"] {
            assert!(!shown.contains(s), "{shown}");
        }
    }
}
