//! The structured-output ladder: which way of asking for JSON a server actually honours.
//!
//! OpenAI-compatible servers differ exactly here, and several fail silently (reference §5,
//! issue 14): llama-cpp-python answers `json_schema` with HTTP 500, Ollama drops a schema it
//! does not understand and answers prose, LM Studio refuses `json_object` with a 400, vLLM
//! answers a schema its grammar engine cannot compile with a vague 400. A status code alone is
//! therefore not a reliable signal; tag-space's own check of every answer is. So each
//! (base URL, model) climbs down a [`Ladder`] of rungs, best first:
//!
//! | OpenAI-compatible | Gemini |
//! |---|---|
//! | `json_schema` (strict) | `responseJsonSchema` (JSON Schema) |
//! | `json_object` with the schema beside it | `responseSchema` (OpenAPI subset) |
//! | `prompt`: no `response_format`, the schema written into the prompt | |
//!
//! A call steps down (and asks again, at most once per rung) when the server refused the
//! format ([`format_refused`]), or when the answer shows the schema was ignored
//! ([`schema_ignored`]: free text, keys outside the schema). A rung that has answered well
//! (in this run, or in an earlier one: the working rung is kept in the state file) is trusted
//! more: it needs a refusal that names the format, or two schema-ignoring answers in a row.
//! A 429, a timeout or a connection error never moves the ladder. A rung forced by
//! `TAG_SPACE_OPENAI_STRUCTURED` never moves.
//!
//! Every re-ask is governed. [`ask_once`] sends one request; a step down comes back as
//! [`Unsettled::Reask`], which is not a failure: the governor (`crate::governor`) admits the re-ask
//! as a new request (a concurrency slot, its RPM token and TPM budget, in its metrics) with no
//! backoff, no retry budget spent, no circuit-breaker strike and no fallback. Asking again
//! inside one admitted request would send up to three requests for one RPM token: the 429
//! storm the governor exists to avoid. [`settle`] asks again at once, for a client used
//! without a governor (tests, tools).

use std::sync::Mutex;

use serde_json::Value;

use super::describe::DESCRIPTION_FIELD;
use super::schema::{REASON_FIELD, TAGS_FIELD};
use super::{LlmError, LlmErrorKind, PageText};
use crate::taxonomy::Taxonomy;

mod ask;

pub use ask::{Climb, Reask, Sent, Unsettled, ask_once, settle};

/// The OpenAI-compatible rungs, best first.
pub const OPENAI_RUNGS: &[&str] = &["json_schema", "json_object", "prompt"];
/// Gemini's rungs, best first.
pub const GEMINI_RUNGS: &[&str] = &["response_json_schema", "response_schema"];

/// Schema-ignoring answers in a row that move a trusted rung down.
const TRUSTED_STRIKES: u32 = 2;

/// `TAG_SPACE_OPENAI_STRUCTURED`: find the rung (`auto`), or use this one and never move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StructuredMode {
    #[default]
    Auto,
    /// An index into [`OPENAI_RUNGS`].
    Forced(usize),
}

impl std::str::FromStr for StructuredMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        if s == "auto" {
            return Ok(Self::Auto);
        }
        OPENAI_RUNGS
            .iter()
            .position(|r| *r == s)
            .map(Self::Forced)
            .ok_or_else(|| format!("'{s}' is not one of auto, json_schema, json_object, prompt"))
    }
}

/// One endpoint's position on its ladder, shared by every call in flight.
#[derive(Debug)]
pub struct Ladder {
    rungs: &'static [&'static str],
    /// Answers that ignore the schema move it down (false: only refusals do).
    steps_on_ignored: bool,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    at: usize,
    forced: bool,
    /// The current rung has produced an answer that followed the schema.
    trusted: bool,
    strikes: u32,
}

