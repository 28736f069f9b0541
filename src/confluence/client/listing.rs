//! Listing a space's pages and reading a page's labels: Cloud through API v2, Data Center
//! through `/rest/api/content` with labels expanded inline.

use tokio::sync::mpsc;
use url::Url;

use super::super::wire::{DcContent, DcList, DcSpace, Links, V2List, V2Page, V2Space, WireLabel};
use super::super::{ConfluenceError, Label, Page};
use super::ConfluenceClient;
use super::transport::next_start;
use crate::http::snippet;

impl ConfluenceClient {
    // ---- Cloud ------------------------------------------------------------------------------

    /// `GET /wiki/api/v2/spaces?keys=KEY` → the space id (not asked again for a space
    /// [`Self::resolve_space`] has found).
    pub(in crate::confluence) async fn cloud_space_id(
        &self,
        key: &str,
    ) -> Result<String, ConfluenceError> {
        if let Some(id) = self.resolved_space(key).and_then(|s| s.id) {
            return Ok(id);
        }
        let url = self.api(&["wiki", "api", "v2", "spaces"], &[("keys", key)]);
        let list: V2List<V2Space> = self.find_space(key, &url).await?;
        let exact = list.results.iter().position(|s| s.key == key);
        let folded = || {
            list.results
                .iter()
                .position(|s| s.key.eq_ignore_ascii_case(key))
        };
        match exact.or_else(folded) {
            Some(i) => Ok(list
                .results
                .into_iter()
                .nth(i)
                .expect("index from position")
                .id),
            None => Err(self.space_not_found(key)),
        }
    }

    /// The space's pages into `tx`; without `bodies`, ids, titles and versions only (the
    /// listing then leaves out `body-format`, and each page's `body` is empty).
    pub(in crate::confluence) async fn cloud_stream(
        &self,
        key: &str,
        tx: &mpsc::Sender<Page>,
        bodies: bool,
    ) -> Result<u64, ConfluenceError> {
        const WHAT: &str = "list pages";
        let space_id = match self.remembered_space(key)?.and_then(|s| s.id) {
            Some(id) => id,
            None => self.cloud_space_id(key).await?,
        };
        let limit = self.page_limit.to_string();
        let mut query = vec![("status", "current"), ("limit", limit.as_str())];
        if bodies {
            query.insert(0, ("body-format", "storage"));
        }
        let mut url = self.api(&["wiki", "api", "v2", "spaces", &space_id, "pages"], &query);
        let mut sent = 0;
        loop {
            if tx.is_closed() {
                return Ok(sent);
            }
            let list: V2List<V2Page> = self.get_json(WHAT, None, &url).await?;
            for p in list.results {
                let page = self.cloud_page(p, bodies);
                if tx.send(page).await.is_err() {
                    return Ok(sent);
                }
                sent += 1;
            }
            match self.advance(WHAT, &url, list.links)? {
                Some(next) => url = next,
                None => return Ok(sent),
            }
        }
    }

    /// A listed page; with `body_asked`, a page whose answer has no body has an empty one.
    pub(in crate::confluence) fn cloud_page(&self, p: V2Page, body_asked: bool) -> Page {
        let body = p.body.and_then(|b| b.storage).map(|s| s.value);
        Page {
            id: p.id,
            title: p.title,
            version: p.version.and_then(|v| v.number),
            body: if body_asked {
                Some(body.unwrap_or_default())
            } else {
                body
            },
            labels: None,
            url: self.web_url(p.links.webui),
        }
    }

    /// The next Cloud list URL, or `None` at the end; a `next` that repeats is an error
    /// rather than an endless loop.
    pub(in crate::confluence) fn advance(
        &self,
        what: &'static str,
        current: &Url,
        links: Links,
    ) -> Result<Option<Url>, ConfluenceError> {
        let Some(next) = links.next.filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let url = self.next_url(what, &next)?;
        if &url == current {
            return Err(ConfluenceError::Decode {
                what,
                detail: "the next-page link repeats the current page; pagination would never end"
                    .into(),
                snippet: snippet(&next),
            });
        }
        Ok(Some(url))
    }

