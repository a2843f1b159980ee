use std::path::Path;

use super::{Error, Outcome};

pub fn run(_root: &Path, _out: &Path) -> Outcome {
    Err(Error::Usage("snapshot is not implemented yet".into()))
}
