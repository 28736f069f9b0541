//! What the run shows: the `--report` files, the stdout format and the log format.

use super::ConfigError;
use crate::cli::{Args, FormatArg, LogFormatArg};
use crate::report::logging::LogFormat;
use crate::report::{OutputFormat, ReportFile, ReportKind};

/// Each `--report` file, its kind from its extension.
pub(super) fn report_files(args: &Args) -> Result<Vec<ReportFile>, ConfigError> {
    args.report
        .iter()
        .map(|path| {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            let kind = match ext.as_deref() {
                Some("json") => ReportKind::Json,
                Some("md" | "markdown") => ReportKind::Markdown,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "--report".into(),
                        value: path.display().to_string(),
                        reason: "the file name must end in .json or .md".into(),
                        example: "report.json",
                    });
                }
            };
            Ok(ReportFile {
                path: path.clone(),
                kind,
            })
        })
        .collect()
}

pub(super) fn output_format(arg: FormatArg) -> OutputFormat {
    match arg {
        FormatArg::Table => OutputFormat::Table,
        FormatArg::Json => OutputFormat::Json,
    }
}

pub(super) fn log_format(arg: LogFormatArg) -> LogFormat {
    match arg {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    }
}
