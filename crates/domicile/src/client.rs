//! `domicile client`: talks to the edge as an app would, and shows where each
//! request went (`domicile-region`, `domicile-route`). Tokens of the last
//! sign-in are kept in a session file so `whoami`, `refresh` and `logout`
//! can follow.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use domicile_proto::v1::{self as pb, identity_client::IdentityClient};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tonic::{Request, metadata::MetadataMap, transport::Channel};

#[derive(Args)]
pub struct ClientArgs {
    /// The edge to talk to (default: `edge.listen` of the config).
    #[arg(long, global = true)]
    edge: Option<String>,
    /// The federation's regions.toml (for the edge address).
    #[arg(long, global = true, default_value = "regions.toml")]
    config: PathBuf,
    /// Present this client address (sent as X-Forwarded-For; honoured only
    /// when this machine is a trusted proxy, as in the local federation).
    #[arg(long, global = true)]
    from: Option<String>,
    /// Where the tokens of the last sign-in are kept.
    #[arg(long, global = true, default_value = ".domicile/client-session.json")]
    session: PathBuf,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Create an account and sign in.
    Register {
        #[arg(long)]
        email: String,
        /// The password (or set DOMICILE_PASSWORD).
        #[arg(long, env = "DOMICILE_PASSWORD", hide_env_values = true)]
        password: String,
        /// Region to live in (e.g. eu); email-domain rules still win.
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        given_name: Option<String>,
        #[arg(long)]
        family_name: Option<String>,
    },
    /// Sign in.
    Login {
        #[arg(long)]
        email: String,
        /// The password (or set DOMICILE_PASSWORD).
        #[arg(long, env = "DOMICILE_PASSWORD", hide_env_values = true)]
        password: String,
        /// The authenticator app's current code, or a recovery code, for
        /// an account with two-step sign-in.
        #[arg(long)]
        code: Option<String>,
    },
    /// Start setting up an authenticator app: prints its otpauth URI and key.
    MfaEnroll,
    /// Turn two-step sign-in on with the app's current code: prints the
    /// recovery codes (shown once).
    MfaConfirm {
        #[arg(long)]
        code: String,
    },
    /// Exchange the saved refresh token for new tokens.
    Refresh,
    /// Show the signed-in user's profile.
    Whoami,
    /// End the saved session.
    Logout,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    user_id: String,
    region: String,
    access_token: String,
    refresh_token: String,
}

fn request<T>(msg: T, from: Option<&str>, token: Option<&str>) -> Result<Request<T>> {
    let mut r = Request::new(msg);
    if let Some(ip) = from {
        r.metadata_mut().insert(
            "x-forwarded-for",
            ip.parse().context("--from must be an IP address")?,
        );
    }
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().context("bad token")?,
        );
    }
    Ok(r)
}

/// `region: eu (route: geoip)` from the edge's headers.
fn placement(md: &MetadataMap) -> String {
    let get = |k: &str| {
        md.get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "region: {} (route: {})",
        get(domicile_core::region::REGION_HEADER),
        get(domicile_core::region::ROUTE_HEADER)
    )
}

fn fail(status: tonic::Status) -> anyhow::Error {
    let region = placement(status.metadata());
    let retry = status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(|s| format!(", retry after {s} s"))
        .unwrap_or_default();
    anyhow::anyhow!(
        "{:?}: {} [{region}{retry}]",
        status.code(),
        status.message()
    )
}

fn save(path: &Path, resp: &pb::AuthResponse) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let saved = Saved {
        user_id: resp.user_id.clone(),
        region: resp.region.clone(),
        access_token: resp.access_token.clone(),
        refresh_token: resp.refresh_token.clone(),
    };
    std::fs::write(path, serde_json::to_vec_pretty(&saved)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn load(path: &Path) -> Result<Saved> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "no saved session at {} (register or login first)",
            path.display()
        )
    })?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn print_auth(md: &MetadataMap, resp: &pb::AuthResponse, session: &Path) {
    println!("{}", placement(md));
    println!("user: {}", resp.user_id);
    println!("session: {}", resp.session_id);
    println!(
        "access token expires in {} s; tokens saved to {}",
        resp.expires_in,
        session.display()
    );
}

