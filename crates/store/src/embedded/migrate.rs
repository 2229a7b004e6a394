//! Upgrades older database layouts, one version at a time, inside the
//! open's write transaction: all or nothing.
//!
//! - Layout 1 → 2: one table per record kind, keyed by id, plain record
//!   values (audit keyed `user id ‖ 0 ‖ event id`) become the generic table
//!   model of `backend` (see `tables`).
//! - Layout 2 → 3: refresh tokens move from their own partition (keyed by
//!   hash, each listed under its user) into their session's partition, and
//!   the per-token list entries go. Tokens issued before layout 3 do not
//!   name their session, so they can no longer be presented; they are kept
//!   (the user can still export them) until they expire.
//!
//! Records are not re-encoded (their own format version is unchanged); only
//! keys move and each value gains its expiry envelope, which is read from
//! the record. The per-user lists that layout 2 adds (`identifiers_by_user`,
//! `sessions_by_user`) are built from the rows migrated. This is the one
//! place of the embedded backend that knows record types: the old layout
//! was made of them.

use super::tables::{decode_key, def, encode_key, envelope};
use crate::{
    AuditRecord, Expiry, Key, RefreshRecord, Scope, SessionRecord, Table, codec, identifiers, keys,
    sessions,
};
use domicile_core::{RegionCode, UnixSeconds};
use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::{Deserialize, de::DeserializeOwned};

type Old = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// An old table's rows, as (key, value).
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// What a migration needs to know about the database.
#[derive(Clone, Copy)]
pub(super) enum Kind<'a> {
    Region(&'a RegionCode),
    Index,
}

fn corrupt(table: &str, e: impl std::fmt::Display) -> String {
    format!("layout 1 table {table}: {e}")
}

/// Takes every row of an old table and deletes the table.
fn drain(tx: &WriteTransaction, name: &'static str) -> Result<Rows, String> {
    let old: Old = TableDefinition::new(name);
    let rows = {
        let t = tx.open_table(old).map_err(|e| corrupt(name, e))?;
        let mut rows = Vec::new();
        for row in t.iter().map_err(|e| corrupt(name, e))? {
            let (k, v) = row.map_err(|e| corrupt(name, e))?;
            rows.push((k.value().to_vec(), v.value().to_vec()));
        }
        rows
    };
    tx.delete_table(old).map_err(|e| corrupt(old.name(), e))?;
    Ok(rows)
}

fn record<T: DeserializeOwned>(table: &str, bytes: &[u8]) -> Result<T, String> {
    codec::decode(bytes).map_err(|e| corrupt(table, e))
}

fn put(
    tx: &WriteTransaction,
    t: &Table,
    key: &Key,
    value: &[u8],
    expiry: Expiry,
) -> Result<(), String> {
    tx.open_table(def(t))
        .map_err(|e| corrupt(t.name, e))?
        .insert(
            encode_key(t, key).as_slice(),
            envelope(value, expiry).as_slice(),
        )
        .map_err(|e| corrupt(t.name, e))?;
    Ok(())
}

fn at(expires_at: UnixSeconds) -> Expiry {
    // The TTL's `now` is irrelevant here: the embedded backend keeps only `at`.
    Expiry::At {
        at: expires_at,
        now: expires_at,
    }
}

/// Layout 2's refresh tokens: one row per token hash.
const V2_REFRESH: Table = Table::rows("refresh_tokens", Scope::Region);
/// Layout 2's per-user list tag of a refresh token.
const V2_REFRESH_TAG: u8 = b'r';

