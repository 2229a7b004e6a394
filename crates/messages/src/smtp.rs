//! Email over SMTP through the region's relay (lettre): STARTTLS
//! (required, never downgraded), implicit TLS, or plain text to a
//! loopback relay; SMTP AUTH when configured; a private CA added to the
//! system's roots when named. A message is tried up to [`ATTEMPTS`] times
//! when the relay's refusal is transient (4xx, a dropped connection or a
//! timeout); a permanent refusal (5xx) is final.

use domicile_core::messaging::{Smtp, SmtpTls};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
    },
};
use std::time::Duration;

/// Tries per message.
pub const ATTEMPTS: u32 = 3;

/// A region's SMTP relay (connections pooled).
pub struct Relay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Relay {
    /// The relay `s` names, with the password read from its environment
    /// variable. Errors are for the operator (no secrets in them).
    pub fn new(s: &Smtp, password: Option<String>) -> Result<Self, String> {
        let tls = || -> Result<TlsParameters, String> {
            let mut b = TlsParameters::builder(s.host.clone());
            if let Some(ca) = &s.ca_file {
                let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| format!("{}: not a PEM certificate: {e}", ca.display()))?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls().map_err(|e| format!("TLS setup: {e}"))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .timeout(Some(s.timeout));
        builder = match s.tls {
            SmtpTls::StartTls => builder.tls(Tls::Required(tls()?)),
            SmtpTls::Implicit => builder.tls(Tls::Wrapper(tls()?)),
            SmtpTls::None => builder.tls(Tls::None),
        };
        if let (Some(user), Some(pass)) = (&s.username, password) {
            builder = builder.credentials(Credentials::new(user.clone(), pass));
        }
        Ok(Self {
            transport: builder.build(),
        })
    }

    /// Sends `email`, retrying transient failures.
    pub async fn send(&self, email: lettre::Message) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.transport.send(email.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_permanent() => return Err(describe(&e)),
                Err(e) => {
                    last = format!("attempt {attempt}: {}", describe(&e));
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1)))
                            .await;
                    }
                }
            }
        }
        Err(last)
    }
}

/// What went wrong, without the relay's reply text (which may quote the
/// recipient's address): the class of failure and the SMTP status code.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let class = if e.is_permanent() {
        "the relay refused the message (permanent)"
    } else if e.is_transient() {
        "the relay deferred the message (transient)"
    } else if e.is_timeout() {
        "the relay timed out"
    } else if e.is_tls() {
        "TLS with the relay failed"
    } else {
        "the relay could not be reached or broke the session"
    };
    match e.status() {
        Some(code) => format!("{class}: SMTP {code}"),
        None => class.to_owned(),
    }
}