impl Ladder {
    /// Starts at `start` (an index into `rungs`); `forced` never moves.
    pub fn new(rungs: &'static [&'static str], start: usize, forced: bool) -> Self {
        Self {
            rungs,
            steps_on_ignored: true,
            state: Mutex::new(State {
                at: start.min(rungs.len() - 1),
                forced,
                trusted: forced,
                strikes: 0,
            }),
        }
    }

    /// Only a refused format moves this ladder, never an answer: for Gemini, which refuses
    /// a field it does not know rather than ignoring it, so that an answer that ignores the
    /// schema is the model's error, not the form's.
    pub fn refusals_only(mut self) -> Self {
        self.steps_on_ignored = false;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rung to ask at now.
    pub fn current(&self) -> usize {
        self.lock().at
    }

    /// The name of a rung.
    pub fn name(&self, rung: usize) -> &'static str {
        self.rungs[rung]
    }

    /// The current rung's name.
    pub fn current_name(&self) -> &'static str {
        self.name(self.current())
    }

    /// Whether the current rung has answered well (and so is worth remembering).
    pub fn is_trusted(&self) -> bool {
        self.lock().trusted
    }

    /// Starts at the rung an earlier run found working, trusted. Ignored when forced, for an
    /// unknown name, or when this run has already moved.
    pub fn resume_at(&self, name: &str) {
        let Some(i) = self.rungs.iter().position(|r| *r == name) else {
            return;
        };
        let mut s = self.lock();
        if !s.forced && !s.trusted && s.strikes == 0 {
            s.at = i;
            s.trusted = true;
        }
    }

    /// Whether a failed call at `rung` should step down, given the error.
    pub fn refused(&self, rung: usize, err: &LlmError) -> bool {
        let s = self.lock();
        !s.forced && rung + 1 < self.rungs.len() && format_refused(err, s.trusted && s.at == rung)
    }

    /// Moves below `from` (unless another call already did). True when the ladder is now
    /// below `from`: ask again at [`Ladder::current`].
    pub fn step_down(&self, from: usize, provider: &str, why: &str) -> bool {
        let mut s = self.lock();
        if s.forced {
            return false;
        }
        if s.at == from && from + 1 < self.rungs.len() {
            s.at = from + 1;
            s.trusted = false;
            s.strikes = 0;
            tracing::warn!(
                provider,
                from = self.rungs[from],
                to = self.rungs[s.at],
                why,
                "structured output: stepping down"
            );
        }
        s.at > from
    }

    /// Goes back to `rung` after a step down that did not help (the lower rung failed the
    /// same way, so the format was not the cause).
    pub fn restore(&self, rung: usize, was_trusted: bool) {
        let mut s = self.lock();
        if !s.forced {
            s.at = rung;
            s.trusted = was_trusted;
            s.strikes = 0;
        }
    }

    /// An answer at `rung` followed the schema.
    pub fn on_followed(&self, rung: usize) {
        let mut s = self.lock();
        if s.at == rung {
            s.trusted = true;
            s.strikes = 0;
        }
    }

    /// An answer at `rung` ignored the schema. True when the ladder is now below `rung` (ask
    /// again there); false to keep the answer (it is still validated) at this rung.
    pub fn on_ignored(&self, rung: usize, provider: &str, why: &str) -> bool {
        {
            let mut s = self.lock();
            if !self.steps_on_ignored {
                return false;
            }
            if s.forced || s.at < rung || rung + 1 >= self.rungs.len() {
                return s.at > rung;
            }
            if s.at == rung {
                s.strikes += 1;
                if s.trusted && s.strikes < TRUSTED_STRIKES {
                    return false;
                }
            }
        }
        self.step_down(rung, provider, why)
    }
}

/// A failed call whose answer shows the response format was refused: a 400, 422 or 500 whose
/// message names the format, or, on a rung not yet trusted, any 400 or 422 (vLLM's vague 400
/// for a schema it cannot compile). Never a 429, a timeout or a connection error.
pub fn format_refused(err: &LlmError, trusted: bool) -> bool {
    let Some(status) = err.status else {
        return false;
    };
    let kinds_ok = matches!(
        err.kind,
        LlmErrorKind::BadRequest | LlmErrorKind::Overloaded { .. }
    );
    if !kinds_ok || !matches!(status, 400 | 422 | 500) {
        return false;
    }
    let d = err.detail.to_ascii_lowercase();
    let names_format = [
        "response_format",
        "json_schema",
        "json_object",
        "responsejsonschema",
        "response_json_schema",
        "schema",
        "grammar",
        "guided",
        "structured output",
    ]
    .iter()
    .any(|w| d.contains(w));
    names_format || (!trusted && matches!(status, 400 | 422))
}

