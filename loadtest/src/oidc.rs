//! The OpenID Connect workload (`--oidc`): what apps do to the provider's
//! HTTP endpoints once their users are signed in.
//!
//! - **populate**: each registered user signs in once through the hosted
//!   page as a browser would (the sign-in page, the form with its CSRF
//!   cookie, the code exchanged with PKCE at `/token`) for the public
//!   `demo` client with `offline_access`, which gives the refresh and
//!   access tokens the run uses;
//! - **run**, by `--oidc-mix refresh,introspect,page` weights:
//!   `refresh_token` grants at `/token` (each client owns its users, so
//!   rotation never trips reuse detection), `/introspect` of the user's
//!   access token by the confidential `demo-api` client
//!   (`client_secret_basic`), and the sign-in page (`GET /authorize`),
//!   timed to its first byte (the response head).
//!
//! Plain HTTP/1.1 with keep-alive, over one shared connection pool.

use crate::{Stats, User};
use anyhow::{Context, Result, anyhow};
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

/// RFC 7636 appendix B's verifier and its S256 challenge: PKCE for every
/// sign-in of the run (the provider checks it; the secret is no secret here).
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// Any port of the loopback redirect matches (RFC 8252 §7.3).
const REDIRECT: &str = "http://127.0.0.1:49152/callback";

/// How the run reaches the provider.
#[derive(Clone)]
pub struct Target {
    pub http: reqwest::Client,
    pub base: String,
    /// The confidential client that introspects: (id, secret).
    pub introspector: (String, String),
}

impl Target {
    pub fn new(
        target: std::net::SocketAddr,
        introspector: (String, String),
        pool: usize,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(pool)
            .build()?;
        Ok(Self {
            http,
            base: format!("http://{target}"),
            introspector,
        })
    }

    fn authorize_url(&self) -> String {
        format!(
            "{}/authorize?client_id=demo&response_type=code&scope=openid%20offline_access&state=lt&code_challenge={CHALLENGE}&code_challenge_method=S256&redirect_uri=http%3A%2F%2F127.0.0.1%3A49152%2Fcallback",
            self.base
        )
    }
}

/// A hidden field's value in a hosted page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_owned())
}

/// The `name=value` of a `Set-Cookie` named `name`.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// One user's sign-in through the hosted page: (refresh, access) tokens.
pub async fn sign_in(t: &Target, u: &User, password: &str) -> Result<(String, String)> {
    let page = t
        .http
        .get(t.authorize_url())
        .header("x-forwarded-for", &u.ip)
        .send()
        .await?;
    let csrf_cookie = set_cookie(&page, "domicile_csrf").context("no CSRF cookie")?;
    let html = page.text().await?;
    let (req, csrf) = (
        hidden(&html, "req").context("no sealed request on the page")?,
        hidden(&html, "csrf").context("no CSRF field on the page")?,
    );
    let answer = t
        .http
        .post(format!("{}/authorize", t.base))
        .header("x-forwarded-for", &u.ip)
        .header(reqwest::header::COOKIE, csrf_cookie)
        .form(&[
            ("req", req.as_str()),
            ("csrf", csrf.as_str()),
            ("email", u.email.as_str()),
            ("password", password),
        ])
        .send()
        .await?;
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| anyhow!("the sign-in form answered {}", answer.status()))?;
    let code = reqwest::Url::parse(location)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| anyhow!("no code in {location}"))?;
    let tokens = token(
        t,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "demo"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
    .map_err(|e| anyhow!("code exchange: {e}"))?;
    Ok(tokens)
}

/// A token request: the new (refresh, access) tokens, or what went wrong.
async fn token(t: &Target, form: &[(&str, &str)]) -> Result<(String, String), String> {
    let r = t
        .http
        .post(format!("{}/token", t.base))
        .form(form)
        .send()
        .await
        .map_err(|e| format!("token transport: {e}"))?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.map_err(|e| format!("token body: {e}"))?;
    match (
        body["refresh_token"].as_str(),
        body["access_token"].as_str(),
    ) {
        (Some(rt), Some(at)) if status.is_success() => Ok((rt.to_owned(), at.to_owned())),
        _ => Err(format!("token {status} {}", body["error"])),
    }
}

/// Signs in every user once (at most `concurrency` at a time).
pub async fn populate(
    t: &Target,
    users: Vec<User>,
    password: &'static str,
    concurrency: usize,
    bar: &ProgressBar,
) -> Result<Vec<User>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for mut u in users {
        let permit = sem.clone().acquire_owned().await?;
        let (t, bar) = (t.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let r = sign_in(&t, &u, password).await;
            bar.inc(1);
            r.map(|(rt, at)| {
                u.refresh = Some(rt);
                u.access = Some(at);
                u
            })
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await?.context("OpenID Connect sign-in")?);
    }
    Ok(out)
}

