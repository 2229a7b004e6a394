//! The test federation's `regions.toml`, built in one place for every suite
//! (node, edge, end to end): regions eu (index host), us and ap with their
//! countries and email-domain rules, cheap password hashing unless asked
//! otherwise, and whatever addresses and settings a suite needs.
//!
//! Its rules match the residency rule's shared case table
//! (`domicile_core::residency::cases`): `example.de` and `*.eu.example.org`
//! → eu, `example.com` → us, `example.jp` → ap, nothing for `example.org`
//! or `example.net`.

use std::{collections::BTreeMap, fmt::Write as _, net::SocketAddr};

/// Argon2 parameters cheap enough for many hashes in debug tests. The
/// shipped defaults are OWASP's; tests that need real cost ask for them.
pub const CHEAP_PASSWORDS: &str = "memory_kib = 256\niterations = 1\nparallelism = 1\n";
/// OWASP's Argon2id parameters, for tests that measure real cost.
pub const OWASP_PASSWORDS: &str = "memory_kib = 19456\niterations = 2\nparallelism = 1\n";

/// The secret of the test federation's confidential client `web`.
pub const WEB_CLIENT_SECRET: &str = "test-web-client-secret-0123456789abcdef";

/// The OpenID Connect clients of every test federation: `demo`, public,
/// with a loopback redirect (any port, RFC 8252 §7.3) and every scope;
/// `web`, confidential ([`WEB_CLIENT_SECRET`]), without `offline_access`,
/// German by default; `vault`, public, requiring two-step sign-in.
fn test_clients() -> String {
    format!(
        r##"
[clients.demo]
name = "Demo"
client_type = "public"
redirect_uris = ["http://127.0.0.1/callback"]
post_logout_redirect_uris = ["http://127.0.0.1/"]
scopes = ["openid", "email", "profile", "offline_access"]

[clients.demo.branding]
display_name = "Demo app"
primary_color = "#0b6e4f"

[clients.web]
name = "Web"
client_type = "confidential"
secret_sha256 = "{}"
redirect_uris = ["https://web.example.com/callback"]
post_logout_redirect_uris = ["https://web.example.com/bye"]
scopes = ["openid", "email"]

[clients.web.branding]
default_locale = "de"
terms_url = "https://web.example.com/terms"

[clients.vault]
name = "Vault"
client_type = "public"
redirect_uris = ["http://127.0.0.1/callback"]
scopes = ["openid", "email"]
mfa = "required"
"##,
        domicile_core::clients::secret_sha256_hex(WEB_CLIENT_SECRET)
    )
}

/// (region, countries, email-domain rules)
const REGIONS: &[(&str, &[&str], &[&str])] = &[
    (
        "eu",
        &["DE", "FR", "GB"],
        &["example.de", "*.eu.example.org"],
    ),
    ("us", &["US", "CA", "BR"], &["example.com"]),
    ("ap", &["JP", "SG", "AU"], &["example.jp"]),
];

/// Stores on the CQL backend: the cluster's contact point per datacenter
/// (one datacenter per region, named after it) and a suffix that makes
/// every keyspace of this federation new (`domicile_<region>_<suffix>`,
/// `domicile_index_<suffix>`).
#[derive(Clone, Debug)]
pub struct CqlStores {
    pub nodes: BTreeMap<String, String>,
    pub suffix: String,
    /// How to take the cluster's nodes down and bring them back, when
    /// `cargo xtask` said (`DOMICILE_CQL_DIR`, `DOMICILE_CQL_XTASK`).
    pub control: Option<ClusterControl>,
}

/// The cluster of `cargo xtask cassandra up` as a test that takes a node
/// down sees it: its directory and the xtask program.
#[derive(Clone, Debug)]
pub struct ClusterControl {
    pub dir: std::path::PathBuf,
    pub xtask: std::path::PathBuf,
}

