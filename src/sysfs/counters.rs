//! Request counters (`request_count`, `requestq_count`, `pendingq_count`) for the `inventory`
//! table's REQUESTS and PENDING columns. Display only: they change with every request, so they
//! are not part of the [`Inventory`], and a counter that cannot be read is just unknown.

use std::collections::BTreeMap;
use std::path::Path;

use super::attr;
use crate::ap::ids::card_name;
use crate::ap::{Apid, Apqn, Inventory};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    /// `request_count`.
    pub requests: Option<u64>,
    /// `pendingq_count` + `requestq_count`, as lszcrypt adds them.
    pub pending: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    pub cards: BTreeMap<Apid, Count>,
    pub queues: BTreeMap<Apqn, Count>,
}

/// Reads the counters of every card and queue of `inv`; unreadable ones stay `None`.
pub fn read_counters(root: &Path, inv: &Inventory) -> Counters {
    let devices = root.join("devices/ap");
    let mut c = Counters::default();
    for id in inv.cards.keys() {
        c.cards.insert(*id, count(&devices.join(card_name(*id))));
    }
    for q in inv.queues.keys() {
        c.queues.insert(*q, count(&devices.join(card_name(q.apid)).join(q.to_string())));
    }
    c
}

fn count(dir: &Path) -> Count {
    let num = |name: &str| {
        let p = dir.join(name);
        attr::read_value(&p).ok().and_then(|v| attr::parse_decimal::<u64>(&p, &v, "a count").ok())
    };
    let pending = match (num("pendingq_count"), num("requestq_count")) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        _ => None,
    };
    Count { requests: num("request_count"), pending }
}
