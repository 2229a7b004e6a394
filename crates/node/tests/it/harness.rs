//! Starts a federation of real nodes in-process.

use domicile_core::{RegionCode, topology::Topology};
use domicile_node::{HOME_REGION_METADATA, ManualClock, Node, NodeOptions, OsEntropy, RunningNode};
use domicile_proto::v1::{self as pb, identity_client::IdentityClient};
pub use domicile_testkit::{bearer, http_get, key_set, register as register_req};
use std::{collections::BTreeMap, path::PathBuf, sync::Arc};
use tonic::{Code, Status, transport::Channel};

use domicile_testkit::config::FederationConfig;
pub use domicile_testkit::config::{CHEAP_PASSWORDS, OWASP_PASSWORDS};

pub const START: i64 = 1_800_000_000;

/// A test federation: eu (index host), us and ap, with email domains
/// example.de and *.eu.example.org → eu, example.com → us, example.jp → ap.
pub struct Fed {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub topology: Arc<Topology>,
    pub nodes: BTreeMap<String, RunningNode>,
    passwords: String,
    allow_preference: bool,
    /// `FederationConfig::region_settings` and `accounts`.
    extra: (Vec<String>, Option<String>),
    /// `FederationConfig::region_lines`.
    region_lines: Vec<(String, String)>,
}

/// Every region's email through the plain-text SMTP server at `smtp`.
fn email_line(smtp: std::net::SocketAddr) -> String {
    format!(
        "email = {{ from = \"Test ID <no-reply@{{region}}.id.test>\", smtp = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }} }}",
        smtp.port()
    )
}

fn config(
    addrs: &BTreeMap<String, std::net::SocketAddr>,
    passwords: &str,
    allow_preference: bool,
    extra: &(Vec<String>, Option<String>),
    region_lines: &[(String, String)],
) -> String {
    let mut c = FederationConfig::new("test");
    c.region_settings = extra.0.clone();
    c.region_lines = region_lines.to_vec();
    c.accounts = extra.1.clone();
    c.allow_region_preference = allow_preference;
    c.claim_ttl_seconds = Some(60);
    c.passwords = passwords.into();
    c.nodes = addrs.clone();
    c.render()
}

impl Fed {
    /// Starts eu, us and ap nodes with cheap password hashing.
    pub async fn start() -> Self {
        Self::with_passwords(CHEAP_PASSWORDS).await
    }

    pub async fn with_passwords(passwords: &str) -> Self {
        Self::with(passwords, true).await
    }

    /// Starts eu, us and ap with cheap hashing; `allow_preference` sets
    /// `federation.allow_region_preference`.
    pub async fn with(passwords: &str, allow_preference: bool) -> Self {
        Self::configured(passwords, allow_preference, (Vec::new(), None)).await
    }

    /// Starts eu, us and ap with cheap hashing, each region sending its
    /// email through the SMTP server at `smtp` (plain text on loopback),
    /// under the `[accounts]` table `accounts` if any.
    pub async fn with_mail(smtp: std::net::SocketAddr, accounts: Option<&str>) -> Self {
        let email = email_line(smtp);
        Self::configured(
            CHEAP_PASSWORDS,
            true,
            (vec![email], accounts.map(str::to_owned)),
        )
        .await
    }

    /// `with_mail`, and each region texting through the webhook receiver
    /// `sms` (`/sms/<region>`), signing with `sms_secret` from a file.
    pub async fn with_mail_and_sms(
        smtp: std::net::SocketAddr,
        sms: &domicile_testkit::sms::SmsSink,
        sms_secret: &str,
        accounts: Option<&str>,
    ) -> Self {
        Self::with_mail_and_sms_in(smtp, sms, sms_secret, accounts, &["eu", "us", "ap"]).await
    }

