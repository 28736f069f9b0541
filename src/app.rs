//! Composition root. TEMPORARY until the providers and governor land.
use crate::cli::Args;
use crate::report::Summary;

pub async fn run(_args: Args) -> anyhow::Result<Summary> {
    anyhow::bail!("not wired yet")
}
