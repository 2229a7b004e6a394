//! A real SMTP server on loopback for tests (`mailin-embedded`, which we
//! did not write): every message it accepts is kept as delivered (the
//! envelope and the raw DATA), and read back with `mail-parser`, so a test
//! sees what a mail client would, never a copy our code made.

use std::{
    net::{SocketAddr, TcpListener},
    sync::{Arc, Mutex},
    time::Duration,
};

/// One message as the server received it.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub from: String,
    pub to: Vec<String>,
    pub raw: Vec<u8>,
}

impl Delivered {
    fn parsed(&self) -> Option<mail_parser::Message<'_>> {
        mail_parser::MessageParser::default().parse(&self.raw)
    }

    pub fn subject(&self) -> String {
        self.parsed()
            .and_then(|m| m.subject().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The `text/plain` part, decoded.
    pub fn text(&self) -> String {
        self.parsed()
            .and_then(|m| m.body_text(0).map(|b| b.into_owned()))
            .unwrap_or_default()
    }

    /// The `text/html` part, decoded.
    pub fn html(&self) -> String {
        self.parsed()
            .and_then(|m| m.body_html(0).map(|b| b.into_owned()))
            .unwrap_or_default()
    }

    /// A header's raw value.
    pub fn header(&self, name: &str) -> Option<String> {
        let m = self.parsed()?;
        m.header_raw(name).map(|v| v.trim().to_owned())
    }

    /// The first word of exactly six digits in the text part: the code.
    pub fn code(&self) -> Option<String> {
        self.text()
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .map(str::to_owned)
    }

    /// The first URL in the text part that contains `/link?`.
    pub fn link(&self) -> Option<String> {
        self.text()
            .split_whitespace()
            .find(|w| w.starts_with("http") && w.contains("/link?"))
            .map(str::to_owned)
    }
}

#[derive(Clone)]
struct Handler {
    inbox: Arc<Mutex<Vec<Delivered>>>,
    current: Option<Delivered>,
}

impl mailin_embedded::Handler for Handler {
    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        self.current = Some(Delivered {
            from: from.to_owned(),
            to: to.to_vec(),
            raw: Vec::new(),
        });
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(c) = &mut self.current {
            c.raw.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        if let (Some(m), Ok(mut inbox)) = (self.current.take(), self.inbox.lock()) {
            inbox.push(m);
        }
        mailin_embedded::response::OK
    }
}

/// The server's address and everything it received. It serves until the
/// test process ends.
#[derive(Clone)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    inbox: Arc<Mutex<Vec<Delivered>>>,
}

impl SmtpSink {
    /// A plain-text SMTP server on 127.0.0.1:0.
    pub fn start() -> Result<Self, String> {
        Self::serve(None)
    }

    /// An SMTP server on 127.0.0.1:0 that offers STARTTLS with the PEM
    /// certificate and key at these paths.
    pub fn start_tls(cert_path: &str, key_path: &str) -> Result<Self, String> {
        Self::serve(Some(mailin_embedded::SslConfig::SelfSigned {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
        }))
    }

    fn serve(ssl: Option<mailin_embedded::SslConfig>) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let mut server = mailin_embedded::Server::new(Handler {
            inbox: inbox.clone(),
            current: None,
        });
        server
            .with_name("smtp.test")
            .with_num_threads(4)
            .with_tcp_listener(listener);
        if let Some(ssl) = ssl {
            server.with_ssl(ssl).map_err(|e| e.to_string())?;
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Ok(Self { addr, inbox })
    }

    /// Every message received for `to` so far, oldest first.
    pub fn messages_to(&self, to: &str) -> Vec<Delivered> {
        self.inbox
            .lock()
            .map(|i| {
                i.iter()
                    .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Delivered> {
        self.inbox.lock().map(|i| i.clone()).unwrap_or_default()
    }

    /// Waits (up to `timeout`) for the newest message to `to` whose
    /// subject starts with `prefix`, among those after the first `skip`.
    pub async fn wait_for_subject(
        &self,
        to: &str,
        prefix: &str,
        skip: usize,
        timeout: Duration,
    ) -> Option<Delivered> {
        crate::poll(timeout, || {
            self.messages_to(to)
                .into_iter()
                .skip(skip)
                .rfind(|m| m.subject().starts_with(prefix))
        })
        .await
    }

    /// Waits (up to `timeout`) for the `n`-th message (1-based) to `to`.
    pub async fn wait_for(&self, to: &str, n: usize, timeout: Duration) -> Option<Delivered> {
        crate::poll(timeout, || self.messages_to(to).into_iter().nth(n - 1)).await
    }
}
