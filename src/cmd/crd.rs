//! `cryptopass crd`: print the CRDs (the checked-in `crds/` must equal it).

use super::Outcome;

pub fn run() -> Outcome {
    print!("{}", crate::api::crd_yaml());
    Ok(0)
}
