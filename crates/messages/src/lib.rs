//! Domicile's message senders: a region's [`Senders`] implement the
//! identity use cases' `Courier` port. A message is rendered
//! (`templates`: per client branding and locale, plain text and HTML) and
//! handed to the region's transport: email over SMTP (`smtp`, lettre;
//! STARTTLS or implicit TLS), or to a file outbox for local federations
//! (`.eml` files); SMS to a signed HTTP webhook (`webhook`) or a file
//! outbox (JSON files).
//!
//! What is not here: which messages are sent and when (the journeys in
//! `domicile-identity`), codes and their checks (`identity::one_time`).
//! Each region's senders are built from that region's configuration only,
//! so a message leaves from the user's home region or not at all. Nothing
//! here logs an address, a code or a link.

#![forbid(unsafe_code)]

pub mod smtp;
pub mod templates;
pub mod webhook;

use async_trait::async_trait;
use domicile_core::{
    clients::Branding,
    messaging::{EmailTransport, SecretSource, SmsSender},
    topology::{Region, Topology},
};
use domicile_identity::{
    Clock, Entropy,
    messages::{Channel, Message},
    ports::Courier,
};
use lettre::AsyncTransport as _;
use std::{path::PathBuf, sync::Arc};

/// Why a region's senders could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("region {region}: email.from {from:?} is not a mailbox: {reason}")]
    From {
        region: String,
        from: String,
        reason: String,
    },
    #[error("region {region}: {what}: environment variable {var} is not set")]
    MissingSecret {
        region: String,
        what: &'static str,
        var: String,
    },
    #[error("region {region}: {what}: {detail}")]
    Setup {
        region: String,
        what: &'static str,
        detail: String,
    },
}

enum EmailOut {
    Smtp(smtp::Relay),
    Outbox(lettre::AsyncFileTransport<lettre::Tokio1Executor>),
}

enum SmsOut {
    Webhook(webhook::Webhook),
    Outbox(PathBuf),
}

/// One region's senders.
pub struct Senders {
    topology: Arc<Topology>,
    residency: String,
    from: Option<lettre::message::Mailbox>,
    email: Option<EmailOut>,
    sms: Option<SmsOut>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

impl Senders {
    /// The senders `region`'s configuration names; secrets are read with
    /// `env` (the process environment in the node). An outbox directory
    /// is created.
    pub fn new(
        region: &Region,
        topology: Arc<Topology>,
        env: &dyn Fn(&str) -> Option<String>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Self, SenderError> {
        let name = region.code.to_string();
        let setup = |what: &'static str, detail: String| SenderError::Setup {
            region: name.clone(),
            what,
            detail,
        };
        let (from, email) = match &region.messaging.email {
            None => (None, None),
            Some(e) => {
                let from = e.from.parse::<lettre::message::Mailbox>().map_err(|err| {
                    SenderError::From {
                        region: name.clone(),
                        from: e.from.clone(),
                        reason: err.to_string(),
                    }
                })?;
                let out = match &e.transport {
                    EmailTransport::Outbox(dir) => {
                        std::fs::create_dir_all(dir).map_err(|err| {
                            setup("email.outbox", format!("{}: {err}", dir.display()))
                        })?;
                        EmailOut::Outbox(lettre::AsyncFileTransport::new(dir))
                    }
                    EmailTransport::Smtp(s) => {
                        let password = match &s.password_env {
                            Some(var) => {
                                Some(env(var).ok_or_else(|| SenderError::MissingSecret {
                                    region: name.clone(),
                                    what: "email.smtp.password_env",
                                    var: var.clone(),
                                })?)
                            }
                            None => None,
                        };
                        EmailOut::Smtp(
                            smtp::Relay::new(s, password)
                                .map_err(|err| setup("email.smtp", err))?,
                        )
                    }
                };
                (Some(from), Some(out))
            }
        };
        let sms = match &region.messaging.sms {
            None => None,
            Some(SmsSender::Outbox(dir)) => {
                std::fs::create_dir_all(dir)
                    .map_err(|err| setup("sms.outbox", format!("{}: {err}", dir.display())))?;
                Some(SmsOut::Outbox(dir.clone()))
            }
            Some(SmsSender::Webhook(w)) => {
                let secret = match &w.secret {
                    SecretSource::Env(var) => {
                        env(var).ok_or_else(|| SenderError::MissingSecret {
                            region: name.clone(),
                            what: "sms.secret_env",
                            var: var.clone(),
                        })?
                    }
                    SecretSource::File(file) => {
                        let mut text = std::fs::read_to_string(file).map_err(|err| {
                            setup("sms.secret_file", format!("{}: {err}", file.display()))
                        })?;
                        if text.ends_with('\n') {
                            text.pop();
                            if text.ends_with('\r') {
                                text.pop();
                            }
                        }
                        text
                    }
                };
                Some(SmsOut::Webhook(
                    webhook::Webhook::new(w, secret.into_bytes())
                        .map_err(|err| setup("sms.webhook", err))?,
                ))
            }
        };
        Ok(Self {
            topology,
            residency: region.residency.clone(),
            from,
            email,
            sms,
            clock,
            entropy,
        })
    }

