//! The governor: pacing, cooldowns, adaptive concurrency, retries and fallback. STUB.
