//! Integration tests. Every HTTP peer is a local fake on 127.0.0.1; nothing leaves the machine.

// Shared: the binary as a child with deadlines, fakes, the plan/ownership environment.
mod harness;

// Confluence Cloud v2/v1 and Data Center wire shapes, pagination, retries, errors.
mod confluence;
// Gemini and OpenAI wire shapes, error classification, structured output.
mod llm;
// Local model servers: the structured-output ladder against fakes of each server's behaviour.
mod localmodels;
// A real llama-server with a small model, opt-in (#[ignore]): scripts/local-model.sh.
mod reallocal;
// Pacing, cooldowns, adaptive concurrency and fallback on tokio's paused clock.
mod governor;
// The structured-output ladder's re-asks through the governor, on tokio's paused clock.
mod reask;
// The output budget through the governor: the cap asked, one wider retry, then a split.
mod budget;
// The whole pipeline with in-memory fakes.
mod pipeline;
// The built binary end to end against local fakes: exit codes, output, writes.
mod cli;
// Property tests of the parsers (text, answers, rate limits, taxonomy, prompt); see FUZZING.md.
mod props;
// The state file: classification cache, label ledger, runs; real SQLite in temp dirs.
mod cache;
// The run experience of the binary: Ctrl-C/SIGTERM and exit 130, the run lock, log formats.
mod run;
// A generated Confluence Cloud site of any size (shared with benches/memory.rs).
mod fakesite;
// Fault injection: 429/5xx/timeouts/resets/cut-off bodies from every API; see HARDENING.md.
mod faults;
// The bad-input matrix, prompt injection and secrets in reports; see HARDENING.md.
mod badinput;
// The state file through the binary: SIGKILL and resume, a broken file, cache stats/clear.
mod resume;
// What a first user hit: --sync removals shown everywhere, run history that says how each
// run ended, a total LLM outage that stops the run.
mod endings;
// What a first user hit: .env secrets, --limit, a wrong base URL, state dir, the demo.
mod firstuse;
// A wrong Confluence base URL told apart from a missing space, Cloud and Data Center.
mod baseurl;
// A space key typed in another case: resolved, ambiguous, suggestions (issue 18).
mod spacekey;
// The same through the binary: reports, lock and state carry the real key; cache clear.
mod spacekey_cli;
// A stateful Cloud and Data Center site (shared with benches/census.rs).
mod livesite;
// Who owns a label: a person's label is never removed (kill -9, concurrent edits, two state
// files), and the label census.
mod ownership;
// The batch services (Gemini Batch Mode, OpenAI Batch API) through submit and collect.
mod batch;
// Fakes of both batch services in their documented shapes.
mod batchfake;
// A crash between create and recording: found again, never created twice.
mod batchcrash;
// `tag-space jobs` and `jobs cancel` through the binary.
mod batchcli;
// Real failures through the binary print each cause of their chain once.
mod causes;
// --via batch through app::run: submit, collect, --wait, a stale job, a dry-run collect.
mod batchrun;
// `taxonomy init` and `eval` against fakes that record writes; aliases in the pipeline.
mod evaltax;
// The Confluence site governor, credential check, metadata-first listing (issue 11).
mod pacing;
// `tag-space serve` over real sockets on 127.0.0.1:0, with a fake runner: life cycle, events,
// errors, stop, restart.
mod serve;
// `tag-space serve` with the real pipeline: two spaces under one quota, the real binary's
// SIGTERM, restart and refusal.
mod servecli;
// Several spaces in one run: one governor under one quota, a missing or locked space does not
// stop the others, --all-spaces on Cloud and Data Center, the per-space reports.
mod multispace;
// A Cloud- or Data-Center-shaped site with several spaces (for multispace.rs).
mod multisite;
// The prompt switches (few-shot examples, the reason field) through `eval --demo --llm`.
mod evalprompt;
// Plan files: --dry-run --plan, then apply exactly the plan (issue 15).
mod plan;
// `tag-space apply` writes pages at once, within the site's concurrency, in plan order.
mod plan_parallel;
// The README's "In CI" examples, run as written against the fakes.
mod ci_readme;