    pub(in crate::confluence) async fn cloud_labels(
        &self,
        page_id: &str,
    ) -> Result<Vec<Label>, ConfluenceError> {
        const WHAT: &str = "read labels";
        let limit = self.page_limit.to_string();
        let mut url = self.api(
            &["wiki", "api", "v2", "pages", page_id, "labels"],
            &[("limit", &limit)],
        );
        let mut labels = Vec::new();
        loop {
            let list: V2List<WireLabel> = self.get_json(WHAT, Some(page_id), &url).await?;
            labels.extend(list.results.into_iter().map(Label::from));
            match self.advance(WHAT, &url, list.links)? {
                Some(next) => url = next,
                None => return Ok(labels),
            }
        }
    }

    // ---- Data Center ------------------------------------------------------------------------

    /// As [`Self::cloud_stream`]; without `bodies` the listing does not expand `body.storage`.
    pub(in crate::confluence) async fn dc_stream(
        &self,
        key: &str,
        tx: &mpsc::Sender<Page>,
        bodies: bool,
    ) -> Result<u64, ConfluenceError> {
        const WHAT: &str = "list pages";
        if self.remembered_space(key)?.is_none() {
            let url = self.api(&["rest", "api", "space", key], &[]);
            self.find_space::<DcSpace>(key, &url).await?;
        }
        let limit = self.page_limit.to_string();
        let mut start: u64 = 0;
        let mut sent = 0;
        loop {
            if tx.is_closed() {
                return Ok(sent);
            }
            let start_s = start.to_string();
            let url = self.api(
                &["rest", "api", "content"],
                &[
                    ("spaceKey", key),
                    ("type", "page"),
                    ("status", "current"),
                    (
                        "expand",
                        if bodies {
                            "body.storage,version,metadata.labels"
                        } else {
                            "version,metadata.labels"
                        },
                    ),
                    ("start", &start_s),
                    ("limit", &limit),
                ],
            );
            let list: DcList<DcContent> = self.get_json(WHAT, None, &url).await?;
            let got = list.results.len() as u64;
            for c in list.results {
                let page = self.dc_page(c, bodies);
                if tx.send(page).await.is_err() {
                    return Ok(sent);
                }
                sent += 1;
            }
            if list.links.next.is_none() {
                return Ok(sent);
            }
            start = next_start(WHAT, start, got, list.size)?;
        }
    }

    /// As [`Self::cloud_page`].
    pub(in crate::confluence) fn dc_page(&self, c: DcContent, body_asked: bool) -> Page {
        // Inline labels are complete only when their own list has no next page.
        let labels = c
            .metadata
            .and_then(|m| m.labels)
            .filter(|l| l.links.next.is_none())
            .map(|l| l.results.into_iter().map(Label::from).collect());
        let body = c.body.and_then(|b| b.storage).map(|s| s.value);
        Page {
            id: c.id,
            title: c.title,
            version: c.version.and_then(|v| v.number),
            body: if body_asked {
                Some(body.unwrap_or_default())
            } else {
                body
            },
            labels,
            url: self.web_url(c.links.webui),
        }
    }

    pub(in crate::confluence) async fn dc_labels(
        &self,
        page_id: &str,
    ) -> Result<Vec<Label>, ConfluenceError> {
        const WHAT: &str = "read labels";
        let limit = self.page_limit.to_string();
        let mut start: u64 = 0;
        let mut labels = Vec::new();
        loop {
            let start_s = start.to_string();
            let url = self.api(
                &["rest", "api", "content", page_id, "label"],
                &[("start", &start_s), ("limit", &limit)],
            );
            let list: DcList<WireLabel> = self.get_json(WHAT, Some(page_id), &url).await?;
            let got = list.results.len() as u64;
            labels.extend(list.results.into_iter().map(Label::from));
            if list.links.next.is_none() {
                return Ok(labels);
            }
            start = next_start(WHAT, start, got, list.size)?;
        }
    }
}
