//! [`ConfluenceClient::resolve_space`]: the rule of [`crate::confluence::resolve`] applied
//! to a site. The exact lookup comes first and is the same request the page listing makes
//! anyway; only when it finds nothing are the site's keys read (keys only, paginated, at
//! most [`MAX_LISTED_KEYS`]).
//!
//! - Cloud: `GET /wiki/api/v2/spaces?keys=KEY`, then `GET /wiki/api/v2/spaces?limit=250`
//!   following `_links.next`.
//! - Data Center: `GET /rest/api/space/{KEY}`, then `GET /rest/api/space?start=&limit=`
//!   until `_links.next` is absent.

use std::collections::HashMap;

use super::{ConfluenceClient, next_start};
use crate::confluence::resolve::{KeyMatch, MAX_LISTED_KEYS, ResolvedSpace, SpaceSearch};
use crate::confluence::wire::{DcList, DcSpace, V2List, V2Space};
use crate::confluence::{ConfluenceError, Flavor};

const LIST_SPACES: &str = "list spaces";

/// What a client has learnt about space keys, so that the page listing after a resolution
/// asks Confluence nothing again.
#[derive(Debug, Default)]
pub(super) struct SpaceMemo {
    /// Resolved spaces, by their real key.
    found: HashMap<String, ResolvedSpace>,
    /// Failed lookups handed over by [`ConfluenceClient::defer_space_failure`], by typed key.
    failed: HashMap<String, ConfluenceError>,
}

/// Spaces as listed: (key, Cloud id).
#[derive(Debug, Default)]
struct Listing {
    spaces: Vec<(String, Option<String>)>,
    truncated: bool,
}

impl Listing {
    /// Adds one listing page's spaces; `true` once the bound is reached (the rest is not
    /// read; `more` says whether there was any).
    fn add(&mut self, spaces: impl Iterator<Item = (String, Option<String>)>, more: bool) -> bool {
        self.spaces.extend(spaces.filter(|(k, _)| !k.is_empty()));
        if self.spaces.len() < MAX_LISTED_KEYS {
            return false;
        }
        self.truncated = more || self.spaces.len() > MAX_LISTED_KEYS;
        self.spaces.truncate(MAX_LISTED_KEYS);
        true
    }
}

impl ConfluenceClient {
    /// The space `key` names on this site: the space with exactly that key, else the only
    /// one whose key equals it ignoring case. Several such keys are
    /// [`ConfluenceError::SpaceAmbiguous`]; none is [`ConfluenceError::SpaceNotFound`] with
    /// the closest keys. An exact key costs the one lookup the page listing would make
    /// anyway: the listing of the resolved key then reuses it.
    ///
    /// Every command that takes a space calls this first and uses the returned key from then
    /// on (locks, state file, reports).
    pub async fn resolve_space(&self, key: &str) -> Result<ResolvedSpace, ConfluenceError> {
        let space = match self.flavor {
            Flavor::Cloud => self.cloud_resolve(key).await?,
            Flavor::DataCenter => self.dc_resolve(key).await?,
        };
        self.memo().found.insert(space.key.clone(), space.clone());
        Ok(space)
    }

    /// Keeps the error of a failed [`Self::resolve_space`] for the next listing of `key`,
    /// which returns it instead of asking again: a run then ends on it like on any listing
    /// failure (report, run history, exit code), without a second lookup.
    pub fn defer_space_failure(&self, key: &str, error: ConfluenceError) {
        self.memo().failed.insert(key.to_string(), error);
    }

    /// What a listing of `key` may take from an earlier resolution: the space, a deferred
    /// failure (handed out once), or nothing.
    pub(super) fn remembered_space(
        &self,
        key: &str,
    ) -> Result<Option<ResolvedSpace>, ConfluenceError> {
        if let Some(e) = self.memo().failed.remove(key) {
            return Err(e);
        }
        Ok(self.resolved_space(key))
    }

    /// Spaces listed as they are on the site: their listing needs no lookup.
    pub(super) fn remember_spaces(&self, spaces: &[ResolvedSpace]) {
        let mut memo = self.memo();
        for space in spaces {
            memo.found.insert(space.key.clone(), space.clone());
        }
    }

