//! Claims and locks: one lease implementation with two names
//! (docs/PROTOCOL.md, "Endpoints"). A lease is a row keyed by a string
//! (a claim key or a file path), held by an owner until `expires_at`
//! unless `released_at` is set. Acquiring a free or lapsed lease takes
//! it over whole; the owner acquiring again only extends it; anyone
//! else is denied (and sees the holder's row).

use super::Cached;
use rusqlite::types::Value as Sql;
use rusqlite::{OptionalExtension, Row, params_from_iter};
use serde_json::{Map, Value};

use super::Store;
use super::rows::{claim_row, lock_row};
use super::schema::{CLAIM_COLS, LOCK_COLS};
use super::tx::Tx;
use crate::error::{Error, Result};
use crate::time;
use crate::wire::{Claim, Lock};

/// What differs between the two lease tables.
/// Implemented by the two lease rows, [`Claim`] and [`Lock`].
pub trait LeaseRow: Sized {
    const TABLE: &'static str;
    const COLS: &'static str;
    const KEY: &'static str;
    const OWNER: &'static str;
    /// When the current holder took it.
    const SINCE: &'static str;
    const REFRESH_MISSING: &'static str;
    const RELEASE_MISSING: &'static str;
    fn read(r: &Row<'_>) -> rusqlite::Result<Self>;
    fn owner(&self) -> &str;
    fn expires_at(&self) -> &str;
    fn released_at(&self) -> Option<&str>;
}

impl LeaseRow for Claim {
    const TABLE: &'static str = "claims";
    const COLS: &'static str = CLAIM_COLS;
    const KEY: &'static str = "claim_key";
    const OWNER: &'static str = "owner_agent_id";
    const SINCE: &'static str = "claimed_at";
    const REFRESH_MISSING: &'static str = "claim not found or not owned by owner_agent_id";
    const RELEASE_MISSING: &'static str = "claim not found or not owned by agent_id";
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        claim_row(r)
    }
    fn owner(&self) -> &str {
        &self.owner_agent_id
    }
    fn expires_at(&self) -> &str {
        &self.expires_at
    }
    fn released_at(&self) -> Option<&str> {
        self.released_at.as_deref()
    }
}

impl LeaseRow for Lock {
    const TABLE: &'static str = "locks";
    const COLS: &'static str = LOCK_COLS;
    const KEY: &'static str = "file_path";
    const OWNER: &'static str = "agent_id";
    const SINCE: &'static str = "locked_at";
    const REFRESH_MISSING: &'static str = "lock not found or not owned by agent_id";
    const RELEASE_MISSING: &'static str = "lock not found or not owned by agent_id";
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        lock_row(r)
    }
    fn owner(&self) -> &str {
        &self.agent_id
    }
    fn expires_at(&self) -> &str {
        &self.expires_at
    }
    fn released_at(&self) -> Option<&str> {
        self.released_at.as_deref()
    }
}

/// True while a lease is held: not released and not yet expired.
pub(super) fn lease_active(released_at: Option<&str>, expires_at: &str, now: &str) -> bool {
    released_at.is_none() && expires_at >= now
}

/// A lease request: the key, the owner, and the columns (beyond key,
/// owner, times and metadata) a new holder writes.
pub(super) struct Want<'a> {
    pub(super) key: &'a str,
    pub(super) owner: &'a str,
    pub(super) ttl_sec: i64,
    pub(super) metadata: &'a Map<String, Value>,
    pub(super) extra: Vec<(&'static str, Sql)>,
}

impl Tx<'_> {
    fn lease<T: LeaseRow>(&self, key: &str) -> Result<Option<T>> {
        Ok(self
            .tx
            .one(
                &format!("SELECT {} FROM {} WHERE {} = ?1", T::COLS, T::TABLE, T::KEY),
                [key],
                T::read,
            )
            .optional()?)
    }

    /// Acquires (or extends, or is denied) a lease; true if held now.
    pub(super) fn acquire<T: LeaseRow>(&mut self, w: &Want<'_>) -> Result<(T, bool)> {
        let expires = time::format(self.now_s + w.ttl_sec);
        let meta = serde_json::to_string(w.metadata)?;
        let acquired = match self.lease::<T>(w.key)? {
            Some(held) if lease_active(held.released_at(), held.expires_at(), &self.now) => {
                if held.owner() == w.owner {
                    // Only the expiry moves (docs/PROTOCOL.md, "Endpoints").
                    let sql = format!(
                        "UPDATE {} SET expires_at = ?1 WHERE {} = ?2",
                        T::TABLE,
                        T::KEY
                    );
                    self.tx.run(&sql, [&expires, w.key])?;
                }
                held.owner() == w.owner
            }
            existing => {
                // Free or lapsed: the new holder's row, whole.
                let mut cols = vec![T::KEY, T::OWNER, T::SINCE, "expires_at", "released_at"];
                let mut vals: Vec<Sql> = vec![
                    w.key.to_string().into(),
                    w.owner.to_string().into(),
                    self.now.clone().into(),
                    expires.into(),
                    Sql::Null,
                ];
                cols.push("metadata_json");
                vals.push(meta.into());
                for (c, v) in &w.extra {
                    cols.push(c);
                    vals.push(v.clone());
                }
                let sql = if existing.is_none() {
                    let marks = vec!["?"; cols.len()].join(", ");
                    format!(
                        "INSERT INTO {}({}) VALUES ({marks})",
                        T::TABLE,
                        cols.join(", ")
                    )
                } else {
                    let sets: Vec<String> = cols[1..].iter().map(|c| format!("{c} = ?")).collect();
                    vals.push(vals[0].clone());
                    vals.remove(0);
                    format!(
                        "UPDATE {} SET {} WHERE {} = ?",
                        T::TABLE,
                        sets.join(", "),
                        T::KEY
                    )
                };
                self.tx.run(&sql, params_from_iter(vals))?;
                true
            }
        };
        self.touch(w.owner)?;
        let row = self
            .lease::<T>(w.key)?
            .ok_or_else(|| Error::internal("lease vanished"))?;
        Ok((row, acquired))
    }
}

