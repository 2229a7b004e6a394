//! The senders against real peers on loopback: an HTTP server that checks
//! the SMS webhook's signature itself (HMAC-SHA256 recomputed over the raw
//! body), an SMTP server (`mailin-embedded`) with and without STARTTLS
//! under a CA made by `openssl`, and the file outbox read back by
//! `mail-parser`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod senders;
