//! Telling "this is not Confluence at this URL" from "Confluence says no such space".
//!
//! A base URL without its Data Center context path (or pointing at the wrong host) usually
//! gets a web server's HTML 404 page, or a 200 HTML page (a portal, a login form). Read as
//! "space not found", that sends a person to check a space key that was right all along. The
//! content type and the shape of the body tell the two apart.

use super::Flavor;

/// `application/json` or a `+json` type (lowercase, parameters already removed).
pub(super) fn is_json(content_type: &str) -> bool {
    content_type == "application/json" || content_type.ends_with("+json")
}

/// What the body looks like, in a few words, for the message.
pub(super) fn describe_body(body: &str) -> &'static str {
    let t = body.trim_start();
    if t.is_empty() {
        "with an empty body"
    } else if t.starts_with('<') {
        "with an HTML page"
    } else if serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok() {
        "with JSON that is not a Confluence answer"
    } else {
        "with a body that is not JSON"
    }
}

/// JSON that broke off on the way (a reset, a proxy timeout): the server may be Confluence.
pub(super) fn is_truncated(body: &str) -> bool {
    let t = body.trim_start();
    (t.starts_with('{') || t.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(t).is_err_and(|e| e.is_eof())
}

/// Where a right base URL usually differs from a wrong one.
pub(super) fn base_url_hint(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Cloud => {
            "for Confluence Cloud it is the site address with /wiki, e.g. https://acme.atlassian.net/wiki"
        }
        Flavor::DataCenter => {
            "a Data Center site often lives under a context path, e.g. https://confluence.acme.com/confluence (the part of a page's address before /display/ or /pages/)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_told_apart() {
        assert_eq!(describe_body("<!DOCTYPE html><html>"), "with an HTML page");
        assert_eq!(describe_body(""), "with an empty body");
        assert_eq!(
            describe_body(r#"{"status":"ok"}"#),
            "with JSON that is not a Confluence answer"
        );
        assert_eq!(describe_body("Not Found"), "with a body that is not JSON");
        assert!(is_truncated(r#"{"results":[{"id":"1""#));
        assert!(!is_truncated("<html>"));
        assert!(is_json("application/json") && is_json("application/problem+json"));
        assert!(!is_json("text/html"));
    }
}