impl ClusterControl {
    /// Kills datacenter `dc`'s node with SIGKILL (its pid from
    /// `<dir>/<dc>/pid`); the pid.
    pub fn kill(&self, dc: &str) -> Result<u32, String> {
        let file = self.dir.join(dc).join("pid");
        let pid: u32 = std::fs::read_to_string(&file)
            .map_err(|e| format!("{}: {e}", file.display()))?
            .trim()
            .parse()
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let ok = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .map_err(|e| e.to_string())?
            .success();
        ok.then_some(pid)
            .ok_or_else(|| format!("kill -KILL {pid} failed"))
    }

    /// `<xtask> cassandra up`: starts every node that is down and waits
    /// until each answers CQL and sees the others; its output.
    pub fn bring_up(&self) -> Result<String, String> {
        self.xtask(&["cassandra", "up"])
    }

    /// `<xtask> cassandra flush`: every node's memtables to SSTables.
    pub fn flush(&self) -> Result<String, String> {
        self.xtask(&["cassandra", "flush"])
    }

    /// The keyspaces of which datacenter `dc`'s node holds SSTables (a
    /// table directory with a `*-Data.db` file) among those ending in
    /// `_<suffix>`.
    pub fn keyspaces_on_disk(
        &self,
        dc: &str,
        suffix: &str,
    ) -> Result<std::collections::BTreeSet<String>, String> {
        let data = self.dir.join(dc).join("data");
        let read =
            |p: &std::path::Path| std::fs::read_dir(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut found = std::collections::BTreeSet::new();
        for ks in read(&data)?.flatten() {
            let name = ks.file_name().to_string_lossy().into_owned();
            if !name.ends_with(&format!("_{suffix}")) {
                continue;
            }
            let has_sstable = read(&ks.path())?.flatten().any(|table| {
                std::fs::read_dir(table.path()).is_ok_and(|files| {
                    files
                        .flatten()
                        .any(|f| f.file_name().to_string_lossy().ends_with("-Data.db"))
                })
            });
            if has_sstable {
                found.insert(name);
            }
        }
        Ok(found)
    }

    fn xtask(&self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new(&self.xtask)
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", self.xtask.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }
}

impl CqlStores {
    /// The cluster of `cargo xtask cassandra up`, from `DOMICILE_CQL_NODES`
    /// and `DOMICILE_CQL_DCS`; `None` when they are not set.
    pub fn from_env(suffix: &str) -> Option<Self> {
        let nodes = std::env::var("DOMICILE_CQL_NODES").ok()?;
        let dcs = std::env::var("DOMICILE_CQL_DCS").ok()?;
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(Into::into)
        };
        let control = var("DOMICILE_CQL_DIR")
            .zip(var("DOMICILE_CQL_XTASK"))
            .map(|(dir, xtask)| ClusterControl { dir, xtask });
        Some(Self {
            nodes: dcs
                .split(',')
                .zip(nodes.split(','))
                .map(|(d, n)| (d.to_owned(), n.to_owned()))
                .collect(),
            suffix: suffix.to_owned(),
            control,
        })
    }

    /// The cluster for the test `name`, with keyspaces tagged `tag` and
    /// this moment (each run starts empty); when the variables are not set,
    /// writes `SKIPPED: <name>: …` to stderr past the harness's capture (a
    /// skip shows in the runner's output, never as a silent pass) and
    /// returns `None`. `cargo xtask test` starts the cluster and sets them.
    pub fn for_test(name: &str, tag: &str) -> Option<Self> {
        use std::io::Write as _;
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() % 1_000_000_000);
        let found = Self::from_env(&format!("{tag}{ms}"));
        if found.is_none() {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {name}: DOMICILE_CQL_NODES / DOMICILE_CQL_DCS are not set (no Cassandra cluster: `cargo xtask test` starts one when Java 17 and Maven are present)"
            );
        }
        found
    }

    /// The keyspace of `region` (or of `index`).
    pub fn keyspace(&self, region: &str) -> String {
        format!("domicile_{region}_{}", self.suffix)
    }
}

