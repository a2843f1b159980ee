//! What each subcommand does. `main.rs` parses arguments and calls in here.

pub mod agent;
pub mod check;
pub mod controller;
pub mod crd;
pub mod inventory;
pub mod sim;
pub mod snapshot;
pub mod tree;

use std::process::ExitCode;

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rules {
    Auto,
    V1,
    Latest,
}

/// Any failure of a subcommand: printed on stderr, exit code 2.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Sysfs(#[from] crate::sysfs::Error),
    #[error(transparent)]
    Sim(#[from] crate::sim::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

/// Exit code of a successful run (0, or 1 for "incompatible" / "not as desired").
pub type Outcome = Result<u8, Error>;

pub fn exit(result: Outcome) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cryptopass: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRYPTOPASS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