    /// `with_mail_and_sms`, with an SMS sender in `texting` regions only.
    pub async fn with_mail_and_sms_in(
        smtp: std::net::SocketAddr,
        sms: &domicile_testkit::sms::SmsSink,
        sms_secret: &str,
        accounts: Option<&str>,
        texting: &[&str],
    ) -> Self {
        let email = email_line(smtp);
        let secret_file = std::env::temp_dir().join(format!(
            "domicile-test-sms-secret-{}-{}",
            std::process::id(),
            sms.addr.port()
        ));
        std::fs::write(&secret_file, format!("{sms_secret}\n")).unwrap();
        let lines = texting
            .iter()
            .map(|r| {
                (
                    (*r).to_owned(),
                    format!(
                        "sms = {{ webhook = \"{}\", secret_file = \"{}\", timeout_ms = 2000, attempts = 3 }}",
                        sms.url(r),
                        secret_file.display()
                    ),
                )
            })
            .collect();
        let mut fed = Self::unstarted(
            CHEAP_PASSWORDS,
            true,
            (vec![email], accounts.map(str::to_owned)),
        );
        fed.region_lines = lines;
        fed.boot(&["eu", "us", "ap"], BTreeMap::new()).await;
        fed
    }

    async fn configured(
        passwords: &str,
        allow_preference: bool,
        extra: (Vec<String>, Option<String>),
    ) -> Self {
        let mut fed = Self::unstarted(passwords, allow_preference, extra);
        fed.boot(&["eu", "us", "ap"], BTreeMap::new()).await;
        fed
    }

    fn unstarted(
        passwords: &str,
        allow_preference: bool,
        extra: (Vec<String>, Option<String>),
    ) -> Self {
        Fed {
            dir: tempfile::tempdir().unwrap(),
            clock: ManualClock::at(START),
            topology: Arc::new(placeholder()),
            nodes: BTreeMap::new(),
            passwords: passwords.into(),
            allow_preference,
            extra,
            region_lines: Vec::new(),
        }
    }

    /// (Re)starts `regions`, keeping the others' addresses.
    async fn boot(&mut self, regions: &[&str], mut addrs: BTreeMap<String, std::net::SocketAddr>) {
        let mut listeners = BTreeMap::new();
        for r in regions {
            let bind = addrs
                .get(*r)
                .copied()
                .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
            let l = tokio::net::TcpListener::bind(bind).await.unwrap();
            addrs.insert((*r).to_owned(), l.local_addr().unwrap());
            listeners.insert((*r).to_owned(), l);
        }
        let text = config(
            &addrs,
            &self.passwords,
            self.allow_preference,
            &self.extra,
            &self.region_lines,
        );
        let path = self.dir.path().join("regions.toml");
        std::fs::write(&path, &text).unwrap();
        self.topology = Arc::new(Topology::parse(&path, &text).unwrap());
        // The index host first, so the others find it.
        let mut order: Vec<String> = listeners.keys().cloned().collect();
        order.sort_by_key(|r| r != "eu");
        for r in order {
            let l = listeners.remove(&r).unwrap();
            let opts = NodeOptions {
                topology: self.topology.clone(),
                region: RegionCode::parse(&r).unwrap(),
                clock: Arc::new(self.clock.clone()),
                entropy: Arc::new(OsEntropy),
            };
            self.nodes.insert(r, Node::start(opts, l).await.unwrap());
        }
    }

    /// Stops a region's node and starts it again on the same port and data.
    pub async fn restart(&mut self, region: &str, passwords: Option<&str>) {
        if let Some(p) = passwords {
            self.passwords = p.into();
        }
        let addrs = self.stop(region).await;
        self.boot(&[region], addrs).await;
    }

    /// Stops a region's node (its port stays in the configuration): every
    /// region's address, for `start_again`.
    pub async fn stop(&mut self, region: &str) -> BTreeMap<String, std::net::SocketAddr> {
        let addrs: BTreeMap<String, std::net::SocketAddr> = self
            .nodes
            .iter()
            .map(|(r, n)| (r.clone(), n.addr))
            .collect();
        self.nodes.remove(region).unwrap().shutdown().await.unwrap();
        addrs
    }