/// A test federation's configuration, rendered by [`FederationConfig::render`].
#[derive(Clone, Debug)]
pub struct FederationConfig {
    pub name: String,
    pub issuer: String,
    pub allow_region_preference: bool,
    /// `federation.geoip_database`, if any.
    pub geoip_database: Option<String>,
    /// `federation.trusted_proxies`, as TOML (e.g. `["127.0.0.0/8"]`).
    pub trusted_proxies: Option<String>,
    /// `index.claim_ttl_seconds`, if not the default.
    pub claim_ttl_seconds: Option<i64>,
    /// The `[passwords]` table's body.
    pub passwords: String,
    /// `edge.listen` and `edge.admin_listen`, when the suite runs an edge.
    pub edge: Option<(SocketAddr, SocketAddr)>,
    /// More `[edge]` settings, as `key = value` TOML lines.
    pub edge_settings: Vec<String>,
    /// Each region's node address (regions without one are left out).
    pub nodes: BTreeMap<String, SocketAddr>,
    /// Every store on the CQL backend instead of the embedded one.
    pub cql: Option<CqlStores>,
    /// More lines for every `[regions.<r>]` table, with `{region}`
    /// replaced by the region's code (e.g. its `email` sender).
    pub region_settings: Vec<String>,
    /// More lines for one region's table only (region code, line).
    pub region_lines: Vec<(String, String)>,
    /// The `[accounts]` table's body, if any.
    pub accounts: Option<String>,
}

