//! Connecting to ScyllaDB: the session (contact points, credentials), the
//! execution profiles (LOCAL_QUORUM; LOCAL_SERIAL or SERIAL; a DC-aware
//! load-balancing policy that prefers the region's datacenter and never
//! fails over to another), TTLs, and how driver errors are classified.
//!
//! It runs no statements of its own.

use crate::{Result, StoreError};
use domicile_core::UnixSeconds;
use domicile_core::topology::ScyllaConfig;
use scylla::{
    client::{
        execution_profile::ExecutionProfile, session::Session, session_builder::SessionBuilder,
    },
    errors::{DbError, ExecutionError, RequestAttemptError, WriteType},
    policies::{load_balancing::DefaultPolicy, retry::DefaultRetryPolicy},
    statement::{Consistency, SerialConsistency},
};
use std::sync::Arc;

/// How a failed request is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A conditional write timed out: it may or may not have been applied.
    /// The caller re-reads at serial consistency to learn the outcome.
    Uncertain,
    /// Anything else: the request did not happen (reads are retried by the
    /// driver's default policy when marked idempotent).
    Failed,
}

/// Classifies a driver error.
pub fn classify(e: &ExecutionError) -> Failure {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                write_type: WriteType::Cas,
                ..
            },
            _,
        ))
        | ExecutionError::RequestTimeout(_) => Failure::Uncertain,
        _ => Failure::Failed,
    }
}

/// Whether a driver error means the cluster could not be reached or could
/// not answer in time (the request may succeed later), as opposed to a
/// request it refused.
pub fn unreachable(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(a) => matches!(
            a,
            RequestAttemptError::UnableToAllocStreamId
                | RequestAttemptError::BrokenConnectionError(_)
                | RequestAttemptError::DbError(
                    DbError::Unavailable { .. }
                        | DbError::ReadTimeout { .. }
                        | DbError::WriteTimeout { .. }
                        | DbError::Overloaded
                        | DbError::IsBootstrapping,
                    _
                )
        ),
        _ => false,
    }
}

/// Seconds to live for a record expiring at `expires_at` (at least 1).
pub fn ttl(expires_at: UnixSeconds, now: UnixSeconds) -> i32 {
    i32::try_from((expires_at - now).max(1)).unwrap_or(i32::MAX)
}

/// The execution profile of a store's statements.
pub fn profile(dc: &str, serial: SerialConsistency, cfg: &ScyllaConfig) -> ExecutionProfile {
    let policy = DefaultPolicy::builder()
        .prefer_datacenter(dc.to_owned())
        .permit_dc_failover(false)
        .token_aware(true)
        .build();
    ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(serial))
        .load_balancing_policy(policy)
        .request_timeout(Some(cfg.request_timeout))
        .retry_policy(Arc::new(DefaultRetryPolicy::new()))
        .build()
}

/// Opens a session to a region's datacenter.
pub async fn connect(cfg: &ScyllaConfig) -> Result<Arc<Session>> {
    let store = format!("scylla:{}", cfg.keyspace);
    let fail = |reason: String| StoreError::Open {
        store: store.clone(),
        reason,
    };
    if !super::config::valid_cql_name(&cfg.keyspace) {
        return Err(fail(format!("{:?} is not a keyspace name", cfg.keyspace)));
    }
    let mut b = SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .connection_timeout(cfg.request_timeout.max(std::time::Duration::from_secs(2)))
        .default_execution_profile_handle(
            profile(&cfg.datacenter, SerialConsistency::LocalSerial, cfg).into_handle(),
        );
    if let Some(user) = &cfg.username {
        let env = cfg.password_env.as_deref().unwrap_or("");
        let password = std::env::var(env)
            .map_err(|_| fail(format!("password variable {env:?} is not set")))?;
        b = b.user(user, password);
    }
    Ok(Arc::new(b.build().await.map_err(|e| fail(e.to_string()))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_relative_and_never_zero() {
        assert_eq!(ttl(1_000, 900), 100);
        assert_eq!(
            ttl(900, 900),
            1,
            "already due: expire at once, never 'no TTL'"
        );
        assert_eq!(ttl(0, 900), 1);
        assert_eq!(ttl(i64::MAX, 0), i32::MAX);
    }

    #[test]
    fn failures_are_classified() {
        use scylla::statement::Consistency as C;
        let cas = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                consistency: C::Serial,
                received: 1,
                required: 2,
                write_type: WriteType::Cas,
            },
            "timeout".into(),
        ));
        assert_eq!(classify(&cas), Failure::Uncertain);
        let simple = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                consistency: C::LocalQuorum,
                received: 1,
                required: 2,
                write_type: WriteType::Simple,
            },
            "timeout".into(),
        ));
        assert_eq!(classify(&simple), Failure::Failed);
        assert_eq!(
            classify(&ExecutionError::RequestTimeout(
                std::time::Duration::from_secs(2)
            )),
            Failure::Uncertain
        );
        assert_eq!(classify(&ExecutionError::EmptyPlan), Failure::Failed);

        // Unreachable (retry later) versus refused.
        let db = |e: DbError| {
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, "x".into()))
        };
        for (e, want) in [
            (cas, true),
            (simple, true),
            (ExecutionError::EmptyPlan, true),
            (
                ExecutionError::RequestTimeout(std::time::Duration::from_secs(2)),
                true,
            ),
            (
                db(DbError::Unavailable {
                    consistency: C::LocalQuorum,
                    required: 1,
                    alive: 0,
                }),
                true,
            ),
            (db(DbError::Overloaded), true),
            (db(DbError::SyntaxError), false),
            (db(DbError::Invalid), false),
            (db(DbError::Unauthorized), false),
        ] {
            assert_eq!(unreachable(&e), want, "{e}");
        }
    }

    #[test]
    fn profiles_follow_the_config() {
        let cfg = ScyllaConfig {
            nodes: vec!["10.0.0.1:9042".into()],
            datacenter: "eu-dc".into(),
            keyspace: "domicile_eu".into(),
            replication: vec![("eu-dc".into(), 3)],
            request_timeout: std::time::Duration::from_millis(750),
            username: None,
            password_env: None,
        };
        let p = profile("eu-dc", SerialConsistency::LocalSerial, &cfg);
        assert_eq!(p.get_consistency(), Consistency::LocalQuorum);
        assert_eq!(
            p.get_serial_consistency(),
            Some(SerialConsistency::LocalSerial)
        );
        assert_eq!(
            p.get_request_timeout(),
            Some(std::time::Duration::from_millis(750))
        );
        let g = profile("eu-dc", SerialConsistency::Serial, &cfg);
        assert_eq!(g.get_serial_consistency(), Some(SerialConsistency::Serial));
    }
}
