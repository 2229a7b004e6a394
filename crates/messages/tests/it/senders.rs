use domicile_core::topology::Topology;
use domicile_identity::{
    ManualClock, OsEntropy,
    messages::{Channel, Message, MessageKind},
    ports::Courier,
};
use domicile_messages::Senders;
use domicile_testkit::{config::FederationConfig, sms::SmsSink, smtp::SmtpSink};
use std::{path::Path, process::Command, sync::Arc, time::Duration};

const SECRET: &str = "a webhook secret of thirty-two bytes or more";
const NOW: i64 = 1_800_000_000;

/// A topology whose eu region has `settings` (its `email`/`sms` lines).
fn topology(dir: &Path, settings: &[String]) -> Arc<Topology> {
    let mut c = FederationConfig::new("senders");
    c.nodes.insert("eu".into(), "127.0.0.1:1".parse().unwrap());
    c.region_settings = settings.to_vec();
    let text = c.render();
    let path = dir.join("regions.toml");
    std::fs::write(&path, &text).unwrap();
    Arc::new(Topology::parse(&path, &text).unwrap_or_else(|e| panic!("{e}\n{text}")))
}

fn senders(
    t: &Arc<Topology>,
    env: &[(&str, &str)],
) -> Result<Senders, domicile_messages::SenderError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let eu = t.regions.values().next().unwrap();
    Senders::new(
        eu,
        t.clone(),
        &|var| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()),
        Arc::new(ManualClock::at(NOW)),
        Arc::new(OsEntropy),
    )
}

fn message(channel: Channel, to: &str) -> Message {
    Message {
        channel,
        to: to.into(),
        kind: MessageKind::SignInCode,
        user_id: "usr_eu_01JD0000000000000000000000".into(),
        client_id: Some("demo".into()),
        locale: Some("de".into()),
        code: Some("314159".into()),
        link: Some("https://id.test/link?t=ol_eu_x&p=sign_in".into()),
        expires_in_minutes: 15,
    }
}

fn sms_settings(url: &str, attempts: u32) -> Vec<String> {
    vec![format!(
        "sms = {{ webhook = \"{url}\", secret_env = \"EU_SMS_SECRET\", timeout_ms = 2000, attempts = {attempts} }}"
    )]
}

/// A 503 is retried with the same idempotency key; every request is signed
/// over its raw body; the payload carries the number and the one line.
#[tokio::test]
async fn an_sms_is_posted_signed_and_retried_until_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmsSink::start(SECRET, vec![503]).await;
    let t = topology(dir.path(), &sms_settings(&sink.url("eu"), 3));
    let s = senders(&t, &[("EU_SMS_SECRET", SECRET)]).unwrap();
    assert!(s.offers(Channel::Sms) && !s.offers(Channel::Email));
    s.deliver(message(Channel::Sms, "+4915112345678"))
        .await
        .unwrap();
    let seen = sink.all();
    assert_eq!(seen.len(), 2, "one 503, then accepted");
    assert!(
        seen.iter().all(|t| t.signature_ok && t.signed_at == NOW),
        "every request signed, at the senders' clock"
    );
    assert_eq!(
        seen[0].idempotency_key, seen[1].idempotency_key,
        "one idempotency key for the retries"
    );
    assert_eq!(seen[1].to(), "+4915112345678");
    assert_eq!(seen[1].kind(), "sign_in_code");
    assert_eq!(seen[1].text(), "314159 ist Ihr Code für Demo app");
}

/// The secret may come from a file (a mounted container secret), its one
/// trailing newline not part of it; a receiver with another secret sees
/// bad signatures; a message without a code is never texted.
#[tokio::test]
async fn the_secret_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmsSink::start(SECRET, Vec::new()).await;
    std::fs::write(dir.path().join("sms.secret"), format!("{SECRET}\n")).unwrap();
    let line = format!(
        "sms = {{ webhook = \"{}\", secret_file = \"sms.secret\" }}",
        sink.url("eu")
    );
    let t = topology(dir.path(), std::slice::from_ref(&line));
    let s = senders(&t, &[]).unwrap();
    s.deliver(message(Channel::Sms, "+4915112345678"))
        .await
        .unwrap();
    assert!(sink.all()[0].signature_ok, "{:?}", sink.all());
    let mut notice = message(Channel::Sms, "+4915112345678");
    notice.code = None;
    notice.kind = MessageKind::PasswordChanged;
    assert!(s.deliver(notice).await.is_err());
    assert_eq!(sink.all().len(), 1);

    std::fs::write(
        dir.path().join("sms.secret"),
        "another secret, also thirty-two bytes long",
    )
    .unwrap();
    let s = senders(&topology(dir.path(), &[line]), &[]).unwrap();
    s.deliver(message(Channel::Sms, "+4915112345678"))
        .await
        .unwrap();
    assert!(!sink.all()[1].signature_ok, "the receiver's check can fail");

    let t = topology(
        dir.path(),
        &[format!(
            "sms = {{ webhook = \"{}\", secret_file = \"missing.secret\" }}",
            sink.url("eu")
        )],
    );
    let e = senders(&t, &[]).err().unwrap().to_string();
    assert!(e.contains("missing.secret"), "{e}");
}

