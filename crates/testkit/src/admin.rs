//! Admin tokens for tests: the local operator every test federation has
//! (`[admin] local_operator = "local"`, its key derived from the
//! federation secret the nodes create), and two listed operators with one
//! role each (`sre`: operator, `help`: support) whose seeds are fixed
//! here, so a test can call with the wrong role.

use domicile_core::{
    admin::{LOCAL_OPERATOR_KEY, OperatorKey, Role},
    index::IndexSecret,
    topology::Topology,
};

/// The local operator's name in test federations.
pub const LOCAL: &str = "local";

/// The listed test operators: name, seed, roles.
pub const LISTED: &[(&str, u8, &[Role])] = &[
    ("sre", 0x51, &[Role::Operator]),
    ("help", 0x52, &[Role::Support]),
];

/// `[admin]` for a test federation's `regions.toml`.
pub fn config_section() -> String {
    use base64::Engine as _;
    let mut t = format!("\n[admin]\nlocal_operator = \"{LOCAL}\"\n");
    for (name, seed, roles) in LISTED {
        let key = OperatorKey::from_seed(name, [*seed; 32]).public_key();
        let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
        t.push_str(&format!(
            "\n[[admin.operators]]\nname = \"{name}\"\npublic_key = \"{}\"\nroles = [{}]\n",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
            roles.join(", ")
        ));
    }
    t
}

/// The key of listed operator `name`.
pub fn listed(name: &str) -> OperatorKey {
    let (_, seed, _) = LISTED
        .iter()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("no test operator {name}"));
    OperatorKey::from_seed(name, [*seed; 32])
}

/// The local operator's key, derived from the federation secret the
/// nodes of `topology` created.
pub fn local(topology: &Topology) -> OperatorKey {
    let text = std::fs::read_to_string(&topology.index.secret_file).unwrap_or_else(|e| {
        panic!(
            "the federation secret {}: {e}",
            topology.index.secret_file.display()
        )
    });
    let secret = IndexSecret::new(text.trim().as_bytes().to_vec()).expect("a federation secret");
    OperatorKey::from_seed(LOCAL, secret.derive(LOCAL_OPERATOR_KEY))
}

/// A token of `key` asking for `roles`, valid two minutes from `now`.
pub fn token(key: &OperatorKey, roles: &[Role], now: i64) -> String {
    key.sign(roles, now, 120, [9; 16]).expect("an admin token")
}

/// `msg` with the local operator's token for every role, at `now`.
pub fn request<T>(topology: &Topology, msg: T, now: i64) -> tonic::Request<T> {
    crate::bearer(msg, &token(&local(topology), &Role::ALL, now))
}

/// Adds one admin token to every call of a client.
#[derive(Clone)]
pub struct WithToken(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl WithToken {
    pub fn new(token: &str) -> Self {
        Self(
            format!("Bearer {token}")
                .parse()
                .expect("an admin token is ASCII"),
        )
    }
}

impl tonic::service::Interceptor for WithToken {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

/// An Admin client whose calls carry `token`.
pub type Client = domicile_proto::v1::admin_client::AdminClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, WithToken>,
>;

/// An Admin client of the node at `addr` whose calls carry `token`.
pub async fn client(addr: std::net::SocketAddr, token: &str) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a node address")
        .connect()
        .await
        .expect("the node answers");
    domicile_proto::v1::admin_client::AdminClient::with_interceptor(channel, WithToken::new(token))
}
