//! The env file (`.env` in the current directory, or the one named by `--env-file` /
//! `TAG_SPACE_ENV_FILE`): `NAME=value` lines that fill in what the environment does not set.
//!
//! A broken file must never print a value: the file holds the API keys. dotenvy's parse error
//! quotes the rest of the file from the broken statement on (with an unclosed quote, every key
//! below it) and gives a character offset, so it is never shown; the error here names the file,
//! the line number and the variable only.

use std::path::{Path, PathBuf};

/// Which env file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `./.env`, if there is one.
    Default,
    /// Named by `--env-file` or `TAG_SPACE_ENV_FILE`: it must exist.
    Named(PathBuf),
}

impl Source {
    /// `--env-file`, else `TAG_SPACE_ENV_FILE` (from the process environment: the file
    /// cannot name itself), else `./.env`.
    pub fn pick(flag: Option<&Path>, variable: Option<String>) -> Self {
        match (flag, variable.filter(|v| !v.trim().is_empty())) {
            (Some(p), _) => Self::Named(p.to_path_buf()),
            (None, Some(v)) => Self::Named(PathBuf::from(v.trim())),
            (None, None) => Self::Default,
        }
    }
}

/// The env file cannot be used. No variant carries a value from the file.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error(
        "{} line {line}: cannot parse {} (an unclosed quote or a stray character?); fix that line, the value is not shown here",
        path.display(),
        name.as_deref().map_or_else(|| "this line".to_string(), |n| format!("the value of {n}"))
    )]
    Parse {
        path: PathBuf,
        line: usize,
        name: Option<String>,
    },
    #[error(
        "cannot read the env file {} ({reason}): check the path given with --env-file or TAG_SPACE_ENV_FILE",
        path.display()
    )]
    Unreadable { path: PathBuf, reason: String },
}

/// Reads the variables of `source`; a missing default `./.env` is no variables.
pub fn read(source: &Source) -> Result<Vec<(String, String)>, EnvFileError> {
    let path = match source {
        Source::Default => Path::new(".env"),
        Source::Named(p) => p.as_path(),
    };
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && *source == Source::Default => {
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(EnvFileError::Unreadable {
                path: path.to_path_buf(),
                reason: io_reason(&e),
            });
        }
    };
    parse(path, &text)
}

/// Parses the text of an env file (dotenvy's syntax: quotes, `export`, comments).
pub fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    dotenvy::from_read_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            dotenvy::Error::LineParse(statement, _offset) => {
                let (line, name) = locate(text, &statement);
                EnvFileError::Parse {
                    path: path.to_path_buf(),
                    line,
                    name,
                }
            }
            // Reading from memory fails only on a parse error; say something safe anyway.
            _ => EnvFileError::Unreadable {
                path: path.to_path_buf(),
                reason: "not a readable env file".into(),
            },
        })
}

/// The 1-based line where the failed statement starts, and the variable it sets. dotenvy
/// hands back the statement's text (from its first line on), never where it is.
fn locate(text: &str, statement: &str) -> (usize, Option<String>) {
    let first = statement.lines().next().unwrap_or_default();
    let at = text
        .find(statement)
        .or_else(|| text.find(first).filter(|_| !first.is_empty()));
    let line = at.map_or(0, |at| text[..at].matches('\n').count() + 1);
    // An unknown position is reported as the last line: that is where dotenvy gave up.
    let line = if line == 0 {
        text.lines().count().max(1)
    } else {
        line
    };
    (line, variable_name(first))
}

/// `NAME` from `NAME=...` or `export NAME=...`, when it looks like a variable name.
fn variable_name(line: &str) -> Option<String> {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let name: String = line
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    let rest = line[name.len()..].trim_start();
    (!name.is_empty() && rest.starts_with('=')).then_some(name)
}

/// The OS error without its "(os error N)" suffix: the reason once, in words.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "it is a directory".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ATATT3xFfGF0-made-up-token-value-9f2c";
    const GEMINI: &str = "AIzaSyD-made-up-gemini-key-4b7e";
    const OPENAI: &str = "sk-proj-made-up-openai-key-81d0";

    #[test]
    fn an_unclosed_quote_names_its_line_and_variable_never_a_value() {
        let text = format!(
            "# tag-space\nCONFLUENCE_BASE_URL=https://acme.atlassian.net/wiki\n\nCONFLUENCE_EMAIL=bot@acme.test\nCONFLUENCE_API_TOKEN=\"{TOKEN}\nGEMINI_API_KEY={GEMINI}\nOPENAI_API_KEY={OPENAI}\n"
        );
        let e = parse(Path::new(".env"), &text).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, EnvFileError::Parse { line: 5, name: Some(n), .. } if n == "CONFLUENCE_API_TOKEN"),
            "{e:?}"
        );
        assert!(msg.starts_with(".env line 5: cannot parse the value of CONFLUENCE_API_TOKEN"));
        for secret in [TOKEN, GEMINI, OPENAI, "ATATT", "AIza", "sk-proj"] {
            assert!(!msg.contains(secret), "{msg}");
            assert!(!format!("{e:?}").contains(secret), "{e:?}");
        }
    }

    #[test]
    fn a_bad_line_in_the_middle_is_found_with_export_and_spaces() {
        let text = format!("A=1\n  export OPENAI_API_KEY = {OPENAI}\\\"x'\nB=2\n");
        // Whatever dotenvy makes of it, a failure names line 2 and OPENAI_API_KEY.
        if let Err(e) = parse(Path::new("x.env"), &text) {
            let msg = e.to_string();
            assert!(msg.starts_with("x.env line 2:"), "{msg}");
            assert!(!msg.contains(OPENAI), "{msg}");
        }
        assert_eq!(
            variable_name("  export OPENAI_API_KEY = x"),
            Some("OPENAI_API_KEY".into())
        );
        assert_eq!(variable_name("\"quoted"), None);
    }

    #[test]
    fn a_good_file_parses_and_the_source_is_picked_flag_first() {
        let vars = parse(Path::new(".env"), "A=1\n# c\nexport B=\"two words\"\n").unwrap();
        assert_eq!(
            vars,
            [("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(
            Source::pick(Some(Path::new("f")), Some("g".into())),
            Source::Named("f".into())
        );
        assert_eq!(
            Source::pick(None, Some("g".into())),
            Source::Named("g".into())
        );
        assert_eq!(Source::pick(None, Some(" ".into())), Source::Default);
    }

    #[test]
    fn a_named_file_must_exist_the_default_one_need_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("cron.env");
        let e = read(&Source::Named(missing.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cron.env") && e.contains("no such file"), "{e}");
        assert!(!e.contains("os error"), "{e}");
    }
}
