//! What the benches over the stateful Cloud fake share: settings from the environment, the
//! fake served with a fixed answer time, and a real client for it. Included with
//! `#[path = "support/site.rs"] mod site;` beside `mod livesite;`.

use std::time::Duration;

use tag_space::confluence::{ConfluenceAuth, ConfluenceClient, ConfluenceSettings};
use tag_space::secret::Secret;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::livesite::LiveSite;

/// The variable `name` parsed, or `default` when unset or unreadable.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The site, each answer after `delay`.
struct Slow {
    site: LiveSite,
    delay: Duration,
}

impl Respond for Slow {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.site.respond(req).set_delay(self.delay)
    }
}

/// Serves `site` on 127.0.0.1, each answer after `delay` (no request recording: a bench
/// sends tens of thousands).
pub async fn serve(site: &LiveSite, delay: Duration) -> MockServer {
    let server = MockServer::builder()
        .disable_request_recording()
        .start()
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(Slow {
            site: site.clone(),
            delay,
        })
        .mount(&server)
        .await;
    server
}

/// The real Cloud client for the fake, with made-up credentials.
pub fn client(server: &MockServer) -> ConfluenceClient {
    ConfluenceClient::new(ConfluenceSettings {
        root: server.uri(),
        flavor: tag_space::confluence::Flavor::Cloud,
        auth: ConfluenceAuth::Basic {
            email: "bench@acme.test".into(),
            token: Secret::new("bench-token"),
        },
        timeout: Duration::from_secs(60),
        max_retries: 3,
    })
    .expect("client")
}
