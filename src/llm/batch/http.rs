//! What both batch clients do on the wire: send a request, turn a non-2xx into the
//! interactive client's own [`LlmError`] classification, and build a multipart upload.

use reqwest::header::HeaderMap;

use super::super::{LlmError, wire};
use crate::secret::Secret;

/// The interactive client's classification of a non-2xx answer.
pub(super) type Classify = fn(u16, &HeaderMap, &str, Option<&Secret>) -> LlmError;

/// Sends `request` and returns the headers and body of a 2xx; anything else is classified.
pub(super) async fn send(
    provider: &'static str,
    request: reqwest::RequestBuilder,
    key: Option<&Secret>,
    classify: Classify,
) -> Result<(HeaderMap, String), LlmError> {
    let response = request
        .send()
        .await
        .map_err(|e| wire::transport_error(provider, &e))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|e| wire::transport_error(provider, &e))?;
    if !(200..300).contains(&status) {
        return Err(classify(status, &headers, &body, key));
    }
    Ok((headers, body))
}

/// The lines as one JSONL document (each line ends with `\n`).
pub(super) fn jsonl(lines: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut out, line).expect("a JSON value serialises");
        out.push(b'\n');
    }
    out
}

/// A `multipart/form-data` body with text fields and one file, and its content type.
///
/// Written by hand rather than with reqwest's `multipart` feature: one fixed form, and the
/// feature would rebuild reqwest with a new dependency for these few lines. The boundary is
/// random, and a body that happens to contain it is given another one.
pub(super) fn multipart(
    fields: &[(&str, &str)],
    file_field: &str,
    file_name: &str,
    file_type: &str,
    file: &[u8],
) -> (String, Vec<u8>) {
    let mut boundary = new_boundary();
    while contains(file, boundary.as_bytes()) {
        boundary = new_boundary();
    }
    let mut body = Vec::with_capacity(file.len() + 512);
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{file_name}\"\r\nContent-Type: {file_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn new_boundary() -> String {
    format!("tag-space-{:016x}", rand::random::<u64>())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_has_the_fields_and_the_file_between_boundaries() {
        let (ct, body) = multipart(
            &[("purpose", "batch")],
            "file",
            "in.jsonl",
            "application/jsonl",
            b"{\"a\":1}\n",
        );
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"purpose\"\r\n\r\nbatch\r\n"));
        assert!(text.contains(
            "filename=\"in.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{\"a\":1}\n\r\n"
        ));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }

    #[test]
    fn jsonl_is_one_line_per_value() {
        let v = [
            serde_json::json!({"a": 1}),
            serde_json::json!({"b": "x\ny"}),
        ];
        assert_eq!(jsonl(&v), b"{\"a\":1}\n{\"b\":\"x\\ny\"}\n");
    }
}
