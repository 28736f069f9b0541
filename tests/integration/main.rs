//! Integration tests. Every HTTP peer is a local fake on 127.0.0.1; nothing leaves the machine.

// Confluence Cloud v2/v1 and Data Center wire shapes, pagination, retries, errors.
mod confluence;
// Gemini and OpenAI wire shapes, error classification, structured output.
mod llm;
// Pacing, cooldowns, adaptive concurrency and fallback on tokio's paused clock.
mod governor;
// The whole pipeline with in-memory fakes.
mod pipeline;
// The built binary end to end against local fakes: exit codes, output, writes.
mod cli;
// Property tests of the parsers (text, answers, rate limits, taxonomy, prompt); see FUZZING.md.
mod props;
// The state file: classification cache, label ledger, runs; real SQLite in temp dirs.
mod cache;
// The state file through the binary: SIGKILL and resume, a broken file, cache stats/clear.
mod resume;
