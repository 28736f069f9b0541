//! The credential check before a run's listing: one cheap authenticated call (Cloud
//! `GET /wiki/rest/api/user/current`, Data Center `GET /rest/api/user/current`), so that a
//! wrong token stops the run at once with the right hint instead of as a 404 on every page.
//! On Data Center with anonymous access on, a wrong PAT is not refused: the requests run as
//! the anonymous user and see less (CONFSERVER-98199); only this call shows it.

use reqwest::Method;
use serde::Deserialize;

use super::super::Flavor;
use super::{ConfluenceClient, ConfluenceError};

/// `User` (Cloud v1) / `Person` (DC): only `type` (`known`, `anonymous`, …) is read.
#[derive(Debug, Deserialize)]
struct CurrentUser {
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl ConfluenceClient {
    /// Checks that the site accepts the credentials. `Err` on a 401, an anonymous answer, a
    /// halt, or no answer at all; an answer this check cannot read (a 404 from a base URL
    /// that is not Confluence's, a login page) is left to the listing, which names the cause.
    pub async fn check_credentials(&self) -> Result<(), ConfluenceError> {
        const WHAT: &str = "check credentials";
        let segments: &[&str] = match self.flavor {
            Flavor::Cloud => &["wiki", "rest", "api", "user", "current"],
            Flavor::DataCenter => &["rest", "api", "user", "current"],
        };
        let url = self.api(segments, &[]);
        let text = match self.fetch(WHAT, None, Method::GET, &url, None).await {
            Ok(text) => text,
            Err(e @ ConfluenceError::Status { status: 401, .. }) => return Err(e),
            Err(e @ (ConfluenceError::Transport { .. } | ConfluenceError::Halted { .. })) => {
                return Err(e);
            }
            Err(e) => {
                tracing::debug!(error = %e, "credential check inconclusive; the listing will tell");
                return Ok(());
            }
        };
        let user = serde_json::from_str::<CurrentUser>(&text).ok();
        if user.and_then(|u| u.kind).as_deref() == Some("anonymous") {
            return Err(ConfluenceError::Credentials {
                detail: match self.flavor {
                    Flavor::DataCenter => format!(
                        "{} answered as the anonymous user: the personal access token was not accepted (with anonymous access on, a wrong token shows as missing pages, not as HTTP 401); check CONFLUENCE_PAT",
                        self.root
                    ),
                    Flavor::Cloud => format!(
                        "{} answered as the anonymous user: the credentials were not used; check CONFLUENCE_EMAIL and CONFLUENCE_API_TOKEN",
                        self.root
                    ),
                },
            });
        }
        Ok(())
    }
}
