use std::path::PathBuf;

use super::{Error, Outcome, OutputFormat, Rules};

pub struct CheckOptions {
    pub source: PathBuf,
    pub target: PathBuf,
    pub uuid: String,
    pub rules: Rules,
    pub both_ways: bool,
    pub output: OutputFormat,
}

pub fn run(_o: &CheckOptions) -> Outcome {
    Err(Error::Usage("check is not implemented yet".into()))
}