    /// The space [`Self::resolve_space`] found under the real key `key`, if it did.
    pub(super) fn resolved_space(&self, key: &str) -> Option<ResolvedSpace> {
        self.memo().found.get(key).cloned()
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, SpaceMemo> {
        // Only inserts and lookups happen under the lock: a panic cannot leave it half done.
        self.spaces.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn cloud_resolve(&self, key: &str) -> Result<ResolvedSpace, ConfluenceError> {
        let url = self.api(&["wiki", "api", "v2", "spaces"], &[("keys", key)]);
        let found = match self.find_space::<V2List<V2Space>>(key, &url).await {
            Ok(list) => list.results,
            Err(ConfluenceError::SpaceNotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        // A site whose `keys=` ignores case has answered the other cases already.
        let found: Vec<_> = found.into_iter().map(|s| (s.key, Some(s.id))).collect();
        if let Some(decided) = self.decide(key, &found, None) {
            return decided;
        }
        let listing = self.cloud_listing().await;
        self.decide_listed(key, listing)
    }

    async fn dc_resolve(&self, key: &str) -> Result<ResolvedSpace, ConfluenceError> {
        let url = self.api(&["rest", "api", "space", key], &[]);
        let found = match self.find_space::<DcSpace>(key, &url).await {
            Ok(space) => vec![(space.key, None)],
            Err(ConfluenceError::SpaceNotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        if let Some(decided) = self.decide(key, &found, None) {
            return decided;
        }
        let listing = self.dc_listing().await;
        self.decide_listed(key, listing)
    }

    /// The outcome over the whole listing; a listing that failed leaves the plain "not
    /// found" of the exact lookup.
    fn decide_listed(
        &self,
        key: &str,
        listing: Result<Listing, ConfluenceError>,
    ) -> Result<ResolvedSpace, ConfluenceError> {
        let listing = match listing {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, "cannot list the spaces to match '{key}' ignoring case");
                return Err(self.space_not_found_after(key, None));
            }
        };
        if listing.truncated {
            tracing::warn!(
                "the site has more than {MAX_LISTED_KEYS} spaces: only the first {MAX_LISTED_KEYS} keys are compared with '{key}'"
            );
        }
        self.decide(key, &listing.spaces, Some(listing.truncated))
            .expect("a listing always decides")
    }

    /// `None` when `spaces` has no key equal to `key` even ignoring case and no `truncated`
    /// is given (the exact lookup, before the listing); with it, "not found" and suggestions.
    fn decide(
        &self,
        key: &str,
        spaces: &[(String, Option<String>)],
        truncated: Option<bool>,
    ) -> Option<Result<ResolvedSpace, ConfluenceError>> {
        let resolved = |real: &str| {
            let (k, id) = spaces
                .iter()
                .find(|(k, _)| k == real)
                .expect("a listed key");
            Ok(ResolvedSpace {
                key: k.clone(),
                id: id.clone(),
                given: key.to_string(),
            })
        };
        match crate::confluence::resolve::match_key(key, spaces.iter().map(|(k, _)| k.as_str())) {
            KeyMatch::Exact(k) | KeyMatch::Folded(k) => Some(resolved(k)),
            KeyMatch::Ambiguous(keys) => Some(Err(ConfluenceError::SpaceAmbiguous {
                key: key.to_string(),
                base: self.root.clone(),
                candidates: keys.into_iter().map(str::to_string).collect(),
            })),
            KeyMatch::Missing(near) => truncated.map(|truncated| {
                let search = SpaceSearch {
                    seen: spaces.len(),
                    truncated,
                    suggestions: near.into_iter().map(str::to_string).collect(),
                };
                Err(self.space_not_found_after(key, Some(search)))
            }),
        }
    }

    fn space_not_found_after(&self, key: &str, search: Option<SpaceSearch>) -> ConfluenceError {
        ConfluenceError::SpaceNotFound {
            key: key.to_string(),
            base: self.root.clone(),
            search,
        }
    }

    /// Every space's key and id (bounded), following `_links.next`.
    async fn cloud_listing(&self) -> Result<Listing, ConfluenceError> {
        let limit = self.page_limit.to_string();
        let mut url = self.api(&["wiki", "api", "v2", "spaces"], &[("limit", &limit)]);
        let mut listing = Listing::default();
        loop {
            let list: V2List<V2Space> = self.get_json(LIST_SPACES, None, &url).await?;
            let next = self.advance(LIST_SPACES, &url, list.links)?;
            let spaces = list.results.into_iter().map(|s| (s.key, Some(s.id)));
            if listing.add(spaces, next.is_some()) {
                return Ok(listing);
            }
            match next {
                Some(n) => url = n,
                None => return Ok(listing),
            }
        }
    }

    /// Every space's key (bounded), by `start` until `_links.next` is absent.
    async fn dc_listing(&self) -> Result<Listing, ConfluenceError> {
        let limit = self.page_limit.to_string();
        let mut start: u64 = 0;
        let mut listing = Listing::default();
        loop {
            let start_s = start.to_string();
            let url = self.api(
                &["rest", "api", "space"],
                &[("start", &start_s), ("limit", &limit)],
            );
            let list: DcList<DcSpace> = self.get_json(LIST_SPACES, None, &url).await?;
            let got = list.results.len() as u64;
            let more = list.links.next.is_some();
            if listing.add(list.results.into_iter().map(|s| (s.key, None)), more) || !more {
                return Ok(listing);
            }
            start = next_start(LIST_SPACES, start, got, list.size)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spaces(n: usize) -> impl Iterator<Item = (String, Option<String>)> {
        (0..n).map(|i| (format!("K{i}"), None))
    }

    #[test]
    fn the_listing_stops_at_the_bound_and_says_whether_more_was_left() {
        let mut l = Listing::default();
        assert!(!l.add(spaces(MAX_LISTED_KEYS - 1), true));
        assert!(l.add(spaces(1), false));
        assert!(!l.truncated, "exactly the bound, nothing after it");

        let mut l = Listing::default();
        assert!(l.add(spaces(MAX_LISTED_KEYS + 3), false));
        assert_eq!(l.spaces.len(), MAX_LISTED_KEYS);
        assert!(l.truncated);

        let mut l = Listing::default();
        assert!(l.add(spaces(MAX_LISTED_KEYS), true));
        assert!(l.truncated);
    }

    #[test]
    fn empty_keys_are_not_listed() {
        let mut l = Listing::default();
        l.add(
            [(String::new(), None), ("A".into(), None)].into_iter(),
            false,
        );
        assert_eq!(l.spaces, [("A".to_string(), None)]);
    }
}