    /// Starts a region `stop` stopped, on its port and data.
    pub async fn start_again(
        &mut self,
        region: &str,
        addrs: BTreeMap<String, std::net::SocketAddr>,
    ) {
        self.boot(&[region], addrs).await;
    }

    /// Another node of `region` on a new port, on the same store (as a
    /// canary beside the first), with its client.
    pub async fn second_node(&self, region: &str) -> (RunningNode, IdentityClient<Channel>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let opts = NodeOptions {
            topology: self.topology.clone(),
            region: RegionCode::parse(region).unwrap(),
            clock: Arc::new(self.clock.clone()),
            entropy: Arc::new(OsEntropy),
        };
        let node = Node::start(opts, l).await.unwrap();
        let client = IdentityClient::connect(format!("http://{}", node.addr))
            .await
            .unwrap();
        (node, client)
    }

    pub async fn client(&self, region: &str) -> IdentityClient<Channel> {
        IdentityClient::connect(format!("http://{}", self.nodes[region].addr))
            .await
            .unwrap()
    }

    /// An Admin client of `region`'s node as the local operator (every
    /// role; the token is minted at the federation's clock now).
    pub async fn admin(&self, region: &str) -> domicile_testkit::admin::Client {
        use domicile_identity::Clock as _;
        let key = domicile_testkit::admin::local(&self.topology);
        let token = domicile_testkit::admin::token(
            &key,
            &domicile_core::admin::Role::ALL,
            self.clock.now(),
        );
        domicile_testkit::admin::client(self.nodes[region].addr, &token).await
    }

    pub async fn users(&self, region: &str) -> u64 {
        self.nodes[region].store.count_users().await.unwrap()
    }

    /// Users per region, to prove a refused request wrote nothing.
    pub async fn census(&self) -> Vec<u64> {
        let mut v = Vec::new();
        for r in self.nodes.keys() {
            v.push(self.users(r).await);
        }
        v
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

fn placeholder() -> Topology {
    let text = config(
        &BTreeMap::from([("eu".to_owned(), "127.0.0.1:1".parse().unwrap())]),
        CHEAP_PASSWORDS,
        true,
        &(Vec::new(), None),
        &[],
    );
    Topology::parse(std::path::Path::new("placeholder.toml"), &text).unwrap()
}

pub fn login_req(email: &str, password: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        email: email.into(),
        password: password.into(),
    }
}

/// Asserts a status code and that its message mentions `text`.
pub fn expect_status<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, text: &str) -> Status {
    match r {
        Ok(v) => panic!("expected {code:?} ({text}), got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{s:?}");
            assert!(
                s.message().contains(text),
                "message {:?} lacks {text:?}",
                s.message()
            );
            s
        }
    }
}

/// Asserts FAILED_PRECONDITION naming `region` in the response metadata.
pub fn expect_wrong_region<T: std::fmt::Debug>(r: Result<T, Status>, region: &str) {
    let s = expect_status(r, Code::FailedPrecondition, region);
    assert_eq!(
        s.metadata()
            .get(HOME_REGION_METADATA)
            .and_then(|v| v.to_str().ok()),
        Some(region),
        "{s:?}"
    );
}

/// This region's JWKS as a key set, fetched over HTTP like any app would.
pub async fn jwks(fed: &Fed, region: &str) -> domicile_core::token::KeySet {
    let (status, body) = http_get(fed.nodes[region].addr, "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    key_set(&body)
}

/// Whether `user_id`'s audit trail in eu gets an event of `kind` within
/// five seconds (audit is written in the background).
pub async fn audited(fed: &Fed, user_id: &str, kind: domicile_store::AuditKind) -> bool {
    for _ in 0..100 {
        let (_, events) = fed.nodes["eu"]
            .identity()
            .user_audit(user_id, 0)
            .await
            .unwrap();
        if events.iter().any(|e| e.kind == kind) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Whether `needle` occurs in `hay` (a store file read as bytes).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
