//! [`ConfluenceClient::visible_spaces`]: the spaces `--all-spaces` labels, read from the
//! site's space listing (bounded by [`MAX_LISTED_KEYS`]), filtered by [`space_is_labelled`].
//!
//! - Cloud: `GET /wiki/api/v2/spaces?status=current&limit=250` following `_links.next`. No
//!   `type=` filter: it takes one value, and Cloud calls team spaces `global`,
//!   `collaboration` or `knowledge_base`; the types are filtered here instead.
//! - Data Center: `GET /rest/api/space?type=global&status=current&start=&limit=` until
//!   `_links.next` is absent (filtered here too, for a server that ignores a parameter).

use super::{ConfluenceClient, next_start};
use crate::confluence::resolve::{
    MAX_LISTED_KEYS, ResolvedSpace, VisibleSpaces, space_is_labelled,
};
use crate::confluence::wire::{DcList, DcSpace, V2List, V2Space};
use crate::confluence::{ConfluenceError, Flavor};

const LIST_SPACES: &str = "list spaces";

impl ConfluenceClient {
    /// Every global, current space the credentials can see, sorted by key. Each is also
    /// remembered as resolved, so that its page listing asks nothing again.
    pub async fn visible_spaces(&self) -> Result<VisibleSpaces, ConfluenceError> {
        let mut found = VisibleSpaces::default();
        let listed = match self.flavor {
            Flavor::Cloud => self.cloud_visible(&mut found).await,
            Flavor::DataCenter => self.dc_visible(&mut found).await,
        };
        listed?;
        found.spaces.sort_by(|a, b| a.key.cmp(&b.key));
        self.remember_spaces(&found.spaces);
        Ok(found)
    }

    async fn cloud_visible(&self, found: &mut VisibleSpaces) -> Result<(), ConfluenceError> {
        let limit = self.page_limit.to_string();
        let mut url = self.api(
            &["wiki", "api", "v2", "spaces"],
            &[("status", "current"), ("limit", &limit)],
        );
        loop {
            let list: V2List<V2Space> = self.get_json(LIST_SPACES, None, &url).await?;
            let next = self.advance(LIST_SPACES, &url, list.links)?;
            for s in list.results {
                let kind = (s.kind.as_deref(), s.status.as_deref());
                found.take(s.key, Some(s.id), kind);
            }
            if found.full(next.is_some()) {
                return Ok(());
            }
            match next {
                Some(n) => url = n,
                None => return Ok(()),
            }
        }
    }

    async fn dc_visible(&self, found: &mut VisibleSpaces) -> Result<(), ConfluenceError> {
        let limit = self.page_limit.to_string();
        let mut start: u64 = 0;
        loop {
            let start_s = start.to_string();
            let url = self.api(
                &["rest", "api", "space"],
                &[
                    ("type", "global"),
                    ("status", "current"),
                    ("start", &start_s),
                    ("limit", &limit),
                ],
            );
            let list: DcList<DcSpace> = self.get_json(LIST_SPACES, None, &url).await?;
            let got = list.results.len() as u64;
            let more = list.links.next.is_some();
            for s in list.results {
                let kind = (s.kind.as_deref(), s.status.as_deref());
                found.take(s.key, None, kind);
            }
            if found.full(more) || !more {
                return Ok(());
            }
            start = next_start(LIST_SPACES, start, got, list.size)?;
        }
    }
}

impl VisibleSpaces {
    /// Takes one listed space, or counts it as left out.
    fn take(
        &mut self,
        key: String,
        id: Option<String>,
        (kind, status): (Option<&str>, Option<&str>),
    ) {
        if key.is_empty() {
            return;
        }
        if space_is_labelled(&key, kind, status) {
            self.spaces.push(ResolvedSpace {
                given: key.clone(),
                key,
                id,
            });
        } else {
            self.left_out += 1;
        }
    }

    /// `true` once the bound is reached (`more`: whether the listing had more).
    fn full(&mut self, more: bool) -> bool {
        if self.spaces.len() < MAX_LISTED_KEYS {
            return false;
        }
        self.truncated = more || self.spaces.len() > MAX_LISTED_KEYS;
        self.spaces.truncate(MAX_LISTED_KEYS);
        true
    }
}
