//! The sign-in history aggregate: one row per user (`sign_in_history`)
//! with the countries and devices the user signed in from, each list
//! bounded (the oldest entry goes first), and the coarse place and time of
//! the last located sign-in. Written once per finished
//! sign-in, in one conditional write; read by the use cases to notice a
//! sign-in unlike the user's others. Keyed by the user, so erasure needs
//! no scan.

use crate::{
    Key, RegionStore, Result, Scope, SignInHistory, Table,
    backend::{Change, Expiry},
};
use domicile_core::{UnixSeconds, ids::ArtifactKind, risk::Seen};

pub const HISTORY: Table = Table::rows("sign_in_history", Scope::Region);

/// Entries kept per list.
pub const HISTORY_LIMIT: usize = 32;

fn key(user_id: &str) -> Key {
    Key::row(user_id.as_bytes())
}

/// Moves `item` to the end of `list` (adding it if new), dropping the
/// oldest entries beyond the limit.
fn remember<T: PartialEq>(list: &mut Vec<T>, item: T) {
    list.retain(|x| *x != item);
    list.push(item);
    if list.len() > HISTORY_LIMIT {
        let extra = list.len() - HISTORY_LIMIT;
        list.drain(..extra);
    }
}

impl RegionStore {
    pub async fn get_history(&self, user_id: &str) -> Result<Option<SignInHistory>> {
        self.instrument
            .run("get_history", self.read(&HISTORY, &key(user_id)))
            .await
    }

    /// Records a finished sign-in `seen` from wherever it came (any part
    /// may be unknown).
    pub async fn record_sign_in(&self, user_id: &str, seen: &Seen, now: UnixSeconds) -> Result<()> {
        self.instrument
            .run("record_sign_in", async {
                self.check_id(&HISTORY, ArtifactKind::User, user_id)?;
                self.modify(&HISTORY, &key(user_id), |current: Option<SignInHistory>| {
                    let mut h = current.unwrap_or_else(|| SignInHistory {
                        user_id: user_id.to_owned(),
                        countries: Vec::new(),
                        devices: Vec::new(),
                        last_location: None,
                        last_located_at: None,
                        sign_ins: 0,
                        updated_at: now,
                    });
                    if let Some(c) = &seen.country {
                        remember(&mut h.countries, c.clone());
                    }
                    if let Some(d) = seen.device {
                        remember(&mut h.devices, d);
                    }
                    if let Some(place) = seen.location {
                        h.last_location = Some(place.coarse());
                        h.last_located_at = Some(now);
                    }
                    h.sign_ins += 1;
                    h.updated_at = now;
                    let value = self.encode(&HISTORY, &h)?;
                    Ok((Change::Put(value, Expiry::Never), ()))
                })
                .await
            })
            .await
    }

    /// Writes a moved user's history as it arrives (idempotent).
    pub async fn import_history(&self, h: &SignInHistory) -> Result<()> {
        self.instrument
            .run("import_history", async {
                self.check_id(&HISTORY, ArtifactKind::User, &h.user_id)?;
                let value = self.encode(&HISTORY, h)?;
                self.modify(&HISTORY, &key(&h.user_id), |_: Option<SignInHistory>| {
                    Ok((Change::Put(value.clone(), Expiry::Never), ()))
                })
                .await
            })
            .await
    }

    /// Deletes the user's history (erasure).
    pub(crate) async fn erase_history(&self, user_id: &str) -> Result<()> {
        self.modify(&HISTORY, &key(user_id), |current: Option<SignInHistory>| {
            Ok(match current {
                Some(_) => (Change::Delete, ()),
                None => (Change::Keep, ()),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_keep_the_newest_entries() {
        let mut l: Vec<u32> = Vec::new();
        for i in 0..40 {
            super::remember(&mut l, i);
        }
        assert_eq!(l.len(), super::HISTORY_LIMIT);
        assert_eq!((l[0], l[31]), (8, 39));
        super::remember(&mut l, 8);
        assert_eq!((l[0], l[31]), (9, 8), "a known entry moves to the end");
    }
}