impl FederationConfig {
    /// A federation named `name` with cheap hashing and no edge.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            issuer: "https://id.test".into(),
            allow_region_preference: true,
            geoip_database: None,
            trusted_proxies: None,
            claim_ttl_seconds: None,
            passwords: CHEAP_PASSWORDS.into(),
            edge: None,
            edge_settings: Vec::new(),
            nodes: BTreeMap::new(),
            cql: None,
            region_settings: Vec::new(),
            region_lines: Vec::new(),
            accounts: None,
        }
    }

    /// Sets a region's node address.
    pub fn node(mut self, region: &str, addr: SocketAddr) -> Self {
        self.nodes.insert(region.into(), addr);
        self
    }

    /// The `regions.toml` text. Each region's nodes are written as
    /// `nodes = [{ address = "ADDR" }]` on one line, so a suite can swap
    /// that line for a weighted list.
    pub fn render(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "[federation]\nname = \"{}\"\nissuer = \"{}\"\ndefault_region = \"eu\"\nallow_region_preference = {}",
            self.name, self.issuer, self.allow_region_preference
        );
        if let Some(g) = &self.geoip_database {
            let _ = writeln!(t, "geoip_database = \"{g}\"");
        }
        if let Some(p) = &self.trusted_proxies {
            let _ = writeln!(t, "trusted_proxies = {p}");
        }
        let index_store = match &self.cql {
            Some(c) => format!(
                "{{ backend = \"scylla\", keyspace = \"{}\", replication_factor = 1 }}",
                c.keyspace("index")
            ),
            None => "{ backend = \"embedded\", path = \"data/index\" }".to_owned(),
        };
        let _ = writeln!(
            t,
            "\n[index]\nhost_region = \"eu\"\nsecret_file = \"index.key\"\ncreate_secret = true\nstore = {index_store}"
        );
        if let Some(ttl) = self.claim_ttl_seconds {
            let _ = writeln!(t, "claim_ttl_seconds = {ttl}");
        }
        let _ = writeln!(t, "\n[passwords]\n{}", self.passwords.trim_end());
        t.push_str(&crate::admin::config_section());
        if let Some((listen, admin)) = self.edge {
            let _ = writeln!(
                t,
                "\n[edge]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\""
            );
            for line in &self.edge_settings {
                let _ = writeln!(t, "{line}");
            }
        }
        for (region, countries, domains) in REGIONS {
            let Some(addr) = self.nodes.get(*region) else {
                continue;
            };
            let list = |v: &[&str]| {
                v.iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let store = match &self.cql {
                Some(c) => format!(
                    "{{ backend = \"scylla\", nodes = [\"{}\"], datacenter = \"{region}\", keyspace = \"{}\", replication_factor = 1 }}",
                    c.nodes.get(*region).map_or("", String::as_str),
                    c.keyspace(region)
                ),
                None => format!("{{ backend = \"embedded\", path = \"data/{region}\" }}"),
            };
            let _ = writeln!(
                t,
                "\n[regions.{region}]\nresidency = \"{}\"\ncountries = [{}]\nemail_domains = [{}]\nnodes = [{{ address = \"{addr}\" }}]\nstore = {store}",
                region.to_uppercase(),
                list(countries),
                list(domains),
            );
            for line in &self.region_settings {
                let _ = writeln!(t, "{}", line.replace("{region}", region));
            }
            for (_, line) in self.region_lines.iter().filter(|(r, _)| r == region) {
                let _ = writeln!(t, "{line}");
            }
        }
        if let Some(a) = &self.accounts {
            let _ = writeln!(t, "\n[accounts]\n{}", a.trim_end());
        }
        t.push_str(&test_clients());
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_federation_the_topology_accepts() {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let mut c = FederationConfig::new("t")
            .node("eu", addr(1))
            .node("us", addr(2))
            .node("ap", addr(3));
        c.edge = Some((addr(4), addr(5)));
        c.edge_settings = vec!["retry_after_seconds = 7".into()];
        c.claim_ttl_seconds = Some(60);
        c.trusted_proxies = Some("[\"127.0.0.0/8\"]".into());
        c.region_settings =
            vec!["email = { from = \"id@{region}.test\", outbox = \"outbox/{region}\" }".into()];
        c.accounts = Some("require_verified_email = true".into());
        let text = c.render();
        let t = domicile_core::topology::Topology::parse(std::path::Path::new("t.toml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(t.regions.len(), 3);
        assert_eq!(t.index.claim_ttl_seconds, 60);
        assert!(t.accounts.require_verified_email);
        for r in t.regions.values() {
            assert!(r.messaging.email.is_some(), "{text}");
        }
        assert_eq!(
            t.region_for_domain("a.eu.example.org").map(|r| r.as_str()),
            Some("eu")
        );
        assert!(text.contains("nodes = [{ address = \"127.0.0.1:2\" }]"));
    }

    #[test]
    fn renders_stores_on_the_cql_backend() {
        use domicile_core::topology::StoreConfig;
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let mut c = FederationConfig::new("t")
            .node("eu", addr(1))
            .node("us", addr(2))
            .node("ap", addr(3));
        c.cql = Some(CqlStores {
            nodes: [
                ("eu", "127.0.0.1:9042"),
                ("us", "127.0.0.2:9042"),
                ("ap", "127.0.0.3:9042"),
            ]
            .iter()
            .map(|(d, n)| ((*d).to_owned(), (*n).to_owned()))
            .collect(),
            suffix: "x1".into(),
            control: None,
        });
        let text = c.render();
        let t = domicile_core::topology::Topology::parse(std::path::Path::new("t.toml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let eu = &t.regions[&domicile_core::RegionCode::parse("us").unwrap()];
        let StoreConfig::Scylla(s) = &eu.store else {
            panic!("us is on the CQL backend: {text}")
        };
        assert_eq!(
            (
                s.nodes.as_slice(),
                s.datacenter.as_str(),
                s.keyspace.as_str()
            ),
            (&["127.0.0.2:9042".to_owned()][..], "us", "domicile_us_x1")
        );
        assert_eq!(s.replication, vec![("us".to_owned(), 1)]);
        let StoreConfig::Scylla(ix) = &t.index.store else {
            panic!("the index is on the CQL backend: {text}")
        };
        assert_eq!(ix.keyspace, "domicile_index_x1");
        assert_eq!(ix.replication.len(), 3);
    }
}