/// Layout 1 → 2.
pub(super) fn from_v1(tx: &WriteTransaction, kind: Kind<'_>) -> Result<(), String> {
    match kind {
        Kind::Index => {
            #[derive(Deserialize)]
            struct Entry {
                expires_at: Option<UnixSeconds>,
            }
            let t = &crate::index::HOME_INDEX;
            for (k, v) in drain(tx, "home_index")? {
                let e: Entry = record(t.name, &v)?;
                put(
                    tx,
                    t,
                    &Key::row(k),
                    &v,
                    e.expires_at.map_or(Expiry::Never, at),
                )?;
            }
        }
        Kind::Region(region) => {
            for (k, v) in drain(tx, "users")? {
                put(tx, &crate::users::USERS, &Key::row(k), &v, Expiry::Never)?;
            }
            for (k, v) in drain(tx, "users_by_identifier")? {
                let holder: String = record("users_by_identifier", &v)?;
                put(
                    tx,
                    &identifiers::IDENTIFIERS_BY_USER,
                    &Key::cell(holder.as_bytes(), k.clone()),
                    &[],
                    Expiry::Never,
                )?;
                put(
                    tx,
                    &identifiers::IDENTIFIERS,
                    &Key::row(k),
                    &v,
                    Expiry::Never,
                )?;
            }
            for (k, v) in drain(tx, "sessions")? {
                let s: SessionRecord = record("sessions", &v)?;
                let mut c = vec![b's'];
                c.extend_from_slice(s.session_id.as_bytes());
                put(
                    tx,
                    &sessions::SESSIONS_BY_USER,
                    &Key::cell(s.user_id.as_bytes(), c),
                    &[],
                    at(s.expires_at),
                )?;
                put(tx, &sessions::SESSIONS, &Key::row(k), &v, at(s.expires_at))?;
            }
            for (k, v) in drain(tx, "refresh_tokens")? {
                let r: RefreshRecord = record("refresh_tokens", &v)?;
                let mut c = vec![V2_REFRESH_TAG];
                c.extend_from_slice(&r.token_hash);
                put(
                    tx,
                    &sessions::SESSIONS_BY_USER,
                    &Key::cell(r.user_id.as_bytes(), c),
                    &[],
                    at(r.expires_at),
                )?;
                put(tx, &V2_REFRESH, &Key::row(k), &v, at(r.expires_at))?;
            }
            for (k, v) in drain(tx, "signing_keys")? {
                put(
                    tx,
                    &keys::SIGNING_KEYS,
                    &Key::cell(region.as_str().as_bytes(), k),
                    &v,
                    Expiry::Never,
                )?;
            }
            for (_, v) in drain(tx, "audit_log")? {
                let a: AuditRecord = record("audit_log", &v)?;
                let key = Key::cell(a.user_id.as_bytes(), a.event_id.as_bytes());
                put(tx, &crate::audit::AUDIT, &key, &v, at(a.expires_at))?;
            }
        }
    }
    Ok(())
}

/// Layout 2 → 3.
pub(super) fn from_v2(tx: &WriteTransaction, kind: Kind<'_>) -> Result<(), String> {
    if let Kind::Index = kind {
        return Ok(());
    }
    let table = V2_REFRESH.name;
    let rows = drain(tx, table)?;
    let by_session = &sessions::REFRESH;
    let mut moved = tx
        .open_table(def(by_session))
        .map_err(|e| corrupt(by_session.name, e))?;
    for (k, v) in rows {
        // The value is layout 2's envelope: expiry (8 bytes), then the record.
        let r: RefreshRecord = record(table, v.get(8..).unwrap_or_default())?;
        let key = Key::cell(r.session_id.as_bytes(), k);
        moved
            .insert(encode_key(by_session, &key).as_slice(), v.as_slice())
            .map_err(|e| corrupt(by_session.name, e))?;
    }
    drop(moved);
    let list = &sessions::SESSIONS_BY_USER;
    let mut t = tx
        .open_table(def(list))
        .map_err(|e| corrupt(list.name, e))?;
    let mut stale = Vec::new();
    for row in t.iter().map_err(|e| corrupt(list.name, e))? {
        let (k, _) = row.map_err(|e| corrupt(list.name, e))?;
        if decode_key(list, k.value()).clustering.first() == Some(&V2_REFRESH_TAG) {
            stale.push(k.value().to_vec());
        }
    }
    for k in stale {
        t.remove(k.as_slice()).map_err(|e| corrupt(list.name, e))?;
    }
    Ok(())
}