/// Why an answer shows the schema was ignored, if it does: free text (no JSON object), or
/// JSON whose keys are outside the schema (an id not in the batch, a page that is not an
/// object of categories, a category the taxonomy does not have). Missing pages or unknown
/// tags are not counted: they are ordinary model errors, handled by validation.
pub fn schema_ignored(content: &str, batch: &[PageText], taxonomy: &Taxonomy) -> Option<String> {
    let Some(value) = super::prompt::first_json_value(content) else {
        return Some("the answer is free text, not JSON".into());
    };
    let Value::Object(map) = value else {
        return Some("the answer is not a JSON object".into());
    };
    let categories: Vec<&str> = taxonomy
        .categories()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for (id, page) in &map {
        if !batch.iter().any(|p| &p.id == id) {
            return Some(format!("key '{}' is not a page id of the batch", short(id)));
        }
        let Value::Object(page) = page else {
            return Some(format!(
                "page '{}' is not an object of categories",
                short(id)
            ));
        };
        // With the reason switch a page is `{"reason": "...", "tags": {<categories>}}`.
        let page = match page.get(TAGS_FIELD) {
            Some(Value::Object(tags))
                if page.keys().all(|k| k == REASON_FIELD || k == TAGS_FIELD) =>
            {
                tags
            }
            _ => page,
        };
        if let Some(k) = page.keys().find(|k| {
            // A description request's answer (`taxonomy init --describe`) has this key.
            ![REASON_FIELD, DESCRIPTION_FIELD].contains(&k.as_str())
                && !categories.contains(&k.as_str())
        }) {
            return Some(format!(
                "page '{}' has key '{}', not a category",
                short(id),
                short(k)
            ));
        }
    }
    None
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::prompt::tests::{page, taxonomy};

    fn err(kind: LlmErrorKind, status: u16, detail: &str) -> LlmError {
        LlmError::new("openai", kind, Some(status), detail)
    }

    #[test]
    fn refusals_are_told_from_overload_and_rate_limits() {
        let over = LlmErrorKind::Overloaded { retry_after: None };
        // llama-cpp-python: a 500 naming response_format.
        let e = err(
            over,
            500,
            "1 validation error: response_format.type Input should be 'text' or 'json_object'",
        );
        assert!(format_refused(&e, true));
        // A plain 500 is an overloaded server, trusted rung or not.
        assert!(!format_refused(&err(over, 500, "boom"), false));
        // vLLM's vague 400: only on a rung not yet trusted.
        let vague = err(LlmErrorKind::BadRequest, 400, "Invalid request");
        assert!(format_refused(&vague, false));
        assert!(!format_refused(&vague, true));
        // LM Studio names the field.
        let lm = err(
            LlmErrorKind::BadRequest,
            400,
            "'response_format.type' must be 'json_schema' or 'text'",
        );
        assert!(format_refused(&lm, true));
        for kind in [
            LlmErrorKind::RateLimited { retry_after: None },
            LlmErrorKind::Timeout,
            LlmErrorKind::Transport,
            LlmErrorKind::QuotaExhausted,
            LlmErrorKind::Auth,
        ] {
            assert!(
                !format_refused(&err(kind, 429, "json_schema"), false),
                "{kind:?}"
            );
        }
        assert!(!format_refused(
            &LlmError::new("openai", LlmErrorKind::Transport, None, "schema"),
            false
        ));
    }

    #[test]
    fn ignored_schemas_are_recognised() {
        let t = taxonomy();
        let batch = [page("1", "a", "x"), page("2", "b", "y")];
        assert_eq!(
            schema_ignored(r#"{"1": {"tool": ["git"]}, "2": {}}"#, &batch, &t),
            None
        );
        assert_eq!(
            schema_ignored("```json\n{\"1\": {\"type\": []}}\n```", &batch, &t),
            None
        );
        for bad in [
            "Sure! Page 1 is about git.",
            r#"["git"]"#,
            r#"{"pages": {"1": {"tool": ["git"]}}}"#,
            r#"{"1": ["git"]}"#,
            r#"{"1": {"tools": ["git"]}}"#,
        ] {
            assert!(schema_ignored(bad, &batch, &t).is_some(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_rung_steps_down_at_once_a_trusted_one_after_two_strikes() {
        let l = Ladder::new(OPENAI_RUNGS, 0, false);
        assert!(l.on_ignored(0, "openai", "prose"));
        assert_eq!(l.current_name(), "json_object");
        l.on_followed(1);
        assert!(l.is_trusted());
        assert!(!l.on_ignored(1, "openai", "prose"));
        assert!(l.on_ignored(1, "openai", "prose"));
        assert_eq!(l.current_name(), "prompt");
        assert!(
            !Ladder::new(GEMINI_RUNGS, 0, false)
                .refusals_only()
                .on_ignored(0, "gemini", "prose")
        );
        // The bottom never moves; a stale call from a higher rung asks again below.
        assert!(!l.on_ignored(2, "openai", "prose"));
        assert!(l.on_ignored(0, "openai", "prose"));
        assert_eq!(l.current(), 2);
    }

    #[test]
    fn a_forced_rung_never_moves_and_a_remembered_one_is_trusted() {
        let l = Ladder::new(OPENAI_RUNGS, 1, true);
        let e = err(LlmErrorKind::BadRequest, 400, "json_object not supported");
        assert!(!l.refused(1, &e));
        assert!(!l.on_ignored(1, "openai", "prose"));
        assert!(!l.step_down(1, "openai", "x"));
        l.resume_at("prompt");
        assert_eq!(l.current_name(), "json_object");

        let l = Ladder::new(OPENAI_RUNGS, 0, false);
        l.resume_at("json_object");
        assert_eq!(l.current(), 1);
        assert!(l.is_trusted());
        assert!(!l.refused(1, &err(LlmErrorKind::BadRequest, 400, "Invalid request")));
        l.resume_at("nonsense");
        assert_eq!(l.current(), 1);
    }

    #[test]
    fn modes_parse() {
        assert_eq!("auto".parse(), Ok(StructuredMode::Auto));
        assert_eq!(" JSON_OBJECT".parse(), Ok(StructuredMode::Forced(1)));
        assert_eq!("prompt".parse(), Ok(StructuredMode::Forced(2)));
        assert!("grammar".parse::<StructuredMode>().is_err());
    }
}