/// A 400 is final (no retry); so many 503s exhaust the attempts; a
/// webhook that does not answer at all fails within its timeout.
#[tokio::test]
async fn refusals_and_outages_fail_within_their_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmsSink::start(SECRET, vec![400]).await;
    let t = topology(dir.path(), &sms_settings(&sink.url("eu"), 3));
    let s = senders(&t, &[("EU_SMS_SECRET", SECRET)]).unwrap();
    let e = s
        .deliver(message(Channel::Sms, "+4915112345678"))
        .await
        .unwrap_err();
    assert!(e.contains("400"), "{e}");
    assert_eq!(sink.all().len(), 1);

    let sink = SmsSink::start(SECRET, vec![503, 503]).await;
    let t = topology(dir.path(), &sms_settings(&sink.url("eu"), 2));
    let s = senders(&t, &[("EU_SMS_SECRET", SECRET)]).unwrap();
    assert!(
        s.deliver(message(Channel::Sms, "+4915112345678"))
            .await
            .is_err()
    );
    assert_eq!(sink.all().len(), 2, "attempts = 2");

    // Nothing listens here: every attempt fails fast, and the error names no URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let t = topology(
        dir.path(),
        &sms_settings(&format!("http://{closed}/sms"), 2),
    );
    let s = senders(&t, &[("EU_SMS_SECRET", SECRET)]).unwrap();
    let e = s
        .deliver(message(Channel::Sms, "+4915112345678"))
        .await
        .unwrap_err();
    assert!(
        e.contains("could not connect") && !e.contains("127.0.0.1"),
        "{e}"
    );
}

/// The senders refuse to start without their secret, or with a short one.
#[tokio::test]
async fn missing_or_short_secrets_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let t = topology(dir.path(), &sms_settings("http://127.0.0.1:9/sms", 1));
    let e = senders(&t, &[]).err().unwrap().to_string();
    assert!(e.contains("EU_SMS_SECRET is not set"), "{e}");
    let e = senders(&t, &[("EU_SMS_SECRET", "short")])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("at least 32 bytes"), "{e}");
}

/// The local outbox: one `.eml` per message, a multipart with the text
/// and HTML parts, in the asked language, from the region's sender.
#[tokio::test]
async fn the_file_outbox_holds_one_eml_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let t = topology(
        dir.path(),
        &["email = { from = \"ID <no-reply@eu.id.test>\", outbox = \"outbox/{region}\" }".into()],
    );
    let s = senders(&t, &[]).unwrap();
    s.deliver(message(Channel::Email, "ada@example.de"))
        .await
        .unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox/eu"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().unwrap(), "eml");
    let raw = std::fs::read(&files[0]).unwrap();
    let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), Some("Ihr Anmeldecode für Demo app"));
    assert!(m.body_text(0).unwrap().contains("314159"));
    assert!(m.body_html(0).unwrap().contains("314159"));
    assert!(String::from_utf8_lossy(&raw).contains("no-reply@eu.id.test"));
}

/// A CA and a certificate for 127.0.0.1 signed by it, made by `openssl`:
/// (ca.pem, cert.pem, key.pem), or `None` when openssl is missing.
fn certificates(dir: &Path) -> Option<(String, String, String)> {
    let p = |f: &str| dir.join(f).display().to_string();
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Test SMTP CA",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .is_ok()
        && run(&[
            "x509",
            "-req",
            "-in",
            "cert.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
    ok.then(|| (p("ca.pem"), p("cert.pem"), p("key.pem")))
}

fn smtp_settings(port: u16, tls: &str, ca: Option<&str>) -> Vec<String> {
    let ca = ca
        .map(|c| format!(", ca_file = \"{c}\""))
        .unwrap_or_default();
    vec![format!(
        "email = {{ from = \"ID <no-reply@eu.id.test>\", smtp = {{ host = \"127.0.0.1\", port = {port}, tls = \"{tls}\", timeout_ms = 5000{ca} }} }}"
    )]
}

/// STARTTLS with the relay's certificate checked against the configured
/// CA: delivered. Required means required: a relay that offers no
/// STARTTLS gets nothing, and neither does one whose certificate the CA
/// did not sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_required_and_its_certificate_checked() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = certificates(dir.path()) else {
        println!(
            "SKIPPED: starttls_is_required_and_its_certificate_checked: openssl is not on PATH (apt-get install -y openssl)"
        );
        return;
    };
    let tls_sink = SmtpSink::start_tls(&cert, &key).unwrap();
    let t = topology(
        dir.path(),
        &smtp_settings(tls_sink.addr.port(), "starttls", Some(&ca)),
    );
    senders(&t, &[])
        .unwrap()
        .deliver(message(Channel::Email, "ada@example.de"))
        .await
        .unwrap();
    let got = tls_sink
        .wait_for("ada@example.de", 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.subject(), "Ihr Anmeldecode für Demo app");

    let plain_sink = SmtpSink::start().unwrap();
    let t = topology(
        dir.path(),
        &smtp_settings(plain_sink.addr.port(), "starttls", Some(&ca)),
    );
    let e = senders(&t, &[])
        .unwrap()
        .deliver(message(Channel::Email, "ada@example.de"))
        .await;
    assert!(e.is_err(), "sent without TLS");
    assert!(plain_sink.all().is_empty());

    // The system roots do not know the test CA.
    let t = topology(
        dir.path(),
        &smtp_settings(tls_sink.addr.port(), "starttls", None),
    );
    let e = senders(&t, &[])
        .unwrap()
        .deliver(message(Channel::Email, "grace@example.de"))
        .await;
    assert!(e.is_err(), "an unknown CA was trusted");
    assert!(tls_sink.messages_to("grace@example.de").is_empty());
}
