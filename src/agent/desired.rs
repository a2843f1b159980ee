//! The desired state: the mdevs a node should hold. The field names are those of
//! `CryptoNode.spec.mdevs`; the one-shot mode reads them from a YAML or JSON file holding a list
//! or `{mdevs: [...]}`. Other fields of a CryptoNode entry (`passthrough`, `role`, `verdict`) are
//! ignored here.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ap::{Mask, Matrix};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredMdev {
    /// Lowercase RFC 4122 UUID (normalized on load).
    pub uuid: String,
    #[serde(default)]
    pub adapters: Vec<u8>,
    #[serde(default)]
    pub domains: Vec<u8>,
    #[serde(default)]
    pub control_domains: Vec<u8>,
    /// Migration wanted.
    #[serde(default)]
    pub migratable: bool,
}

impl DesiredMdev {
    pub fn new(uuid: &str, adapters: &[u8], domains: &[u8], control: &[u8], migratable: bool) -> DesiredMdev {
        DesiredMdev {
            uuid: uuid.to_string(),
            adapters: adapters.to_vec(),
            domains: domains.to_vec(),
            control_domains: control.to_vec(),
            migratable,
        }
    }

    /// The `ap_config` this mdev should have.
    pub fn matrix(&self) -> Matrix {
        Matrix::new(
            Mask::from_ids(self.adapters.iter().copied()),
            Mask::from_ids(self.domains.iter().copied()),
            Mask::from_ids(self.control_domains.iter().copied()),
        )
    }
}

/// The whole desired state, in the order given (earlier entries win conflicts among new mdevs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub mdevs: Vec<DesiredMdev>,
}

#[derive(Debug, Error)]
pub enum DesiredError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    List(Vec<DesiredMdev>),
    Object { mdevs: Vec<DesiredMdev> },
}

impl Desired {
    pub fn new(mdevs: Vec<DesiredMdev>) -> Desired {
        Desired { mdevs }
    }

    /// Parses YAML (a superset of JSON); `source` names the file in errors. UUIDs are checked
    /// and lowercased; ids are integers 0..255 (write hex as `0x10`).
    pub fn parse(text: &str, source: &str) -> Result<Desired, DesiredError> {
        let err = |message: String| DesiredError::Parse { path: source.to_string(), message };
        let file: File = serde_yaml::from_str(text).map_err(|e| {
            err(format!("{e} (expected a list of mdevs, or {{mdevs: [...]}}, each with uuid, adapters, domains, controlDomains, migratable)"))
        })?;
        let mut mdevs = match file {
            File::List(v) | File::Object { mdevs: v } => v,
        };
        for (i, m) in mdevs.iter_mut().enumerate() {
            let u = uuid::Uuid::try_parse(&m.uuid)
                .ok()
                .filter(|_| m.uuid.len() == 36)
                .ok_or_else(|| err(format!("mdevs[{i}].uuid: {:?} is not a hyphenated RFC 4122 UUID", m.uuid)))?;
            m.uuid = u.hyphenated().to_string();
        }
        Ok(Desired { mdevs })
    }

    pub fn load(path: &Path) -> Result<Desired, DesiredError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| DesiredError::Read { path: name.clone(), source })?;
        Desired::parse(&text, &name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_or_an_object_with_mdevs_in_yaml_or_json() {
        let y =
            "- uuid: 4B1D0000-0000-4000-8000-000000000001\n  adapters: [0, 0x10]\n  domains: [5]\n  migratable: true\n";
        let d = Desired::parse(y, "f").unwrap();
        assert_eq!(d.mdevs[0].uuid, "4b1d0000-0000-4000-8000-000000000001", "lowercased");
        assert_eq!(d.mdevs[0].adapters, vec![0, 16]);
        assert!(d.mdevs[0].control_domains.is_empty());
        let j = r#"{"mdevs":[{"uuid":"4b1d0000-0000-4000-8000-000000000001","adapters":[1],"domains":[2],"controlDomains":[2],"migratable":false,"role":"Active"}]}"#;
        let d = Desired::parse(j, "f").unwrap();
        assert_eq!(d.mdevs[0].matrix().control.ids(), vec![2]);
        assert_eq!(Desired::parse("[]", "f").unwrap().mdevs.len(), 0);
    }

    #[test]
    fn bad_uuids_and_ids_above_255_are_parse_errors_naming_the_file() {
        let e = Desired::parse("- {uuid: nope}", "d.yaml").unwrap_err().to_string();
        assert!(e.starts_with("d.yaml: mdevs[0].uuid"), "{e}");
        let e = Desired::parse("- {uuid: 4b1d0000-0000-4000-8000-000000000001, adapters: [256]}", "d.yaml");
        assert!(e.is_err());
        assert!(Desired::parse("- {uuid: 4b1d00000000400080000000000000001}", "d").is_err(), "unhyphenated");
    }
}
