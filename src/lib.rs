//! tag-space: put good labels on every page of a Confluence space.
//!
//! One run is a pipeline:
//!
//! ```text
//! config ─► confluence page stream ─► text extraction ─► micro-batcher
//!        ─► governor (pacing, cooldowns, adaptive concurrency)
//!        ─► Gemini, falling back to OpenAI ─► validation ─► label writes ─► summary
//! ```
//!
//! The seams are traits so that each stage is tested on its own:
//! [`confluence::PageSource`] (Confluence Cloud, Data Center, or the bundled demo space) and
//! [`llm::Provider`] (Gemini, OpenAI-compatible, the keyword `rules` provider, and the
//! wrappers that add pacing and fallback). Only `report` and `main.rs` write to the terminal;
//! only `config` reads the environment, and only the composition root (`app`, with
//! `main.rs`) reads the resolved [`config::Config`]: every other module owns its settings type.

pub mod app;
pub mod backfill;
pub mod batch;
pub mod cache;
pub mod cli;
pub mod config;
pub mod confluence;
pub mod demo;
pub mod ending;
pub mod envfile;
pub mod eval;
pub mod events;
pub mod governor;
pub mod http;
pub mod llm;
pub mod lock;
pub mod observe;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod retry;
pub mod secret;
pub mod serve;
pub mod signals;
pub mod taxonomy;
pub mod text;
