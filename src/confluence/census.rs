//! The label census over HTTP: which pages of a space carry one label.
//!
//! - **Cloud**: the label's id from v1 `GET /wiki/rest/api/label?name=` (v2 has no lookup by
//!   name; a label's id is the same on every page), then v2
//!   `GET /wiki/api/v2/labels/{id}/pages?space-id=` following `_links.next`.
//! - **Data Center**: CQL `label = "x" and space = "KEY" and type = page` through
//!   `GET /rest/api/content/search`, paged by `start` like the listing.
//!
//! Either costs one request per page of results (250 ids on Cloud; as many as the server
//! allows on Data Center), where reading each page's labels costs one request per page.

use std::collections::HashSet;

use super::client::{ConfluenceClient, next_start};
use super::wire::{DcList, IdOnly, V1LabelDetails, V2List};
use super::{ConfluenceError, LABEL_PREFIX};

const WHAT: &str = "count a label's pages";

impl ConfluenceClient {
    pub(super) async fn cloud_pages_with_label(
        &self,
        space_key: &str,
        name: &str,
    ) -> Result<HashSet<String>, ConfluenceError> {
        let label_id = self.cloud_label_id(name).await?;
        let space_id = self.cloud_space_id_cached(space_key).await?;
        let limit = self.page_limit.to_string();
        let mut url = self.api(
            &["wiki", "api", "v2", "labels", &label_id, "pages"],
            &[("space-id", &space_id), ("limit", &limit)],
        );
        let mut ids = HashSet::new();
        loop {
            let list: V2List<IdOnly> = self.get_json(WHAT, None, &url).await?;
            ids.extend(list.results.into_iter().map(|p| p.id));
            match self.advance(WHAT, &url, list.links)? {
                Some(next) => url = next,
                None => return Ok(ids),
            }
        }
    }

    /// The id of the `global` label `name`. The census asks only for labels tag-space once
    /// wrote, which Confluence keeps even when no page carries them any more, so a 404 is
    /// not read as "on no page": it fails the census of this label (a wrong path or proxy
    /// answering 404 must not make every page look as if a person had removed it).
    async fn cloud_label_id(&self, name: &str) -> Result<String, ConfluenceError> {
        // `limit=1`: only the label is read, not the content it lists.
        let url = self.api(
            &["wiki", "rest", "api", "label"],
            &[("name", name), ("type", "page"), ("limit", "1")],
        );
        let details: V1LabelDetails = self.get_json(WHAT, None, &url).await?;
        let label = details.label;
        if label.prefix != LABEL_PREFIX || !label.name.eq_ignore_ascii_case(name) {
            // Another label than the one asked for: counting its pages would prove nothing.
            return Err(ConfluenceError::Decode {
                what: WHAT,
                detail: format!(
                    "the lookup of label '{name}' answered '{}:{}'",
                    label.prefix, label.name
                ),
                snippet: String::new(),
            });
        }
        Ok(label.id)
    }

    /// [`ConfluenceClient::cloud_space_id`], asked once per space and client.
    async fn cloud_space_id_cached(&self, key: &str) -> Result<String, ConfluenceError> {
        let known = self
            .space_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        if let Some(id) = known {
            return Ok(id);
        }
        let id = self.cloud_space_id(key).await?;
        self.space_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), id.clone());
        Ok(id)
    }

    pub(super) async fn dc_pages_with_label(
        &self,
        space_key: &str,
        name: &str,
    ) -> Result<HashSet<String>, ConfluenceError> {
        let cql = census_cql(space_key, name);
        let limit = self.page_limit.to_string();
        let mut start: u64 = 0;
        let mut ids = HashSet::new();
        loop {
            let start_s = start.to_string();
            let url = self.api(
                &["rest", "api", "content", "search"],
                &[("cql", &cql), ("start", &start_s), ("limit", &limit)],
            );
            let list: DcList<IdOnly> = self.get_json(WHAT, None, &url).await?;
            let got = list.results.len() as u64;
            ids.extend(list.results.into_iter().map(|c| c.id));
            if list.links.next.is_none() {
                return Ok(ids);
            }
            start = next_start(WHAT, start, got, list.size)?;
        }
    }
}

/// `label = "x" and space = "KEY" and type = page`, each value a CQL string literal.
fn census_cql(space_key: &str, name: &str) -> String {
    format!(
        "label = {} and space = {} and type = page",
        cql_string(name),
        cql_string(space_key)
    )
}

/// A CQL double-quoted string: `\` and `"` escaped with a backslash.
fn cql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cql_quotes_its_values() {
        assert_eq!(
            census_cql("ENG", "status-draft"),
            r#"label = "status-draft" and space = "ENG" and type = page"#
        );
        assert_eq!(
            census_cql("~a\"b", "x\\y"),
            r#"label = "x\\y" and space = "~a\"b" and type = page"#
        );
    }
}
