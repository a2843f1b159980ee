use std::path::Path;

use super::{Error, Outcome};
use crate::sim::Profile;

pub fn dump(_machine: &Path, _profile: Option<Profile>, _dir: &Path) -> Outcome {
    Err(Error::Usage("sim dump is not implemented yet".into()))
}

pub fn mount(_machine: &Path, _profile: Option<Profile>, _control: Option<&Path>, _dir: &Path) -> Outcome {
    Err(Error::Usage("sim mount is not implemented yet".into()))
}

pub fn ctl(_control: &Path, _request: &str) -> Outcome {
    Err(Error::Usage("sim ctl is not implemented yet".into()))
}
