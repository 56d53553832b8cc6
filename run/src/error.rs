//! The run tool's error type: each variant says what went wrong and what to do about it.
//! A failed boot is not an error: that is a [`crate::watch::Verdict`].

use std::path::PathBuf;
use std::process::ExitStatus;

use crate::fetch::FetchError;
use crate::image::elf32::ElfError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {problem}", path.display())]
    Scenario { path: PathBuf, problem: String },

    #[error("no scenario `{name}` in {}; `cargo run -p run -- list` shows them", dir.display())]
    UnknownScenario { name: String, dir: PathBuf },

    #[error("could not {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "could not start `{tool}`: {source} (scripts/setup.sh installs what the run tool needs)"
    )]
    ToolMissing {
        tool: String,
        source: std::io::Error,
    },

    #[error("`{command}` failed ({status}){}", if output.is_empty() { String::new() } else { format!(":\n{output}") })]
    CommandFailed {
        command: String,
        status: ExitStatus,
        output: String,
    },

    #[error("cargo metadata: {0}")]
    Metadata(String),

    #[error("{} does not exist; {hint}", path.display())]
    MissingArtifact { path: PathBuf, hint: String },

    #[error("kernel {}: {problem}", path.display())]
    Kernel { path: PathBuf, problem: ElfError },

    #[error("fetch = \"debian-kernel\": {0}")]
    Fetch(#[from] FetchError),

    #[error("[initramfs]: {problem}")]
    Initramfs { problem: String },

    #[error("{0}")]
    Usage(String),
}
