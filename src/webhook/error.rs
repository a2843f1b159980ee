//! How the webhook server fails to start.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("serving certificate: {0}")]
    Certificate(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
