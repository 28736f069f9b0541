//! The structured-output rung that worked per provider endpoint and model (migration 4; see
//! `crate::llm::structured`).

use rusqlite::{OptionalExtension, params};

use super::store::now;
use super::{CacheError, Store};

/// Where a rung is remembered: the provider, its base URL (a trailing slash does not count)
/// and the model, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint<'a> {
    pub provider: &'a str,
    pub base_url: &'a str,
    pub model: &'a str,
}

impl Store {
    /// The rung that last worked for this endpoint, if one was recorded.
    pub fn structured_rung(&self, at: Endpoint<'_>) -> Result<Option<String>, CacheError> {
        self.conn()
            .prepare_cached(
                "SELECT rung FROM structured_output WHERE provider = ?1 AND base_url = ?2 AND model = ?3",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![at.provider, at.base_url.trim_end_matches('/'), at.model],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(self.err("read the structured-output rung"))
    }

    /// Records the rung that worked for this endpoint.
    pub fn remember_rung(&self, at: Endpoint<'_>, rung: &str) -> Result<(), CacheError> {
        self.conn()
            .execute(
                "INSERT INTO structured_output (provider, base_url, model, rung, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (provider, base_url, model) DO UPDATE SET rung = ?4, updated_at = ?5",
                params![
                    at.provider,
                    at.base_url.trim_end_matches('/'),
                    at.model,
                    rung,
                    now()
                ],
            )
            .map(drop)
            .map_err(self.err("record the structured-output rung"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::StoreOptions;

    #[test]
    fn a_rung_is_kept_per_base_url_and_model_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let local = Endpoint {
            provider: "openai",
            base_url: "http://127.0.0.1:8080/v1/",
            model: "llama3.1:8b",
        };
        let other = Endpoint {
            base_url: "http://127.0.0.1:11434/v1",
            ..local
        };
        {
            let store = Store::open(&path, StoreOptions::default()).unwrap();
            assert_eq!(store.structured_rung(local).unwrap(), None);
            store.remember_rung(local, "json_schema").unwrap();
            store.remember_rung(local, "json_object").unwrap();
        }
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let trimmed = Endpoint {
            base_url: "http://127.0.0.1:8080/v1",
            ..local
        };
        assert_eq!(
            store.structured_rung(trimmed).unwrap().as_deref(),
            Some("json_object")
        );
        assert_eq!(store.structured_rung(other).unwrap(), None);
        let other_model = Endpoint {
            model: "Qwen/Qwen2.5-7B-Instruct",
            ..local
        };
        assert_eq!(store.structured_rung(other_model).unwrap(), None);
    }
}