/// What one client of the run does until the deadline or the budget ends.
pub struct Lane {
    pub target: Target,
    pub users: Arc<Vec<Mutex<User>>>,
    pub stats: Arc<Mutex<Stats>>,
    pub weights: [u32; 3],
    pub seed: u64,
    pub deadline: Instant,
    pub budget: Arc<std::sync::atomic::AtomicU64>,
    /// `--rate`: the run's shared ticker.
    pub ticker: Option<Arc<tokio::sync::Mutex<tokio::time::Interval>>>,
    pub bar: ProgressBar,
    /// (this lane, lanes): the lane owns users idx ≡ lane (mod lanes).
    pub lane: (usize, usize),
}

pub async fn client_loop(l: Lane) {
    use std::sync::atomic::Ordering;
    let mut rng = SmallRng::seed_from_u64(l.seed);
    let (lane, lanes) = l.lane;
    let owned = (l.users.len() + lanes - 1 - lane) / lanes;
    if owned == 0 {
        return;
    }
    while Instant::now() < l.deadline {
        if l.budget.fetch_sub(1, Ordering::SeqCst) == 0 {
            l.budget.store(0, Ordering::SeqCst);
            break;
        }
        if let Some(t) = &l.ticker {
            t.lock().await.tick().await;
        }
        let idx = rng.gen_range(0..owned) * lanes + lane;
        let u = match l.users[idx].lock() {
            Ok(u) => u.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let start = Instant::now();
        let (op, result, took) = match crate::pick(&mut rng, &l.weights) {
            0 => {
                let rt = u.refresh.clone().unwrap_or_default();
                let r = token(
                    &l.target,
                    &[
                        ("grant_type", "refresh_token"),
                        ("client_id", "demo"),
                        ("refresh_token", &rt),
                    ],
                )
                .await;
                let r = r.map(|(rt, at)| {
                    if let Ok(mut slot) = l.users[idx].lock() {
                        slot.refresh = Some(rt);
                        slot.access = Some(at);
                    }
                });
                (crate::Op::RefreshGrant, r, start.elapsed())
            }
            1 => {
                let r = introspect(&l.target, &u).await;
                (crate::Op::Introspect, r, start.elapsed())
            }
            _ => match sign_in_page(&l.target, &u, start).await {
                Ok(ttfb) => (crate::Op::SignInPage, Ok(()), ttfb),
                Err(e) => (crate::Op::SignInPage, Err(e), start.elapsed()),
            },
        };
        if let Ok(mut s) = l.stats.lock() {
            s.record(op, u.home, took, result);
        }
        l.bar.inc(1);
    }
}

/// `/introspect` of the user's access token: it must be active.
async fn introspect(t: &Target, u: &User) -> Result<(), String> {
    let r = t
        .http
        .post(format!("{}/introspect", t.base))
        .basic_auth(&t.introspector.0, Some(&t.introspector.1))
        .form(&[("token", u.access.as_deref().unwrap_or_default())])
        .send()
        .await
        .map_err(|e| format!("introspect transport: {e}"))?;
    let status = r.status();
    let body: serde_json::Value = r
        .json()
        .await
        .map_err(|e| format!("introspect body: {e}"))?;
    match body["active"].as_bool() {
        Some(true) => Ok(()),
        _ => Err(format!("introspect {status} active={}", body["active"])),
    }
}

/// The sign-in page: the time from `start` to its response head (the
/// first byte). The body is read afterwards, so the connection is reused.
async fn sign_in_page(t: &Target, u: &User, start: Instant) -> Result<std::time::Duration, String> {
    let r = t
        .http
        .get(t.authorize_url())
        .header("x-forwarded-for", &u.ip)
        .send()
        .await
        .map_err(|e| format!("page transport: {e}"))?;
    let ttfb = start.elapsed();
    let status = r.status();
    let body = r.text().await.map_err(|e| format!("page body: {e}"))?;
    if status != reqwest::StatusCode::OK || !body.contains("name=\"csrf\"") {
        return Err(format!("page {status}"));
    }
    Ok(ttfb)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hidden_fields_are_found() {
        let html = r#"<input type="hidden" name="req" value="abc.def"><input type="hidden" name="csrf" value="x1">"#;
        assert_eq!(super::hidden(html, "req").as_deref(), Some("abc.def"));
        assert_eq!(super::hidden(html, "csrf").as_deref(), Some("x1"));
        assert_eq!(super::hidden(html, "other"), None);
    }
}
