//! An OpenAI-compatible LLM for the stateful site of `livesite.rs`: it answers every page
//! with the first tag of each category, and does the site's scheduled person actions on its
//! first request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::livesite::{LiveSite, State};

/// An OpenAI-compatible LLM that picks the first tag of each category for every page of the
/// request (from the request's JSON schema), after `delay`. On its first request it performs
/// the site's [`State::on_classify`] actions: a person working while the run classifies.
pub struct FirstTags {
    pub delay: Duration,
    pub site: Arc<Mutex<State>>,
    pub asked: Arc<Mutex<u64>>,
}

impl FirstTags {
    pub async fn serve(site: &LiveSite, delay: Duration) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path("/v1/chat/completions"))
            .respond_with(FirstTags {
                delay,
                site: site.state.clone(),
                asked: Arc::default(),
            })
            .mount(&server)
            .await;
        server
    }
}

impl Respond for FirstTags {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        {
            let mut st = self.site.lock().unwrap();
            st.count("llm");
            for p in std::mem::take(&mut st.on_classify) {
                st.apply(&p);
            }
        }
        *self.asked.lock().unwrap() += 1;
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        // The per-page object is under $defs: resolve the references first.
        let schema =
            &tag_space::llm::schema::inline_refs(&body["response_format"]["json_schema"]["schema"]);
        let mut answer = serde_json::Map::new();
        for (id, page) in schema["properties"].as_object().into_iter().flatten() {
            let mut cats = serde_json::Map::new();
            for (cat, s) in page["properties"].as_object().into_iter().flatten() {
                let first = s["items"]["enum"][0].clone();
                cats.insert(cat.clone(), json!([first]));
            }
            answer.insert(id.clone(), Value::Object(cats));
        }
        ResponseTemplate::new(200)
            .set_delay(self.delay)
            .set_body_json(json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant",
                    "content": Value::Object(answer).to_string(), "refusal": null},
                    "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
            }))
    }
}
