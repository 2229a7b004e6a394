//! Every CQL statement the Scylla backend runs, as text. Keyspaces are named
//! in full so statements never depend on a session's current keyspace.

/// Statements on one region's keyspace.
#[derive(Clone, Debug)]
pub struct RegionCql {
    pub insert_identifier: String,
    pub get_identifier: String,
    pub replace_identifier: String,
    pub delete_identifier: String,
    pub insert_user: String,
    pub get_user: String,
    pub update_user: String,
    pub delete_user: String,
    pub scan_users: String,
    pub count_users: String,
    pub scan_sessions: String,
    pub insert_session: String,
    pub get_session: String,
    pub revoke_session: String,
    pub insert_refresh: String,
    pub get_refresh: String,
    pub mark_refresh_used: String,
    pub signing_keys: String,
    pub insert_signing_key: String,
    pub append_audit: String,
    pub audit_for_user: String,
}

impl RegionCql {
    pub fn new(ks: &str) -> Self {
        Self {
            insert_identifier: format!(
                "INSERT INTO {ks}.users_by_identifier (key, user_id) VALUES (?, ?) IF NOT EXISTS"
            ),
            get_identifier: format!("SELECT user_id FROM {ks}.users_by_identifier WHERE key = ?"),
            replace_identifier: format!(
                "UPDATE {ks}.users_by_identifier SET user_id = ? WHERE key = ? IF user_id = ?"
            ),
            delete_identifier: format!(
                "DELETE FROM {ks}.users_by_identifier WHERE key = ? IF user_id = ?"
            ),
            insert_user: format!(
                "INSERT INTO {ks}.users (user_id, version, record) VALUES (?, ?, ?) IF NOT EXISTS"
            ),
            get_user: format!("SELECT record FROM {ks}.users WHERE user_id = ?"),
            update_user: format!(
                "UPDATE {ks}.users SET version = ?, record = ? WHERE user_id = ? IF version = ?"
            ),
            delete_user: format!("DELETE FROM {ks}.users WHERE user_id = ? IF EXISTS"),
            scan_users: format!("SELECT record FROM {ks}.users"),
            count_users: format!("SELECT user_id FROM {ks}.users"),
            scan_sessions: format!("SELECT session_id FROM {ks}.sessions"),
            insert_session: format!(
                "INSERT INTO {ks}.sessions (session_id, user_id, expires_at, revoked_at, record) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
            ),
            get_session: format!("SELECT record FROM {ks}.sessions WHERE session_id = ?"),
            revoke_session: format!(
                "UPDATE {ks}.sessions USING TTL ? SET revoked_at = ?, record = ? WHERE session_id = ? IF revoked_at = null AND user_id = ?"
            ),
            insert_refresh: format!(
                "INSERT INTO {ks}.refresh_tokens (token_hash, session_id, expires_at, used_at, record) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
            ),
            get_refresh: format!("SELECT record FROM {ks}.refresh_tokens WHERE token_hash = ?"),
            mark_refresh_used: format!(
                "UPDATE {ks}.refresh_tokens USING TTL ? SET used_at = ?, record = ? WHERE token_hash = ? IF used_at = null AND session_id = ?"
            ),
            signing_keys: format!("SELECT record FROM {ks}.signing_keys"),
            insert_signing_key: format!(
                "INSERT INTO {ks}.signing_keys (kid, record) VALUES (?, ?) IF NOT EXISTS"
            ),
            append_audit: format!(
                "INSERT INTO {ks}.audit_log (user_id, event_id, record) VALUES (?, ?, ?) USING TTL ?"
            ),
            audit_for_user: format!("SELECT record FROM {ks}.audit_log WHERE user_id = ? LIMIT ?"),
        }
    }

    /// Every statement, for preparing and for tests.
    pub fn all(&self) -> Vec<&str> {
        vec![
            &self.insert_identifier,
            &self.get_identifier,
            &self.replace_identifier,
            &self.delete_identifier,
            &self.insert_user,
            &self.get_user,
            &self.update_user,
            &self.delete_user,
            &self.scan_users,
            &self.count_users,
            &self.scan_sessions,
            &self.insert_session,
            &self.get_session,
            &self.revoke_session,
            &self.insert_refresh,
            &self.get_refresh,
            &self.mark_refresh_used,
            &self.signing_keys,
            &self.insert_signing_key,
            &self.append_audit,
            &self.audit_for_user,
        ]
    }
}

