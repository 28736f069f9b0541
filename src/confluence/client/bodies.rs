//! Page bodies in bulk, by id, for a run that listed metadata first
//! ([`crate::confluence::PageSource::stream_metadata`]).
//!
//! - **Cloud**: `GET /wiki/api/v2/pages?id=1,2,…&body-format=storage&limit=250`, up to 250 ids
//!   a request (the `id` parameter's `maxItems`), following `_links.next`.
//! - **Data Center**: `GET /rest/api/content/{id}?expand=body.storage`, one request a page, as
//!   many at once as the site's governor lets through.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};

use super::super::wire::{DcContent, V2List, V2Page};
use super::{ConfluenceClient, ConfluenceError};

/// Ids per Cloud request: the v2 `id` parameter's `maxItems`.
pub const IDS_PER_REQUEST: usize = 250;

impl ConfluenceClient {
    pub(super) async fn cloud_bodies(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, String>, ConfluenceError> {
        const WHAT: &str = "read page bodies";
        let mut bodies = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let joined = chunk.join(",");
            let limit = IDS_PER_REQUEST.to_string();
            let mut url = self.api(
                &["wiki", "api", "v2", "pages"],
                &[
                    ("id", joined.as_str()),
                    ("body-format", "storage"),
                    ("limit", limit.as_str()),
                ],
            );
            loop {
                let list: V2List<V2Page> = self.get_json(WHAT, None, &url).await?;
                for p in list.results {
                    let page = self.cloud_page(p, true);
                    bodies.insert(page.id, page.body.unwrap_or_default());
                }
                match self.advance(WHAT, &url, list.links)? {
                    Some(next) => url = next,
                    None => break,
                }
            }
        }
        Ok(bodies)
    }

    pub(super) async fn dc_bodies(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, String>, ConfluenceError> {
        let at_once = self.gov.config().concurrency.max(1);
        // Futures made up front: a closure inside the stream would not be `Send` for every
        // lifetime (rustc's higher-ranked closure limitation).
        let fetches: Vec<_> = ids.iter().map(|id| self.dc_body(id)).collect();
        futures::stream::iter(fetches)
            .buffer_unordered(at_once)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await
    }

    async fn dc_body(&self, id: &str) -> Result<Option<(String, String)>, ConfluenceError> {
        const WHAT: &str = "read a page body";
        let url = self.api(
            &["rest", "api", "content", id],
            &[("expand", "body.storage,version")],
        );
        match self.get_json::<DcContent>(WHAT, Some(id), &url).await {
            Ok(c) => {
                let page = self.dc_page(c, true);
                Ok(Some((page.id, page.body.unwrap_or_default())))
            }
            // Deleted (or hidden) since the listing: the run skips it, as it would have had
            // the listing come later.
            Err(ConfluenceError::Status {
                status: 404,
                confluence_body: true,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