    /// Where this region's email outbox is, if it has one (what `domicile
    /// up` prints).
    pub fn outbox(region: &Region) -> Option<&std::path::Path> {
        match &region.messaging.email {
            Some(domicile_core::messaging::EmailSender {
                transport: EmailTransport::Outbox(dir),
                ..
            }) => Some(dir),
            _ => None,
        }
    }

    /// The branding of a message: its client's, or the federation's own.
    fn brand(&self, client_id: Option<&str>) -> Branding {
        client_id
            .and_then(|id| self.topology.clients.get(id))
            .map_or_else(
                || Branding::neutral(&self.topology.federation.name),
                |c| c.branding.clone(),
            )
    }

    async fn send_email(&self, message: &Message) -> Result<(), String> {
        let (Some(from), Some(out)) = (&self.from, &self.email) else {
            return Err("this region sends no email".into());
        };
        let brand = self.brand(message.client_id.as_deref());
        let rendered = templates::email(message, &brand, &self.residency)
            .map_err(|e| format!("rendering: {e}"))?;
        let to = message
            .to
            .parse::<lettre::message::Mailbox>()
            .map_err(|_| "the recipient is not a mailbox".to_owned())?;
        let email = lettre::Message::builder()
            .from(from.clone())
            .to(to)
            .subject(rendered.subject)
            .multipart(lettre::message::MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .map_err(|e| format!("building: {e}"))?;
        match out {
            EmailOut::Smtp(relay) => relay.send(email).await,
            EmailOut::Outbox(files) => files
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| format!("outbox: {e}")),
        }
    }

    async fn send_sms(&self, message: &Message) -> Result<(), String> {
        let Some(out) = &self.sms else {
            return Err("this region sends no SMS".into());
        };
        if message.code.is_none() {
            return Err(format!("{} carries no code to text", message.kind.as_str()));
        }
        let text = templates::sms(message, &self.brand(message.client_id.as_deref()));
        let id = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            domicile_identity::env::random::<16>(self.entropy.as_ref()),
        );
        let body = webhook::Payload {
            id: &id,
            to: &message.to,
            text: &text,
            kind: message.kind.as_str(),
        };
        match out {
            SmsOut::Webhook(w) => w.send(&body, self.clock.now()).await,
            SmsOut::Outbox(dir) => {
                let json = serde_json::to_vec_pretty(&body).map_err(|e| e.to_string())?;
                let path = dir.join(format!("{}-{id}.json", self.clock.now()));
                tokio::fs::write(&path, json)
                    .await
                    .map_err(|e| format!("outbox: {e}"))
            }
        }
    }
}

#[async_trait]
impl Courier for Senders {
    fn offers(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email.is_some(),
            Channel::Sms => self.sms.is_some(),
        }
    }

    async fn deliver(&self, message: Message) -> Result<(), String> {
        match message.channel {
            Channel::Email => self.send_email(&message).await,
            Channel::Sms => self.send_sms(&message).await,
        }
    }
}