pub async fn run(args: ClientArgs) -> Result<()> {
    let edge = match &args.edge {
        Some(e) => e.clone(),
        None => {
            let text = std::fs::read_to_string(&args.config)
                .with_context(|| format!("cannot read {}", args.config.display()))?;
            let t = domicile_core::topology::Topology::parse(&args.config, &text)?;
            format!("http://{}", t.edge.listen)
        }
    };
    let edge = if edge.starts_with("http") {
        edge
    } else {
        format!("http://{edge}")
    };
    let mut c: IdentityClient<Channel> = IdentityClient::connect(edge.clone())
        .await
        .with_context(|| format!("cannot reach the edge at {edge}"))?;
    let from = args.from.as_deref();
    match args.command {
        ClientCommand::Register {
            email,
            password,
            region,
            given_name,
            family_name,
        } => {
            let profile = pb::ProfileFields {
                given_name: given_name.unwrap_or_default(),
                family_name: family_name.unwrap_or_default(),
                ..Default::default()
            };
            let msg = pb::RegisterRequest {
                email,
                password,
                profile: Some(profile),
                region_preference: region.unwrap_or_default(),
            };
            let resp = c.register(request(msg, from, None)?).await.map_err(fail)?;
            save(&args.session, resp.get_ref())?;
            print_auth(resp.metadata(), resp.get_ref(), &args.session);
        }
        ClientCommand::Login {
            email,
            password,
            code,
        } => {
            let resp = match c
                .login(request(pb::LoginRequest { email, password }, from, None)?)
                .await
            {
                Ok(r) => r,
                Err(s) => {
                    let Some(token) = s
                        .metadata()
                        .get("domicile-mfa-token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                    else {
                        return Err(fail(s));
                    };
                    let Some(code) = code else {
                        anyhow::bail!(
                            "this account uses two-step sign-in: run again with --code <the authenticator app's code, or a recovery code>"
                        );
                    };
                    let digits = code.chars().filter(|c| !c.is_whitespace()).count() == 6
                        && code.trim().bytes().all(|b| b.is_ascii_digit() || b == b' ');
                    let msg = pb::CompleteSignInRequest {
                        mfa_token: token,
                        totp_code: if digits { code.clone() } else { String::new() },
                        recovery_code: if digits { String::new() } else { code },
                        passkey_credential: String::new(),
                    };
                    c.complete_sign_in(request(msg, from, None)?)
                        .await
                        .map_err(fail)?
                }
            };
            save(&args.session, resp.get_ref())?;
            print_auth(resp.metadata(), resp.get_ref(), &args.session);
        }
        ClientCommand::MfaEnroll => {
            let saved = load(&args.session)?;
            let resp = c
                .enroll_totp(request(
                    pb::EnrollTotpRequest::default(),
                    from,
                    Some(&saved.access_token),
                )?)
                .await
                .map_err(fail)?;
            let e = resp.get_ref();
            println!("{}", placement(resp.metadata()));
            println!("otpauth URI (for a QR code): {}", e.otpauth_uri);
            println!("key (to type into the app): {}", e.secret);
            println!(
                "confirm within {} s: domicile client mfa-confirm --code <the app's code>",
                e.expires_in
            );
        }
        ClientCommand::MfaConfirm { code } => {
            let saved = load(&args.session)?;
            let resp = c
                .confirm_totp(request(
                    pb::ConfirmTotpRequest { code },
                    from,
                    Some(&saved.access_token),
                )?)
                .await
                .map_err(fail)?;
            println!("{}", placement(resp.metadata()));
            println!("two-step sign-in is on");
            let codes = &resp.get_ref().recovery_codes;
            if !codes.is_empty() {
                println!("recovery codes (each works once; shown only now):");
                for c in codes {
                    println!("  {c}");
                }
            }
        }
        ClientCommand::Refresh => {
            let saved = load(&args.session)?;
            let msg = pb::RefreshRequest {
                refresh_token: saved.refresh_token,
            };
            let resp = c.refresh(request(msg, from, None)?).await.map_err(fail)?;
            save(&args.session, resp.get_ref())?;
            print_auth(resp.metadata(), resp.get_ref(), &args.session);
        }
        ClientCommand::Whoami => {
            let saved = load(&args.session)?;
            let resp = c
                .get_profile(request(
                    pb::GetProfileRequest {},
                    from,
                    Some(&saved.access_token),
                )?)
                .await
                .map_err(fail)?;
            let p = resp.get_ref();
            println!("{}", placement(resp.metadata()));
            println!("user: {}", p.user_id);
            println!("email: {}", p.email);
            let name = format!("{} {}", p.given_name, p.family_name);
            if !name.trim().is_empty() {
                println!("name: {}", name.trim());
            }
            println!("home region: {}", p.region);
        }
        ClientCommand::Logout => {
            let saved = load(&args.session)?;
            let msg = pb::LogoutRequest {
                refresh_token: saved.refresh_token,
            };
            let resp = c.logout(request(msg, from, None)?).await.map_err(fail)?;
            std::fs::remove_file(&args.session).ok();
            println!("{}", placement(resp.metadata()));
            println!("ended session {}", resp.get_ref().session_id);
        }
    }
    Ok(())
}
