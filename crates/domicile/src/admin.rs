//! The CLI's admin authentication: every Admin call carries a token the
//! operator's key signs now, asking for the role the command needs
//! (`domicile_core::admin`). The key is the file named by
//! `DOMICILE_ADMIN_KEY` (`<name> <base64url seed>`, as `domicile admin
//! new-key` writes it), or, in a local federation with
//! `admin.local_operator`, derived from the federation secret file.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use domicile_core::{
    admin::{LOCAL_OPERATOR_KEY, OperatorKey, Role},
    index::IndexSecret,
    topology::Topology,
};
use std::path::Path;

/// The environment variable naming an operator's key file.
pub const KEY_ENV: &str = "DOMICILE_ADMIN_KEY";
/// Seconds a CLI token lives.
const LIFETIME: i64 = 120;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// Reads an operator key file: `<name> <base64url seed>`.
pub fn read_key(path: &Path) -> Result<OperatorKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin key {}", path.display()))?;
    let mut parts = text.split_whitespace();
    let (Some(name), Some(seed), None) = (parts.next(), parts.next(), parts.next()) else {
        bail!(
            "{}: expected `<operator name> <base64url seed>`",
            path.display()
        );
    };
    let seed: [u8; 32] = b64()
        .decode(seed)
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{}: the seed is not 32 bytes of base64url", path.display()))?;
    Ok(OperatorKey::from_seed(name, seed))
}

/// The key this CLI signs with for `topology`.
pub fn key(topology: &Topology) -> Result<OperatorKey> {
    if let Some(path) = std::env::var_os(KEY_ENV) {
        return read_key(Path::new(&path));
    }
    let Some(name) = &topology.admin.local_operator else {
        bail!(
            "admin calls need an operator key: set {KEY_ENV} to its file (make one with `domicile admin new-key`, list its public key under [[admin.operators]])"
        );
    };
    let path = &topology.index.secret_file;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the federation secret {}", path.display()))?;
    let secret = IndexSecret::new(text.trim().as_bytes().to_vec())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(OperatorKey::from_seed(
        name,
        secret.derive(LOCAL_OPERATOR_KEY),
    ))
}

/// A fresh token of the CLI's key asking for `role`, for two minutes.
pub fn token(topology: &Topology, role: Role) -> Result<String> {
    let key = key(topology)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs() as i64;
    let jti = domicile_identity::env::random::<16>(&domicile_node::OsEntropy);
    Ok(key.sign(&[role], now, LIFETIME, jti)?)
}

/// `msg` with a fresh token of the CLI's key asking for `role`.
pub fn request<T>(topology: &Topology, role: Role, msg: T) -> Result<tonic::Request<T>> {
    let token = token(topology, role)?;
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .context("an admin token is ASCII")?,
    );
    Ok(r)
}

/// Writes a new operator key for `name` to `out` (readable by its owner
/// only) and returns the public key to list in `regions.toml`.
pub fn new_key(name: &str, out: &Path) -> Result<String> {
    if !domicile_core::admin::valid_operator_name(name) {
        bail!("an operator name is 1 to 64 of a-z 0-9 - _ .");
    }
    let seed = domicile_identity::env::random::<32>(&domicile_node::OsEntropy);
    let key = OperatorKey::from_seed(name, seed);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist)", out.display()))?;
    std::io::Write::write_all(
        &mut f,
        format!("{name} {}\n", b64().encode(seed)).as_bytes(),
    )
    .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(b64().encode(key.public_key()))
}
