//! `tag-space jobs` and `tag-space jobs cancel ID`: the edge (with the rest of `app`, the
//! composition root), so `anyhow` is fine here.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use crate::backfill::{cancel_job, unix_now, write_jobs};
use crate::cache::{JobRecord, Store, StoreOptions};
use crate::cli::{Args, JobsAction, JobsArgs};
use crate::config::Config;
use crate::llm::batch::{GeminiBatch, OpenAiBatch};
use crate::taxonomy::Taxonomy;

/// Lists the recorded jobs, or cancels one.
pub fn jobs_command(args: &Args, cmd: &JobsArgs) -> anyhow::Result<()> {
    let mut args = args.clone();
    if cmd.cache_path.is_some() {
        args.cache_path.clone_from(&cmd.cache_path);
    }
    let settings = crate::config::cache_settings(&args)?;
    let path = settings.path.clone().context(
        "no state file: set TAG_SPACE_CACHE_PATH (or --cache-path), XDG_CACHE_HOME or HOME",
    )?;
    let mut out = std::io::stdout().lock();
    if !path.exists() {
        writeln!(
            out,
            "no state file at {} yet: no batch job recorded",
            path.display()
        )?;
        return Ok(());
    }
    let one_line = |e: crate::cache::CacheError| anyhow::anyhow!("{e}");
    let store = Store::open(&path, StoreOptions::from_settings(&settings)).map_err(one_line)?;
    match &cmd.action {
        None => {
            let jobs = store.jobs(cmd.space.as_deref()).map_err(one_line)?;
            write_jobs(&mut out, &jobs, unix_now() as i64)?;
        }
        Some(JobsAction::Cancel { id }) => {
            let job = store.job(id).map_err(one_line)?.with_context(|| {
                format!(
                    "no batch job {id} in {}: see `tag-space jobs`",
                    path.display()
                )
            })?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let line = runtime.block_on(cancel(&args, &store, &job))?;
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// Cancels through the job's own provider and model, with the provider settings a run of
/// the job's space would use.
async fn cancel(args: &Args, store: &Store, job: &JobRecord) -> anyhow::Result<String> {
    let mut args = args.clone();
    args.command = None;
    args.space = vec![job.spec.space.clone()];
    let config = Config::load(&args)?;
    // The request builder is not used by a cancel; the built-in taxonomy stands in.
    let taxonomy = Arc::new(Taxonomy::embedded());
    let missing = |name: &str| {
        anyhow::anyhow!(
            "job {} was made with {name}, which is not configured: set its API key as for a run",
            job.id
        )
    };
    let line = match job.spec.provider.as_str() {
        "gemini" => {
            let mut s = config.gemini.clone().ok_or_else(|| missing("gemini"))?;
            s.model.clone_from(&job.spec.model);
            cancel_job(&GeminiBatch::new(s, taxonomy)?, store, job).await?
        }
        "openai" => {
            let mut s = config.openai.clone().ok_or_else(|| missing("openai"))?;
            s.model.clone_from(&job.spec.model);
            cancel_job(&OpenAiBatch::new(s, taxonomy)?, store, job).await?
        }
        other => anyhow::bail!("job {} has an unknown provider {other:?}", job.id),
    };
    Ok(line)
}
