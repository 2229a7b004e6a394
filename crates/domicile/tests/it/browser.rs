//! The hosted pages in a real browser: Debian's headless Chromium, driven
//! over WebDriver (`chromium-driver`, through the `fantoccini` crate), with
//! JavaScript switched off (the pages must work without it). A test app on
//! loopback receives the redirects. The browser signs up for the `demo`
//! app (choosing ap), is signed in again without a password (single
//! sign-on), signs out through RP-initiated logout, fails and then
//! succeeds at signing in, sees the German page, resets a forgotten
//! password from the emailed link and signs in with an emailed code (a
//! real SMTP server on loopback receives the mail), then sets up an
//! authenticator app on the account page (its QR code and key; codes by
//! the `totp-rs` crate from the page's `otpauth:` link), sees its recovery
//! codes, and signs in with the password and the app. Every page is
//! screenshotted into `target/tmp/browser-screenshots/`, whose path the
//! test prints.
//!
//! One browser (one chromedriver) per run: this is the only test that
//! starts one. Without `chromium` and `chromedriver` on the machine it says
//! SKIPPED with the command that installs them (`cargo xtask test` runs it
//! when it can).

use crate::procs::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver on a free loopback port and waits for it.
async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile: tempfile::tempdir().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = reqwest::get(format!("{}/status", driver.url))
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return driver;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A headless Chromium session with a fresh profile, no JavaScript, and
/// nothing reaching outside this machine.
async fn open_browser(driver: &Driver) -> Client {
    open_browser_in(driver, driver.profile.path(), false).await
}

/// A headless Chromium session with its profile in `profile`, JavaScript
/// on or off.
async fn open_browser_in(driver: &Driver, profile: &Path, javascript: bool) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=900,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": { "profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 } },
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("cannot start Chromium through chromedriver: {e}"))
}

/// WebDriver's `Add Virtual Authenticator` (WebAuthn Level 2 §11.3): a
/// CTAP2 platform authenticator with resident keys and user verification
/// that always succeeds.
#[derive(Debug)]
struct AddVirtualAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/authenticator",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = serde_json::json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
        });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Clicks the passkey button `id` and waits for the app to get the
/// sign-in's answer; a failure shows the page's passkey error.
async fn passkey_click(
    js: &Client,
    id: &str,
    app: &mut mpsc::UnboundedReceiver<BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    js.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let back = tokio::time::timeout(Duration::from_secs(15), app.recv()).await;
    if let Ok(Some(back)) = back {
        return back;
    }
    let shown = match js.find(Locator::Id("passkey-error")).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => js.source().await.unwrap_or_default(),
    };
    panic!("the passkey ({id}) did not sign in: {shown}");
}

/// The test app: answers every request on a loopback port with a small
/// page and hands each request's query to the test.
async fn start_app() -> (u16, mpsc::UnboundedReceiver<BTreeMap<String, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let mut len = 0;
            while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]).into_owned();
            let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
            if target.starts_with("/favicon") {
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                continue;
            }
            let url = reqwest::Url::parse(&format!("http://127.0.0.1{target}")).unwrap();
            let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
            let body = format!(
                "<!doctype html><html lang=\"en\"><title>Test app</title><h1>Test app</h1><p>Back at {} with {}</p></html>",
                url.path(),
                if query.contains_key("code") {
                    "a code"
                } else if query.contains_key("error") {
                    "an error"
                } else {
                    "nothing"
                }
            );
            let _ = conn
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            let _ = tx.send(query);
        }
    });
    (port, rx)
}

