//! `cryptopass check`: the offline preflight between two sysfs roots. Reads both trees, asks the
//! verdict engine, prints every reason, the destination kernel's log and the source console.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Error, Outcome, OutputFormat, Rules};
use crate::ap::Inventory;
use crate::compat::{self, RuleChoice, Verdict};

pub struct CheckOptions {
    pub source: PathBuf,
    pub target: PathBuf,
    pub uuid: String,
    pub rules: Rules,
    pub both_ways: bool,
    pub output: OutputFormat,
}

/// The kernel's `create` takes exactly the 36-character form; the device name is lowercase.
fn parse_uuid(s: &str) -> Result<String, Error> {
    let ok = s.len() == 36 && uuid::Uuid::try_parse(s).is_ok();
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(Error::Usage(format!("invalid --uuid {s:?}: expected 8-4-4-4-12 hex digits")))
    }
}

fn choice(r: Rules) -> RuleChoice {
    match r {
        Rules::Auto => RuleChoice::Auto,
        Rules::V1 => RuleChoice::V1,
        Rules::Latest => RuleChoice::Latest,
    }
}

/// One direction of the check, with the trees it compared.
struct Direction<'a> {
    from: &'a Path,
    to: &'a Path,
    verdict: Verdict,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BothWays<'a> {
    compatible: bool,
    source_to_target: &'a Verdict,
    target_to_source: &'a Verdict,
}

pub fn run(o: &CheckOptions) -> Outcome {
    let uuid = parse_uuid(&o.uuid)?;
    let source: Inventory = crate::sysfs::read_inventory(&o.source)?;
    let target: Inventory = crate::sysfs::read_inventory(&o.target)?;
    let rules = choice(o.rules);
    let mut dirs =
        vec![Direction { from: &o.source, to: &o.target, verdict: compat::verdict(&source, &target, &uuid, rules) }];
    if o.both_ways {
        dirs.push(Direction {
            from: &o.target,
            to: &o.source,
            verdict: compat::verdict(&target, &source, &uuid, rules),
        });
    }
    let compatible = dirs.iter().all(|d| d.verdict.compatible);
    let out = match o.output {
        OutputFormat::Json => json(&dirs, compatible)?,
        OutputFormat::Text | OutputFormat::Table => dirs.iter().map(text).collect::<Vec<_>>().join("\n"),
    };
    print!("{out}");
    Ok(if compatible { 0 } else { 1 })
}

fn json(dirs: &[Direction], compatible: bool) -> Result<String, Error> {
    let value = match dirs {
        [one] => serde_json::to_string_pretty(&one.verdict),
        [there, back] => serde_json::to_string_pretty(&BothWays {
            compatible,
            source_to_target: &there.verdict,
            target_to_source: &back.verdict,
        }),
        _ => return Err(Error::Usage("internal: unexpected number of directions".into())),
    };
    value
        .map(|s| s + "\n")
        .map_err(|e| Error::Io { context: "serializing the verdict".into(), source: std::io::Error::other(e) })
}

fn text(d: &Direction) -> String {
    let v = &d.verdict;
    let mut s = String::new();
    let rules = v.rules.map_or("v1 and latest", |r| r.as_str());
    let state = if v.compatible { "compatible" } else { "incompatible" };
    let _ = write!(s, "{} -> {}: {state} ({rules} rules", d.from.display(), d.to.display());
    if let Some(name) = v.errno_name() {
        let _ = write!(s, ", destination fails with {name}");
    }
    s.push_str(")\n");
    for r in &v.reasons {
        let _ = writeln!(s, "  {r}");
    }
    if !v.warnings.is_empty() {
        s.push_str("warnings:\n");
        for w in &v.warnings {
            let _ = writeln!(s, "  {w}");
        }
    }
    if !v.kernel_log.is_empty() {
        s.push_str("destination kernel log:\n");
        for l in &v.kernel_log {
            let _ = writeln!(s, "  {l}");
        }
    }
    if let Some(c) = &v.console {
        let _ = writeln!(s, "source console:\n  {c}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_must_be_the_36_character_form_in_any_case() {
        assert_eq!(
            parse_uuid("4B1D3C2A-5E6F-4A7B-8C9D-0E1F2A3B4C5D").ok().as_deref(),
            Some("4b1d3c2a-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
        );
        assert!(parse_uuid("4b1d3c2a5e6f4a7b8c9d0e1f2a3b4c5d").is_err());
        assert!(parse_uuid("not-a-uuid").is_err());
        assert!(parse_uuid("{4b1d3c2a-5e6f-4a7b-8c9d-0e1f2a3b4c5}").is_err());
    }
}
