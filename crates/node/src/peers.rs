//! The other regions' nodes as this node's compliance operations reach
//! them (`ports::Peers`): a move hands the user's bundle to the target
//! region's internal `Admin.ImportMovedUser`, over a lazily connecting
//! channel balanced over that region's nodes (from `regions.toml`), with
//! the operator's own admin token, so the target checks the operator and
//! role itself and audits the same actor.
//!
//! It holds no decision: which region, and what the bundle says, is the
//! use case's.

use async_trait::async_trait;
use domicile_core::{RegionCode, topology::Topology};
use domicile_identity::{IdentityError, ports::Peers};
use domicile_proto::v1 as pb;
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use tonic::transport::Channel;

/// Longest a target may take to import one user.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// A channel per region of the federation (none to this node's own).
pub struct PeerRegions {
    channels: BTreeMap<RegionCode, Channel>,
}

impl PeerRegions {
    pub fn new(topology: &Arc<Topology>, own: &RegionCode) -> Result<Self, crate::NodeError> {
        let mut channels = BTreeMap::new();
        for (code, region) in &topology.regions {
            if code == own {
                continue;
            }
            let addresses: Vec<_> = region.nodes.iter().map(|n| n.address).collect();
            let channel = domicile_proto::balanced_channel(
                &addresses,
                Duration::from_secs(2),
                IMPORT_TIMEOUT,
            )
            .map_err(|e| crate::NodeError::start("peer region endpoints", e))?;
            channels.insert(code.clone(), channel);
        }
        Ok(Self { channels })
    }
}

impl PeerRegions {
    /// An Admin client of `region`'s nodes, and `msg` carrying the token.
    fn call<T>(
        &self,
        region: &RegionCode,
        msg: T,
        authority: &str,
    ) -> Result<(pb::admin_client::AdminClient<Channel>, tonic::Request<T>), IdentityError> {
        let channel = self
            .channels
            .get(region)
            .ok_or_else(|| IdentityError::Internal {
                op: "move",
                detail: format!("no endpoints for region {region}"),
            })?;
        let mut req = tonic::Request::new(msg);
        let value = format!("Bearer {authority}")
            .parse()
            .map_err(|_| IdentityError::Internal {
                op: "move",
                detail: "the admin token is not a header value".into(),
            })?;
        req.metadata_mut().insert("authorization", value);
        Ok((pb::admin_client::AdminClient::new(channel.clone()), req))
    }
}

/// The target's refusal, for the officer to read (no personal data in it;
/// faults are logged there).
fn refused(region: &RegionCode, what: &str, s: tonic::Status) -> IdentityError {
    IdentityError::Refused(format!(
        "region {region} did not {what} ({:?}: {}); run the command again",
        s.code(),
        s.message()
    ))
}

#[async_trait]
impl Peers for PeerRegions {
    async fn import(
        &self,
        region: &RegionCode,
        bundle: &[u8],
        authority: &str,
    ) -> Result<String, IdentityError> {
        let msg = pb::ImportMovedUserRequest {
            bundle: bundle.to_vec(),
        };
        let (mut client, req) = self.call(region, msg, authority)?;
        client
            .import_moved_user(req)
            .await
            .map(|r| r.into_inner().receipt_part)
            .map_err(|s| refused(region, "import the user (nothing was switched)", s))
    }

    async fn discard(
        &self,
        region: &RegionCode,
        new_user_id: &str,
        operation_id: &str,
        authority: &str,
    ) -> Result<(), IdentityError> {
        let msg = pb::DiscardMovedUserRequest {
            new_user_id: new_user_id.to_owned(),
            operation_id: operation_id.to_owned(),
        };
        let (mut client, req) = self.call(region, msg, authority)?;
        client
            .discard_moved_user(req)
            .await
            .map(|_| ())
            .map_err(|s| refused(region, "discard the copy", s))
    }
}
