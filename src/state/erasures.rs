//! `_state/erasures.json`: the people `ticketsync forget` erased, so that every later sync
//! (incremental, `--full-sync`, `--ticket`) erases them again from whatever it fetches.
//!
//! The record keeps keyed hashes (HMAC-SHA256), never an address or a name. The key:
//!
//! - `TICKETSYNC_ERASURE_KEY` (64 hex digits) when it is set: the record alone then tells
//!   nothing, not even whether a given address was erased. Keep it with the other secrets; it
//!   must stay the same for the life of the dataset.
//! - Otherwise `_state/erasure.key`, 32 random bytes made by the first `forget`. Whoever can read
//!   the dataset can then test a guessed address against the record (the data they can read
//!   holds no such address any more), but cannot list who was erased.
//!
//! The record also holds a check value of its key: a run with another key (a changed or missing
//! `TICKETSYNC_ERASURE_KEY`) is refused instead of bringing erased people back.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::normalize::privacy::{ErasedPerson, Erasures};
use crate::storage::{layout, Storage};

/// The record's object name under `_state/`.
pub const ERASURES: &str = "erasures.json";
/// The generated key's object name under `_state/`.
pub const KEY: &str = "erasure.key";
/// The environment variable that holds the key instead.
pub const KEY_ENV: &str = "TICKETSYNC_ERASURE_KEY";

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    version: u32,
    /// Where the key comes from: `env` or `state`.
    key_source: String,
    /// HMAC of a fixed text under the key: tells a wrong key before it does harm.
    key_check: String,
    people: Vec<ErasedPerson>,
    updated_at: DateTime<Utc>,
}

/// The erasures of a dataset and the key they are hashed under.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The erased people, ready to check texts against.
    pub erasures: Erasures,
    key_source: KeySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    Env,
    State,
}

impl KeySource {
    fn as_str(self) -> &'static str {
        match self {
            KeySource::Env => "env",
            KeySource::State => "state",
        }
    }
}

fn key_from_env() -> Result<Option<Vec<u8>>> {
    match std::env::var(KEY_ENV) {
        Err(_) => Ok(None),
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => match hex::decode(text.trim()) {
            Ok(key) if key.len() >= 32 => Ok(Some(key)),
            // The value is a secret: the error says what is wrong with it, never what it is.
            _ => Err(Error::ErasureKey(format!(
                "{KEY_ENV} must be at least 64 hex digits (32 bytes, e.g. `openssl rand -hex 32`)"
            ))),
        },
    }
}

async fn key_from_state(storage: &Storage) -> Result<Option<Vec<u8>>> {
    let path = layout::state(KEY);
    match storage.get(&path).await? {
        None => Ok(None),
        Some(bytes) => hex::decode(bytes.trim_ascii())
            .ok()
            .filter(|k| k.len() == 32)
            .map(Some)
            .ok_or_else(|| Error::ErasureKey(format!("{path} is not 64 hex digits"))),
    }
}

/// Loads the erasures; none (and no key needed) when nothing was ever erased.
pub async fn load(storage: &Storage) -> Result<Loaded> {
    let path = layout::state(ERASURES);
    let Some(bytes) = storage.get(&path).await? else {
        return Ok(Loaded {
            erasures: Erasures::none(),
            key_source: KeySource::State,
        });
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: path.to_string(),
        detail: e.to_string(),
    })?;
    let (key, key_source) = match record.key_source.as_str() {
        "env" => (
            key_from_env()?.ok_or_else(|| {
                Error::ErasureKey(format!(
                    "the erasures in {path} were hashed with the key in {KEY_ENV}, which is not set: set it (the same key) so erased people stay erased"
                ))
            })?,
            KeySource::Env,
        ),
        _ => (
            key_from_state(storage)
                .await?
                .ok_or_else(|| {
                    Error::ErasureKey(format!(
                        "{} is missing: the erasures in {path} cannot be applied without their key",
                        layout::state(KEY)
                    ))
                })?,
            KeySource::State,
        ),
    };
    if let Some(bad) = record.people.iter().find(|p| !p.is_well_formed()) {
        return Err(Error::Corrupt {
            path: path.to_string(),
            detail: format!(
                "the record of {} does not hold 64-hex-digit hashes; it would erase nobody",
                bad.pseudonym
            ),
        });
    }
    let erasures = Erasures::new(&key, record.people);
    if erasures.hash_hex("key-check", "ticketsync") != record.key_check {
        return Err(Error::ErasureKey(format!(
            "the key check of {path} does not match the key ({}): the erasures were hashed with another key; restore that key so erased people stay erased",
            if key_source == KeySource::Env { KEY_ENV } else { KEY }
        )));
    }
    Ok(Loaded {
        erasures,
        key_source,
    })
}

/// Loads the erasures for adding someone: makes the key on the first erasure (from
/// `TICKETSYNC_ERASURE_KEY`, else a new random `_state/erasure.key`).
pub async fn load_for_update(storage: &Storage) -> Result<Loaded> {
    if storage.exists(&layout::state(ERASURES)).await? {
        return load(storage).await;
    }
    if let Some(key) = key_from_env()? {
        return Ok(Loaded {
            erasures: Erasures::new(&key, Vec::new()),
            key_source: KeySource::Env,
        });
    }
    let key = match key_from_state(storage).await? {
        Some(key) => key,
        None => {
            let key: [u8; 32] = rand::random();
            let path = layout::state(KEY);
            if !storage
                .create(&path, Bytes::from(hex::encode(key) + "\n"))
                .await?
            {
                // Someone made it first: use theirs.
                return Box::pin(load_for_update(storage)).await;
            }
            key.to_vec()
        }
    };
    Ok(Loaded {
        erasures: Erasures::new(&key, Vec::new()),
        key_source: KeySource::State,
    })
}

/// For a dry run: the erasures and the key a real run would use, writing nothing. When a real
/// run would make the key, a random one stands in and the second value is true (the pseudonym
/// shown is then not the one a real run gives).
pub async fn load_for_dry_run(storage: &Storage) -> Result<(Loaded, bool)> {
    if storage.exists(&layout::state(ERASURES)).await? {
        return Ok((load(storage).await?, false));
    }
    let (key, key_source, provisional) = match key_from_env()? {
        Some(key) => (key, KeySource::Env, false),
        None => match key_from_state(storage).await? {
            Some(key) => (key, KeySource::State, false),
            None => (rand::random::<[u8; 32]>().to_vec(), KeySource::State, true),
        },
    };
    Ok((
        Loaded {
            erasures: Erasures::new(&key, Vec::new()),
            key_source,
        },
        provisional,
    ))
}

/// Stores the erasures (one atomic put).
pub async fn store(storage: &Storage, loaded: &Loaded, at: DateTime<Utc>) -> Result<()> {
    let record = Record {
        version: 1,
        key_source: loaded.key_source.as_str().into(),
        key_check: loaded.erasures.hash_hex("key-check", "ticketsync"),
        people: loaded.erasures.people().to_vec(),
        updated_at: at,
    };
    let bytes = serde_json::to_vec_pretty(&record).expect("erasures serialize");
    storage
        .put(&layout::state(ERASURES), Bytes::from(bytes))
        .await?;
    Ok(())
}