impl Store {
    /// `POST /v1/claims`: returns the row and whether it was granted.
    pub fn acquire_claim(
        &self,
        owner: &str,
        claim_key: &str,
        task_message_id: Option<i64>,
        thread_id: Option<&str>,
        ttl_sec: i64,
        metadata: &Map<String, Value>,
    ) -> Result<(Claim, bool)> {
        let extra = vec![
            ("thread_id", thread_id.map(str::to_string).into()),
            ("task_message_id", task_message_id.into()),
        ];
        self.write(|t| {
            t.acquire(&Want {
                key: claim_key,
                owner,
                ttl_sec,
                metadata,
                extra,
            })
        })
    }

    /// `POST /v1/locks`: returns the row and whether it was granted.
    pub fn acquire_lock(
        &self,
        agent: &str,
        file_path: &str,
        ttl_sec: i64,
        metadata: &Map<String, Value>,
    ) -> Result<(Lock, bool)> {
        let rules = self.path_rules();
        self.write(|t| {
            // One truth about who holds a file: another agent's exclusive
            // reservation covering it denies the lock, in the same shape.
            if let Some(held) = t.reserved_against_lock(&rules, agent, file_path)? {
                return Ok((held, false));
            }
            t.acquire(&Want {
                key: file_path,
                owner: agent,
                ttl_sec,
                metadata,
                extra: Vec::new(),
            })
        })
    }

    /// `POST /v1/claims/refresh` and `/v1/locks/refresh`: the holder sets
    /// a new expiry (which may shorten the lease).
    pub fn refresh_lease<T: LeaseRow>(&self, key: &str, owner: &str, ttl_sec: i64) -> Result<T> {
        self.write(|t| {
            let expires = time::format(t.now_s + ttl_sec);
            let sql = format!(
                "UPDATE {} SET expires_at = ?1 WHERE {} = ?2 AND {} = ?3 AND released_at IS NULL AND expires_at >= ?4",
                T::TABLE,
                T::KEY,
                T::OWNER
            );
            if t.tx.run(&sql, [&expires, key, owner, &t.now])? == 0 {
                return Err(Error::not_found(T::REFRESH_MISSING));
            }
            t.touch(owner)?;
            t.lease::<T>(key)?
                .ok_or_else(|| Error::internal("lease vanished"))
        })
    }

    /// `POST /v1/claims/release` and `/v1/locks/release`.
    pub fn release_lease<T: LeaseRow>(&self, key: &str, owner: &str) -> Result<T> {
        self.write(|t| {
            let sql = format!(
                "UPDATE {} SET released_at = ?1 WHERE {} = ?2 AND {} = ?3 AND released_at IS NULL AND expires_at >= ?1",
                T::TABLE,
                T::KEY,
                T::OWNER
            );
            if t.tx.run(&sql, [&t.now, key, owner])? == 0 {
                return Err(Error::not_found(T::RELEASE_MISSING));
            }
            if T::TABLE == "claims" {
                t.release_tied(Some(key), false)?;
                t.out.work = true;
            }
            t.touch(owner)?;
            t.lease::<T>(key)?
                .ok_or_else(|| Error::internal("lease vanished"))
        })
    }

    /// `GET /v1/claims` (filtered by `thread_id`) and `GET /v1/locks`
    /// (filtered by `agent_id`), oldest first.
    pub fn list_leases<T: LeaseRow>(
        &self,
        filter: Option<(&str, &str)>,
        active_only: bool,
    ) -> Result<Vec<T>> {
        self.read(|c, now| {
            let mut sql = format!("SELECT {} FROM {} WHERE 1 = 1", T::COLS, T::TABLE);
            let mut args: Vec<Sql> = Vec::new();
            if let Some((col, v)) = filter {
                sql.push_str(&format!(" AND {col} = ?"));
                args.push(v.to_string().into());
            }
            if active_only {
                sql.push_str(" AND released_at IS NULL AND expires_at >= ?");
                args.push(now.to_string().into());
            }
            sql.push_str(&format!(" ORDER BY {}, rowid", T::SINCE));
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params_from_iter(args), T::read)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
