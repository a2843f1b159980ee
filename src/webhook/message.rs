//! The denial messages. kube-apiserver shows them after `admission webhook "<name>" denied the
//! request: `, and `virtctl migrate` after `Error migrating VirtualMachine Internal error
//! occurred: ` (kubevirt.md §1): each must read well on its own in one or two lines. So a message
//! names the passthrough, the node the VM runs on and at most [`MAX_NODES`] candidate nodes with
//! their first reason in the kernel's words; the status holds the rest.

use std::fmt::{self, Display, Formatter};

use super::decide::{Candidate, Denial, Refusal, Unfit};

/// Candidate nodes named in one message.
pub const MAX_NODES: usize = 3;
/// Characters of one reason's message before it is cut.
pub const MAX_REASON: usize = 160;

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Display for Unfit {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Verdict { verdict, reasons } => {
                write!(f, "{verdict}")?;
                if let Some(first) = reasons.first() {
                    let text = if first.message.is_empty() { &first.code } else { &first.message };
                    write!(f, ": {}", cut(text, MAX_REASON))?;
                }
                if reasons.len() > 1 {
                    write!(f, " (+{} more)", reasons.len() - 1)?;
                }
                Ok(())
            }
            Unfit::NotPrepared => f.write_str("not prepared yet"),
            Unfit::NotSelected { key, want, have: None } => write!(f, "lacks {key}={want}"),
            Unfit::NotSelected { key, want, have: Some(have) } => write!(f, "has {key}={have}, not {want}"),
            Unfit::NodeGone => f.write_str("no such Node"),
        }
    }
}

fn candidates(f: &mut Formatter<'_>, passthrough: &str, list: &[Candidate]) -> fmt::Result {
    for (i, c) in list.iter().take(MAX_NODES).enumerate() {
        write!(f, "{}{} {}", if i == 0 { "" } else { "; " }, c.name, c.unfit)?;
    }
    if list.len() > MAX_NODES {
        write!(f, "; +{} more (kubectl get cpt {passthrough} -o yaml)", list.len() - MAX_NODES)?;
    }
    Ok(())
}

impl Display for Refusal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::SelectorConflict { passthrough, key, value } => write!(
                f,
                "CryptoPassthrough {passthrough}: addedNodeSelector sets {key}={value}; \
                 cryptopass steers the target with {key}=true, leave that key out"
            ),
            Refusal::MigrationDisabled { passthrough } => {
                write!(f, "CryptoPassthrough {passthrough}: migration is disabled (spec.migration.enabled: false)")
            }
            Refusal::NotReady { passthrough, reason, message } => {
                write!(f, "CryptoPassthrough {passthrough} is not Ready ({reason}: {})", cut(message, MAX_REASON))
            }
            Refusal::VmiNotFound { passthrough, vmi } => {
                write!(f, "CryptoPassthrough {passthrough}: VMI {vmi} not found")
            }
            Refusal::VmiNotRunning { passthrough, vmi } => {
                write!(f, "CryptoPassthrough {passthrough}: VMI {vmi} does not run on a node yet")
            }
            Refusal::StatusBehind { passthrough, vmi, vmi_node, active } => write!(
                f,
                "CryptoPassthrough {passthrough}: VMI {vmi} runs on {vmi_node} but the status has {}; \
                 retry once the controller has caught up",
                match active {
                    Some(a) => format!("active node {a}"),
                    None => "no active node".to_string(),
                }
            ),
            Refusal::KernelCannotMigrate { passthrough, node, message } => {
                write!(f, "CryptoPassthrough {passthrough}: active node {node}: {}", cut(message, MAX_REASON))
            }
            Refusal::NotSteered { passthrough, key } => write!(
                f,
                "CryptoPassthrough {passthrough}: the target is not restricted to prepared nodes ({key}=true is \
                 not in the selector: is webhook vmim.mutate.crypto.s390x.dev registered?)"
            ),
            Refusal::NoTarget { passthrough, source, candidates: list } if list.is_empty() => write!(
                f,
                "CryptoPassthrough {passthrough}: no node besides {source} is a candidate \
                 (placement.nodeSelector, agents)"
            ),
            Refusal::NoTarget { passthrough, source, candidates: list } => {
                write!(f, "CryptoPassthrough {passthrough}: no prepared compatible target for a VM on {source}: ")?;
                candidates(f, passthrough, list)
            }
            Refusal::NoCommonTarget { targets } => {
                f.write_str("the CryptoPassthroughs of this VMI have no target node in common: ")?;
                for (i, (p, nodes)) in targets.iter().enumerate() {
                    let nodes: Vec<&str> = nodes.iter().take(MAX_NODES).map(String::as_str).collect();
                    write!(f, "{}{p} → {}", if i == 0 { "" } else { "; " }, nodes.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

impl Display for Denial {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(node) = &self.evacuation_node {
            write!(f, "evacuation of node {node} waits: ")?;
        }
        self.refusal.fmt(f)
    }
}
