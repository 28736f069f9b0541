//! The environment of the plan and ownership tests: a stateful Cloud or Data Center site
//! of three pages (`livesite.rs`), an LLM that picks the first tag of each category, and a
//! temp dir holding three taxonomies: `full` (`type-howto`, `status-draft`), `reduced`
//! (`type-howto`) and `alt` (`type-howto`, `tool-jira`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use wiremock::MockServer;

use super::BIN;
use crate::livesite::{FirstTags, Flavor, LiveSite};

pub const PAGES: u64 = 3;

fn taxonomy(categories: &[(&str, &str)]) -> String {
    let mut t = String::from("max_labels_per_page = 6\n");
    for (cat, tag) in categories {
        t.push_str(&format!(
            "\n[[category]]\nname = \"{cat}\"\ndescription = \"The {cat}.\"\nmax_per_page = 1\n\n[[category.tag]]\nname = \"{tag}\"\ndescription = \"A {cat}.\"\n"
        ));
    }
    t
}

pub struct Env {
    pub site: LiveSite,
    pub confluence: MockServer,
    pub llm: MockServer,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// The site of `flavor` with [`PAGES`] pages, its LLM answering after `llm_delay`.
    pub async fn new(flavor: Flavor, llm_delay: Duration) -> Self {
        Self::with_pages(flavor, PAGES, llm_delay).await
    }

    /// As [`Env::new`], with `pages` pages.
    pub async fn with_pages(flavor: Flavor, pages: u64, llm_delay: Duration) -> Self {
        let site = LiveSite::new(flavor, pages, 250);
        let confluence = site.serve().await;
        let llm = FirstTags::serve(&site, llm_delay).await;
        let dir = tempfile::tempdir().unwrap();
        for (name, cats) in [
            (
                "full",
                &[("type", "type-howto"), ("status", "status-draft")][..],
            ),
            ("reduced", &[("type", "type-howto")][..]),
            ("alt", &[("type", "type-howto"), ("tool", "tool-jira")][..]),
        ] {
            std::fs::write(dir.path().join(format!("{name}.toml")), taxonomy(cats)).unwrap();
        }
        Self {
            site,
            confluence,
            llm,
            dir,
        }
    }

    /// The environment a run (or `apply`) reads: the fakes, the state file, the lock dir.
    pub fn envs(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("NO_COLOR", "1".to_string()),
            ("CONFLUENCE_BASE_URL", self.site.base_url(&self.confluence)),
            ("OPENAI_API_KEY", "k".into()),
            ("OPENAI_BASE_URL", format!("{}/v1", self.llm.uri())),
            (
                "TAG_SPACE_CACHE_PATH",
                self.path("state.db").display().to_string(),
            ),
            (
                "TAG_SPACE_LOCK_DIR",
                self.path("locks").display().to_string(),
            ),
        ];
        match self.site.flavor {
            Flavor::Cloud => {
                v.push(("CONFLUENCE_EMAIL", "bot@acme.test".into()));
                v.push(("CONFLUENCE_API_TOKEN", "tok".into()));
            }
            Flavor::Dc => v.push(("CONFLUENCE_PAT", "pat".into())),
        }
        v
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `tag-space <args> --taxonomy <taxonomy>.toml` in the temp dir with [`Env::envs`].
    pub fn tag_space(&self, taxonomy: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--taxonomy")
            .arg(format!("{taxonomy}.toml"))
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.envs())
            .stdin(Stdio::null());
        cmd
    }

    pub fn has(&self, page: u64, label: &str) -> bool {
        self.site.state().has(page, label)
    }
}