/// Saves a screenshot of the current page as `name`.png.
async fn shot(browser: &Client, dir: &Path, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Types into the field labelled by `id` (found by its label's `for`).
async fn fill(browser: &Client, id: &str, text: &str) {
    browser
        .find(Locator::Css(&format!("label[for=\"{id}\"]")))
        .await
        .unwrap_or_else(|_| panic!("no label for #{id}"));
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// The element, once the page that has it has loaded (at most 10 s).
async fn soon(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} within 10 s: {e}"))
}

async fn submit(browser: &Client) {
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The next query the app received.
async fn back_at_app(
    app: &mut mpsc::UnboundedReceiver<BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    tokio::time::timeout(Duration::from_secs(10), app.recv())
        .await
        .expect("the browser did not come back to the app in 10 s")
        .unwrap()
}

/// The claims of the ID token the app gets for `code` (its payload, read
/// as JSON: the signature has its own tests).
async fn id_token_claims(edge: &str, callback: &str, code: &str) -> serde_json::Value {
    let tokens = reqwest::Client::new()
        .post(format!("{edge}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "demo"),
            ("code", code),
            ("redirect_uri", callback),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(tokens.status(), 200);
    let tokens: serde_json::Value = serde_json::from_str(&tokens.text().await.unwrap()).unwrap();
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap()
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_up_signs_in_and_out_on_the_hosted_pages() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        println!(
            "SKIPPED: the browser test needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install -y chromium chromium-driver"
        );
        return;
    }
    let smtp = domicile_testkit::smtp::SmtpSink::start().unwrap();
    let fed = Federation::start_with(Options {
        smtp: Some(smtp.addr),
        localhost: true,
        ..Options::default()
    });
    let edge = format!("http://localhost:{}", fed.edge_addr.port());
    let (app_port, mut app) = start_app().await;
    let callback = format!("http://127.0.0.1:{app_port}/callback");
    let authorize = |extra: &str| {
        format!(
            "{edge}/authorize?client_id=demo&response_type=code&scope=openid%20email&state=b1&nonce=n1&code_challenge={CHALLENGE}&code_challenge_method=S256&redirect_uri={}{extra}",
            url::form_urlencoded::byte_serialize(callback.as_bytes()).collect::<String>()
        )
    };
    let dir = screenshots_dir();
    let driver = start_driver().await;
    let browser = open_browser(&driver).await;

    // Sign-up, from the sign-in page's link, choosing ap.
    browser.goto(&authorize("")).await.unwrap();
    assert!(browser.title().await.unwrap().starts_with("Sign in"));
    shot(&browser, &dir, "1-sign-in").await;
    // The keyboard reaches the fields and the button in reading order.
    browser
        .find(Locator::Id("email"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for next in ["password", "submit"] {
        browser
            .active_element()
            .await
            .unwrap()
            .send_keys(&fantoccini::key::Key::Tab.to_string())
            .await
            .unwrap();
        let focused = browser.active_element().await.unwrap();
        let id = focused.attr("id").await.unwrap();
        let kind = focused.attr("type").await.unwrap();
        assert!(
            id.as_deref() == Some(next) || kind.as_deref() == Some(next),
            "Tab should reach {next}, reached id {id:?} type {kind:?}"
        );
    }
    browser
        .find(Locator::LinkText("No account yet? Create one"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    soon(&browser, "input[name=region_preference]").await;
    assert!(
        browser
            .title()
            .await
            .unwrap()
            .starts_with("Create an account")
    );
    fill(&browser, "email", "mei@example.org").await;
    fill(&browser, "password", domicile_testkit::PASSWORD).await;
    browser
        .find(Locator::Css("input[name=region_preference][value=ap]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shot(&browser, &dir, "2-sign-up").await;
    submit(&browser).await;
    let back = back_at_app(&mut app).await;
    shot(&browser, &dir, "3-back-at-the-app").await;
    assert_eq!(back.get("state").map(String::as_str), Some("b1"));
    let code = back["code"].clone();
    assert!(code.starts_with("ac_ap_"), "the account is ap's: {code}");
    let tokens = reqwest::Client::new()
        .post(format!("{edge}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "demo"),
            ("code", code.as_str()),
            ("redirect_uri", callback.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(tokens.status(), 200);
    let tokens: serde_json::Value = serde_json::from_str(&tokens.text().await.unwrap()).unwrap();
    assert!(tokens["id_token"].is_string());
    assert_eq!(
        fed.users().await,
        [
            ("ap".to_owned(), 1),
            ("eu".to_owned(), 0),
            ("us".to_owned(), 0)
        ]
    );

    // Single sign-on: no page at all.
    browser.goto(&authorize("&prompt=none")).await.unwrap();
    assert!(back_at_app(&mut app).await["code"].starts_with("ac_ap_"));

    // RP-initiated logout: the question, then the answer.
    browser
        .goto(&format!("{edge}/logout?client_id=demo"))
        .await
        .unwrap();
    assert!(browser.title().await.unwrap().starts_with("Sign out"));
    shot(&browser, &dir, "4-sign-out-question").await;
    submit(&browser).await;
    let said = soon(&browser, "[role=status]").await;
    assert!(said.text().await.unwrap().contains("close this window"));
    shot(&browser, &dir, "5-signed-out").await;
    browser.goto(&authorize("&prompt=none")).await.unwrap();
    assert_eq!(
        back_at_app(&mut app).await.get("error").map(String::as_str),
        Some("login_required")
    );

    // A wrong password, then the right one.
    browser.goto(&authorize("")).await.unwrap();
    fill(&browser, "email", "mei@example.org").await;
    fill(&browser, "password", "not the password").await;
    submit(&browser).await;
    let alert = soon(&browser, "#form-error[role=alert]").await;
    let said = alert.text().await.unwrap();
    assert!(said.contains("not right"), "{said}");
    shot(&browser, &dir, "6-sign-in-refused").await;
    let email = browser.find(Locator::Id("email")).await.unwrap();
    assert_eq!(
        email.prop("value").await.unwrap().as_deref(),
        Some("mei@example.org"),
        "the email is kept"
    );
    fill(&browser, "password", domicile_testkit::PASSWORD).await;
    submit(&browser).await;
    assert!(back_at_app(&mut app).await["code"].starts_with("ac_ap_"));

    // The German page.
    browser
        .goto(&authorize("&prompt=login&ui_locales=de"))
        .await
        .unwrap();
    assert!(browser.title().await.unwrap().starts_with("Anmelden"));
    shot(&browser, &dir, "7-sign-in-de").await;

    // A forgotten password: the sign-in page's link, the address, the
    // emailed link (sent by ap, the account's home region) opened in the
    // browser, a new password, and back at the app.
    browser.goto(&authorize("&prompt=login")).await.unwrap();
    browser
        .find(Locator::LinkText("Forgot your password?"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        browser
            .title()
            .await
            .unwrap()
            .starts_with("Reset your password")
    );
    fill(&browser, "email", "mei@example.org").await;
    shot(&browser, &dir, "8-recover").await;
    submit(&browser).await;
    let said = soon(&browser, "form[action=\"/code\"]").await;
    assert!(said.html(false).await.unwrap().contains("reset_password"));
    // The sign-up sent the address's verification mail first.
    let first = smtp
        .wait_for("mei@example.org", 1, Duration::from_secs(10))
        .await
        .expect("the verification mail of the sign-up");
    assert!(
        first.subject().starts_with("Confirm your email address"),
        "{}",
        first.subject()
    );
    let mail = smtp
        .wait_for_subject(
            "mei@example.org",
            "Reset your password",
            0,
            Duration::from_secs(10),
        )
        .await
        .expect("the reset mail");
    assert!(
        mail.from.contains("ap.id.test"),
        "sent by ap: {}",
        mail.from
    );
    let link = mail.link().expect("a link in the mail");
    assert!(link.starts_with(&format!("{edge}/link?t=ol_ap_")), "{link}");
    browser.goto(&link).await.unwrap();
    fill(&browser, "password", "a brand new passphrase").await;
    shot(&browser, &dir, "9-reset-by-link").await;
    submit(&browser).await;
    assert!(back_at_app(&mut app).await["code"].starts_with("ac_ap_"));
    // The new password signs in; the old one no longer does.
    browser.goto(&authorize("&prompt=login")).await.unwrap();
    fill(&browser, "email", "mei@example.org").await;
    fill(&browser, "password", domicile_testkit::PASSWORD).await;
    submit(&browser).await;
    assert!(
        soon(&browser, "#form-error[role=alert]")
            .await
            .text()
            .await
            .unwrap()
            .contains("not right")
    );

    // Passwordless: the sign-in page's second button, the emailed code typed.
    browser.goto(&authorize("&prompt=login")).await.unwrap();
    fill(&browser, "email", "mei@example.org").await;
    browser
        .find(Locator::Css("button[formaction=\"/passwordless\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    soon(&browser, "input#code").await;
    let mail = smtp
        .wait_for_subject(
            "mei@example.org",
            "Your sign-in code",
            0,
            Duration::from_secs(10),
        )
        .await
        .expect("the sign-in code");
    assert!(
        mail.subject().starts_with("Your sign-in code"),
        "{}",
        mail.subject()
    );
    fill(&browser, "code", &mail.code().unwrap()).await;
    shot(&browser, &dir, "10-sign-in-code").await;
    submit(&browser).await;
    assert!(back_at_app(&mut app).await["code"].starts_with("ac_ap_"));

    // Two-step sign-in: the account page (the browser's session from the
    // sign-in just made) sets up an authenticator app from its QR code.
    browser.goto(&format!("{edge}/account")).await.unwrap();
    assert!(
        browser
            .title()
            .await
            .unwrap()
            .starts_with("Account security")
    );
    submit(&browser).await;
    soon(&browser, "figure.qr svg").await;
    let key = browser
        .find(Locator::Id("secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let uri = browser
        .find(Locator::Id("otpauth"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(uri.contains(&format!("secret={key}")), "{uri}");
    shot(&browser, &dir, "11-authenticator-app").await;
    let totp = totp_rs::Totp::from_url(&uri).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    fill(&browser, "code", &totp.generate(now()).to_string()).await;
    submit(&browser).await;
    soon(&browser, "ul.codes").await;
    let shown = browser.find_all(Locator::Css("ul.codes li")).await.unwrap();
    assert_eq!(shown.len(), 10, "ten recovery codes");
    shot(&browser, &dir, "12-recovery-codes").await;
    // The password is no longer enough: the page asks for the app.
    browser.goto(&authorize("&prompt=login")).await.unwrap();
    fill(&browser, "email", "mei@example.org").await;
    fill(&browser, "password", "a brand new passphrase").await;
    submit(&browser).await;
    soon(&browser, "form[action=\"/mfa\"]").await;
    shot(&browser, &dir, "13-second-step").await;
    // The next step's code: the confirming one is spent.
    fill(&browser, "code", &totp.generate(now() + 30).to_string()).await;
    submit(&browser).await;
    let back = back_at_app(&mut app).await;
    let claims = id_token_claims(&edge, &callback, &back["code"]).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert_eq!(claims["acr"], "urn:domicile:loa:2");

    // Neither the address nor a link ever reached a log, of the edge or of
    // any region's node. (Codes are six digits, which a log's timestamps
    // may hold by chance: their absence follows from `Message`'s `Debug`,
    // tested in identity.)
    let logs = fed.logs();
    let secret = link.split("t=").nth(1).unwrap().split('&').next().unwrap();
    for kept_out in ["mei@example.org", secret, key.as_str()] {
        assert!(!logs.contains(kept_out), "{kept_out} is in a log");
    }

    // Passkeys, in a second Chromium with JavaScript and a virtual
    // authenticator, holding the two-step browser session just made: the
    // account page adds one (the page's script, the browser's WebAuthn,
    // the RP ID `localhost`), lists it, and renames it.
    let profile = tempfile::tempdir().unwrap();
    let js = open_browser_in(&driver, profile.path(), true).await;
    js.issue_cmd(AddVirtualAuthenticator)
        .await
        .expect("a virtual authenticator");
    js.goto(&format!("{edge}/account")).await.unwrap();
    // (Cookies are read for the page shown: the hosted pages'.)
    browser.goto(&format!("{edge}/account")).await.unwrap();
    for cookie in browser.get_all_cookies().await.unwrap() {
        js.add_cookie(cookie).await.unwrap();
    }
    js.goto(&format!("{edge}/account")).await.unwrap();
    fill(&js, "passkey-name", "Test laptop").await;
    fill(&js, "passkey-password", "a brand new passphrase").await;
    js.find(Locator::Id("passkey-add-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let added = js
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("li.passkey"))
        .await;
    if added.is_err() {
        let shown = js
            .find(Locator::Id("passkey-error"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        shot(&js, &dir, "14-passkey-failed").await;
        panic!("no passkey was added: {shown:?}");
    }
    let page = js.source().await.unwrap();
    assert!(page.contains("The passkey was added."), "{page}");
    assert!(page.contains("Test laptop"), "{page}");
    shot(&js, &dir, "14-passkey-added").await;
    let rename = js.find(Locator::Id("rename-1")).await.unwrap();
    rename.clear().await.unwrap();
    rename.send_keys("Work laptop").await.unwrap();
    js.find(Locator::Css(
        "li.passkey form[action=\"/account/passkeys/rename\"] button",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    // (The old page has a passkey too: wait for the new page's notice.)
    js.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(
            "//p[@role='status'][contains(., 'The passkey was renamed.')]",
        ))
        .await
        .expect("the renamed notice");
    let page = js.source().await.unwrap();
    assert!(page.contains("Work laptop"), "{page}");
    shot(&js, &dir, "15-passkey-renamed").await;
    // The passkey is a second factor: the password, then the passkey on
    // the second step's page (its script, the authenticator's assertion).
    js.goto(&authorize("&prompt=login")).await.unwrap();
    fill(&js, "email", "mei@example.org").await;
    fill(&js, "password", "a brand new passphrase").await;
    submit(&js).await;
    soon(&js, "#use-passkey").await;
    shot(&js, &dir, "16-second-step-passkey").await;
    let back = passkey_click(&js, "use-passkey", &mut app).await;
    let claims = id_token_claims(&edge, &callback, &back["code"]).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "pop", "mfa"]));
    assert_eq!(claims["acr"], "urn:domicile:loa:2");
    // And alone, with no address or password: the sign-in page's "Sign in
    // with a passkey" (a ceremony from whichever region the edge picks;
    // the resident key's user handle routes the answer home).
    js.goto(&authorize("&prompt=login")).await.unwrap();
    soon(&js, "#passkey-sign-in").await;
    shot(&js, &dir, "17-passkey-sign-in").await;
    let back = passkey_click(&js, "passkey-sign-in", &mut app).await;
    let claims = id_token_claims(&edge, &callback, &back["code"]).await;
    assert_eq!(claims["amr"], serde_json::json!(["pop", "user", "mfa"]));
    assert_eq!(claims["acr"], "urn:domicile:loa:2");
    js.close().await.unwrap();

    browser.close().await.unwrap();
    drop(driver);
    let mut saved: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    saved.sort();
    assert_eq!(saved.len(), 17, "{saved:?}");
    println!(
        "screenshots of the hosted pages: {}: {saved:?}",
        dir.display()
    );
}