/// Statements on the index keyspace.
#[derive(Clone, Debug)]
pub struct IndexCql {
    pub lookup: String,
    pub claim_new: String,
    pub claim_over: String,
    pub confirm: String,
    pub release: String,
    pub scan: String,
}

impl IndexCql {
    pub fn new(ks: &str) -> Self {
        Self {
            lookup: format!(
                "SELECT region, user_id, state, created_at, expires_at FROM {ks}.home_index WHERE key = ?"
            ),
            claim_new: format!(
                "INSERT INTO {ks}.home_index (key, region, user_id, state, created_at, expires_at) VALUES (?, ?, ?, 'pending', ?, ?) IF NOT EXISTS USING TTL ?"
            ),
            // Take over an expired or own pending claim: compare-and-set on the holder.
            claim_over: format!(
                "UPDATE {ks}.home_index USING TTL ? SET region = ?, user_id = ?, state = 'pending', created_at = ?, expires_at = ? WHERE key = ? IF user_id = ? AND state = 'pending' AND expires_at = ?"
            ),
            // TTL 0 rewrites every cell without expiry: the entry becomes permanent.
            confirm: format!(
                "UPDATE {ks}.home_index USING TTL 0 SET region = ?, user_id = ?, state = 'active', created_at = ?, expires_at = null WHERE key = ? IF user_id = ? AND state = 'pending' AND expires_at > ?"
            ),
            release: format!("DELETE FROM {ks}.home_index WHERE key = ? IF user_id = ?"),
            scan: format!(
                "SELECT key, region, user_id, state, created_at, expires_at FROM {ks}.home_index"
            ),
        }
    }

    pub fn all(&self) -> Vec<&str> {
        vec![
            &self.lookup,
            &self.claim_new,
            &self.claim_over,
            &self.confirm,
            &self.release,
            &self.scan,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(statement: &str, must: &[&str]) {
        for m in must {
            assert!(statement.contains(m), "{statement:?} lacks {m:?}");
        }
    }

    #[test]
    fn region_statements() {
        let c = RegionCql::new("domicile_eu");
        for s in c.all() {
            assert!(s.contains("domicile_eu."), "fully qualified: {s}");
            assert_eq!(s.matches('?').count(), s.matches('?').count());
        }
        check(&c.insert_identifier, &["IF NOT EXISTS"]);
        check(&c.replace_identifier, &["IF user_id = ?"]);
        check(&c.delete_identifier, &["DELETE", "IF user_id = ?"]);
        check(&c.insert_user, &["IF NOT EXISTS"]);
        check(&c.update_user, &["IF version = ?"]);
        check(&c.insert_session, &["IF NOT EXISTS USING TTL ?"]);
        check(&c.insert_refresh, &["IF NOT EXISTS USING TTL ?"]);
        check(&c.mark_refresh_used, &["USING TTL ?", "IF used_at = null"]);
        check(&c.revoke_session, &["USING TTL ?", "IF revoked_at = null"]);
        check(&c.insert_signing_key, &["IF NOT EXISTS"]);
        // Reads address one partition, except the admin scans.
        for s in [
            &c.get_identifier,
            &c.get_user,
            &c.get_session,
            &c.get_refresh,
        ] {
            check(s, &["WHERE"]);
        }
        assert!(!c.scan_users.contains("ALLOW FILTERING"));
    }

    #[test]
    fn index_statements() {
        let c = IndexCql::new("domicile_index");
        check(&c.claim_new, &["IF NOT EXISTS", "USING TTL ?", "'pending'"]);
        check(
            &c.claim_over,
            &["IF user_id = ? AND state = 'pending' AND expires_at = ?"],
        );
        check(
            &c.confirm,
            &[
                "USING TTL 0",
                "'active'",
                "expires_at = null",
                "IF user_id = ?",
            ],
        );
        check(&c.release, &["IF user_id = ?"]);
        // Bind markers per statement, as the backend binds them.
        let markers = |s: &str| s.matches('?').count();
        assert_eq!(markers(&c.claim_new), 6);
        assert_eq!(markers(&c.claim_over), 8);
        assert_eq!(markers(&c.confirm), 6);
        assert_eq!(markers(&c.lookup), 1);
        let r = RegionCql::new("k");
        assert_eq!(markers(&r.insert_session), 6);
        assert_eq!(markers(&r.revoke_session), 5);
        assert_eq!(markers(&r.mark_refresh_used), 5);
        assert_eq!(markers(&r.update_user), 4);
    }
}
