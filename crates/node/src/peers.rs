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

#[async_trait]
impl Peers for PeerRegions {
    async fn import(
        &self,
        region: &RegionCode,
        bundle: &[u8],
        authority: &str,
    ) -> Result<String, IdentityError> {
        let channel = self
            .channels
            .get(region)
            .ok_or_else(|| IdentityError::Internal {
                op: "move",
                detail: format!("no endpoints for region {region}"),
            })?;
        let mut req = tonic::Request::new(pb::ImportMovedUserRequest {
            bundle: bundle.to_vec(),
        });
        let value = format!("Bearer {authority}")
            .parse()
            .map_err(|_| IdentityError::Internal {
                op: "move",
                detail: "the admin token is not a header value".into(),
            })?;
        req.metadata_mut().insert("authorization", value);
        let answer = pb::admin_client::AdminClient::new(channel.clone())
            .import_moved_user(req)
            .await;
        match answer {
            Ok(r) => Ok(r.into_inner().receipt_part),
            // The target's refusal is the operator's to read (no personal
            // data in it); faults are logged there.
            Err(s) => Err(IdentityError::Refused(format!(
                "region {region} did not import the user ({:?}: {}); nothing was switched, run the move again",
                s.code(),
                s.message()
            ))),
        }
    }
}
