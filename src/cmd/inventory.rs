//! `cryptopass inventory`: what the agent sees, as JSON or as a table modelled on `lszcrypt -V`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::{Error, Outcome, OutputFormat};
use crate::ap::{Apqn, Card, Inventory, KernelProfile, Mask, Matrix, Mdev, Queue};
use crate::sysfs::{self, Counters, counters::Count};

pub fn run(root: &Path, output: OutputFormat) -> Outcome {
    let inv = sysfs::read_inventory(root)?;
    let text = match output {
        OutputFormat::Json => to_json(&inv)?,
        OutputFormat::Table | OutputFormat::Text => format_table_with(&inv, &sysfs::read_counters(root, &inv)),
    };
    print!("{text}");
    Ok(0)
}

#[derive(Serialize)]
struct JsonInventory<'a> {
    profile: KernelProfile,
    #[serde(flatten)]
    inventory: &'a Inventory,
}

/// The inventory as pretty JSON with the detected `profile`, newline-terminated.
pub fn to_json(inv: &Inventory) -> Result<String, Error> {
    let mut s = serde_json::to_string_pretty(&JsonInventory { profile: inv.profile(), inventory: inv })
        .map_err(|e| Error::Usage(format!("cannot serialize the inventory: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// The table without request counters (REQUESTS and PENDING show `-`).
pub fn format_table(inv: &Inventory) -> String {
    format_table_with(inv, &Counters::default())
}

/// The table: a header, one row per card and queue as `lszcrypt -V` prints them, and the mdevs.
pub fn format_table_with(inv: &Inventory, counters: &Counters) -> String {
    let mut out = String::new();
    header(&mut out, inv);
    out.push('\n');
    devices(&mut out, inv, counters);
    out.push('\n');
    mdevs(&mut out, inv);
    out
}

fn header(out: &mut String, inv: &Inventory) {
    let k = &inv.kernel;
    let mut release = k.release.clone().unwrap_or_else(|| "unknown".into());
    if let Some(s) = &k.vfio_ap_stream {
        let _ = write!(release, " (vfio-ap stream {s})");
    }
    let matrix_features = match (&k.matrix_features, k.vfio_ap_loaded) {
        (_, false) => "- (vfio_ap not loaded)".to_string(),
        (None, true) => "- (no features attribute)".to_string(),
        (Some(f), true) => words(f),
    };
    let se = match k.se_guest {
        Some(true) => "yes (this host is a Secure Execution guest)",
        Some(false) => "no",
        None => "unknown",
    };
    let rows: [(&str, String); 11] = [
        ("kernel release", release),
        ("hostname", k.hostname.clone().unwrap_or_else(|| "-".into())),
        ("profile", inv.profile().as_str().to_string()),
        ("bus features", words(&k.bus_features)),
        ("matrix features", matrix_features),
        ("secure execution", se.to_string()),
        ("queue ownership", ownership(inv)),
        ("max ids", format!("adapter {}, domain {}", inv.max_adapter_id, inv.max_domain_id)),
        ("apmask", inv.apmask.to_string()),
        ("aqmask", inv.aqmask.to_string()),
        (
            "host config",
            format!(
                "adapters {}, usage domains {}, control domains {}",
                config_ranges(inv.config.adapters, 2),
                config_ranges(inv.config.usage_domains, 4),
                config_ranges(inv.config.control_domains, 4)
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<17}{v}");
    }
}

/// Which host profile hands queues to vfio_ap (kernel-ap.md §3.1): overrides, masks, or neither yet.
fn ownership(inv: &Inventory) -> String {
    let overrides = inv.queues.values().filter(|q| q.driver_override.as_deref().is_some_and(|o| !o.is_empty())).count();
    let capable = if inv.kernel.driver_override_capable { ", driver_override capable" } else { "" };
    if overrides > 0 {
        format!("driver_override ({overrides} set)")
    } else if !inv.apmask.is_full() || !inv.aqmask.is_full() {
        format!("masks{capable}")
    } else {
        format!("all queues to the host (masks all ones{capable})")
    }
}

fn words(w: &[String]) -> String {
    if w.is_empty() { "-".into() } else { w.join(" ") }
}

fn config_ranges(m: Option<Mask>, digits: usize) -> String {
    m.map(|m| ranges(&m, digits)).unwrap_or_else(|| "not supported".into())
}

/// `00-03,05` (hex ids with `digits` digits, consecutive runs as ranges), `-` when empty.
pub fn ranges(m: &Mask, digits: usize) -> String {
    let ids = m.ids();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        while i + 1 < ids.len() && ids[i + 1] == ids[i] + 1 {
            i += 1;
        }
        parts.push(if start == ids[i] {
            format!("{start:0digits$x}")
        } else {
            format!("{start:0digits$x}-{:0digits$x}", ids[i])
        });
        i += 1;
    }
    if parts.is_empty() { "-".into() } else { parts.join(",") }
}

/// One `lszcrypt -V` record.
struct Row {
    name: String,
    type_name: String,
    mode: String,
    status: String,
    requests: String,
    pending: String,
    hwtype: String,
    depth: String,
    functions: String,
    driver: String,
}

impl Row {
    fn write(&self, out: &mut String) {
        let line = format!(
            "{:<8} {:<5} {:<11} {:<10} {:>8} {:>8} {:>6} {:>6} {:<10} {}",
            self.name,
            self.type_name,
            self.mode,
            self.status,
            self.requests,
            self.pending,
            self.hwtype,
            self.depth,
            self.functions,
            self.driver
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn num(n: Option<u64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

fn card_row(c: &Card, count: Count) -> Row {
    let status = if !c.config {
        "deconfig"
    } else if c.chkstop {
        "checkstop"
    } else if c.driver.is_none() {
        "-"
    } else if c.online {
        "online"
    } else {
        "offline"
    };
    Row {
        name: format!("{:02x}", c.id),
        type_name: if c.type_name.is_empty() { "-".into() } else { c.type_name.clone() },
        mode: c.mode().into(),
        status: status.into(),
        requests: if c.config { num(count.requests) } else { "-".into() },
        pending: if c.config { num(count.pending) } else { "-".into() },
        hwtype: c.hwtype.to_string(),
        // lszcrypt prints the attribute plus one.
        depth: c.depth.map(|d| format!("{:02}", u64::from(d) + 1)).unwrap_or_else(|| "-".into()),
        functions: c.functions.letters(),
        driver: c.driver.clone().unwrap_or_else(|| "-no-driver-".into()),
    }
}

fn queue_row(q: &Queue, card: Option<&Card>, count: Count) -> Row {
    // lszcrypt shows `-` without `online` (not bound to the host driver); the vfio_ap status says more.
    let status = if !q.config {
        "deconfig"
    } else if q.chkstop {
        "checkstop"
    } else {
        match (q.online, q.status) {
            (Some(true), _) => "online",
            (Some(false), _) => "offline",
            (None, Some(s)) => s.as_str(),
            (None, None) => "-",
        }
    };
    let base = card.map(|c| card_row(c, Count::default()));
    let from_card = |f: fn(&Row) -> String| base.as_ref().map(f).unwrap_or_else(|| "-".into());
    Row {
        name: q.apqn.to_string(),
        type_name: from_card(|r| r.type_name.clone()),
        mode: from_card(|r| r.mode.clone()),
        status: status.into(),
        requests: if q.config { num(count.requests) } else { "-".into() },
        pending: if q.config && q.bound_to_host() { num(count.pending) } else { "-".into() },
        hwtype: from_card(|r| r.hwtype.clone()),
        depth: from_card(|r| r.depth.clone()),
        functions: q.functions.map(|f| f.letters()).unwrap_or_else(|| "TAPQ-fail".into()),
        driver: q.driver.clone().unwrap_or_else(|| "-no-driver-".into()),
    }
}

fn devices(out: &mut String, inv: &Inventory, counters: &Counters) {
    let head = Row {
        name: "CARD.DOM".into(),
        type_name: "TYPE".into(),
        mode: "MODE".into(),
        status: "STATUS".into(),
        requests: "REQUESTS".into(),
        pending: "PENDING".into(),
        hwtype: "HWTYPE".into(),
        depth: "QDEPTH".into(),
        functions: "FUNCTIONS".into(),
        driver: "DRIVER".into(),
    };
    let mut body = String::new();
    for c in inv.cards.values() {
        card_row(c, counters.cards.get(&c.id).copied().unwrap_or_default()).write(&mut body);
        let lo = Apqn::new(c.id, 0);
        let hi = Apqn::new(c.id, u8::MAX);
        for q in inv.queues.range(lo..=hi).map(|(_, q)| q) {
            queue_row(q, Some(c), counters.queues.get(&q.apqn).copied().unwrap_or_default()).write(&mut body);
        }
    }
    // Queues whose card is missing (should not happen on a real host, but never hide them).
    for q in inv.queues.values().filter(|q| !inv.cards.contains_key(&q.apqn.apid)) {
        queue_row(q, None, counters.queues.get(&q.apqn).copied().unwrap_or_default()).write(&mut body);
    }
    if body.is_empty() {
        out.push_str("no crypto card devices found\n");
        return;
    }
    let mut h = String::new();
    head.write(&mut h);
    let width = body.lines().chain(h.lines()).map(|l| l.chars().count()).max().unwrap_or(0);
    out.push_str(&h);
    let _ = writeln!(out, "{}", "-".repeat(width));
    out.push_str(&body);
}

fn matrix_line(m: &Matrix) -> String {
    format!(
        "adapters {}, domains {}, control domains {}",
        ranges(&m.adapters, 2),
        ranges(&m.domains, 4),
        ranges(&m.control, 4)
    )
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn mdev_row(out: &mut String, m: &Mdev) {
    let migratable = m.migratable.map(yes_no).unwrap_or("-");
    let iommu = m.iommu_group.map(|g| g.to_string()).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "{:<36} {:>5} {:>5} {:>7} {:<10} {:<6} {}",
        m.uuid,
        m.matrix.apqns().len(),
        m.guest_matrix.apqns().len(),
        m.matrix.control.count(),
        migratable,
        yes_no(m.in_use),
        iommu
    );
    let _ = writeln!(out, "  matrix: {}", matrix_line(&m.matrix));
    let _ = writeln!(out, "  guest:  {}", matrix_line(&m.guest_matrix));
}

fn mdevs(out: &mut String, inv: &Inventory) {
    if !inv.kernel.vfio_ap_loaded {
        out.push_str("vfio_ap is not loaded: no mdevs\n");
        return;
    }
    if inv.mdevs.is_empty() {
        out.push_str("no vfio_ap mdevs\n");
        return;
    }
    let head = format!(
        "{:<36} {:>5} {:>5} {:>7} {:<10} {:<6} {}",
        "MDEV", "APQNS", "GUEST", "CONTROL", "MIGRATABLE", "IN USE", "IOMMU"
    );
    let _ = writeln!(out, "{head}");
    let _ = writeln!(out, "{}", "-".repeat(head.len()));
    for m in inv.mdevs.values() {
        mdev_row(out, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ap::{ApFunctions, HostConfig, KernelInfo, QueueStatus};

    fn card(id: u8) -> Card {
        Card {
            id,
            type_name: "CEX8C".into(),
            hwtype: 14,
            raw_hwtype: 14,
            functions: ApFunctions(0x9280_0000),
            online: true,
            config: true,
            chkstop: false,
            depth: Some(7),
            driver: Some("cex4card".into()),
        }
    }

    fn queue(a: u8, d: u8, vfio: bool) -> Queue {
        Queue {
            apqn: Apqn::new(a, d),
            driver: Some(if vfio { "vfio_ap" } else { "cex4queue" }.into()),
            functions: Some(ApFunctions(0x9280_0000)),
            online: if vfio { None } else { Some(true) },
            config: true,
            chkstop: false,
            status: if vfio { Some(QueueStatus::InUse) } else { None },
            driver_override: None,
        }
    }

    fn inventory() -> Inventory {
        let mut inv = Inventory {
            kernel: KernelInfo {
                release: Some("6.19.0-cp".into()),
                vfio_ap_stream: Some("v5".into()),
                hostname: Some("z16-a".into()),
                bus_features: vec!["APSC".into(), "APXA".into()],
                matrix_features: Some(vec!["guest_matrix".into(), "migratable".into()]),
                se_guest: Some(false),
                driver_override_capable: false,
                vfio_ap_loaded: true,
            },
            max_adapter_id: 255,
            max_domain_id: 84,
            apmask: Mask::full(),
            aqmask: Mask::from_ids([5]),
            config: HostConfig {
                adapters: Some(Mask::from_ids([0, 1, 2, 3])),
                usage_domains: None,
                control_domains: None,
            },
            ..Default::default()
        };
        inv.cards.insert(0, card(0));
        for q in [queue(0, 5, false), queue(0, 6, true)] {
            inv.queues.insert(q.apqn, q);
        }
        let m = Matrix::new(Mask::from_ids([0]), Mask::from_ids([6]), Mask::from_ids([6]));
        let uuid = "4b1d6b9a-2c0e-4b7a-9d55-0123456789ab".to_string();
        inv.mdevs.insert(
            uuid.clone(),
            Mdev { uuid, matrix: m, guest_matrix: m, migratable: None, in_use: true, iommu_group: Some(3) },
        );
        inv
    }

    #[test]
    fn rows_follow_lszcrypt_verbose_columns() {
        let t = format_table(&inventory());
        let lines: Vec<&str> = t.lines().collect();
        let head = lines.iter().position(|l| l.starts_with("CARD.DOM")).unwrap();
        assert_eq!(
            lines[head],
            "CARD.DOM TYPE  MODE        STATUS     REQUESTS  PENDING HWTYPE QDEPTH FUNCTIONS  DRIVER"
        );
        assert!(lines[head + 1].chars().all(|c| c == '-'));
        assert_eq!(
            lines[head + 2],
            "00       CEX8C CCA-Coproc  online            -        -     14     08 S--D--N-F- cex4card"
        );
        assert_eq!(
            lines[head + 3],
            "00.0005  CEX8C CCA-Coproc  online            -        -     14     08 S--D--N-F- cex4queue"
        );
        assert_eq!(
            lines[head + 4],
            "00.0006  CEX8C CCA-Coproc  in use            -        -     14     08 S--D--N-F- vfio_ap"
        );
    }

    #[test]
    fn header_names_release_profile_and_masks() {
        let t = format_table(&inventory());
        assert!(t.contains("kernel release   6.19.0-cp (vfio-ap stream v5)\n"), "{t}");
        assert!(t.contains("profile          latest\n"), "{t}");
        assert!(t.contains("max ids          adapter 255, domain 84\n"), "{t}");
        assert!(t.contains("queue ownership  masks\n"), "{t}");
        assert!(t.contains(&format!("aqmask           {}\n", Mask::from_ids([5]))), "{t}");
        assert!(t.contains("host config      adapters 00-03, usage domains not supported,"), "{t}");
    }

    #[test]
    fn mdev_section_counts_apqns_and_says_in_use() {
        let t = format_table(&inventory());
        assert!(t.contains("4b1d6b9a-2c0e-4b7a-9d55-0123456789ab     1     1       1 -          yes    3\n"), "{t}");
        assert!(t.contains("  guest:  adapters 00, domains 0006, control domains 0006\n"), "{t}");
    }

    #[test]
    fn counters_tapq_failure_and_missing_driver_show_in_rows() {
        let mut inv = inventory();
        if let Some(q) = inv.queues.get_mut(&Apqn::new(0, 5)) {
            q.functions = None;
            q.driver = None;
            q.online = None;
        }
        let mut c = Counters::default();
        c.cards.insert(0, Count { requests: Some(12), pending: Some(1) });
        let t = format_table_with(&inv, &c);
        assert!(t.contains("00       CEX8C CCA-Coproc  online           12        1"), "{t}");
        assert!(
            t.contains("00.0005  CEX8C CCA-Coproc  -                 -        -     14     08 TAPQ-fail  -no-driver-"),
            "{t}"
        );
    }

    #[test]
    fn ownership_names_the_host_profile() {
        let mut inv = inventory();
        inv.aqmask = Mask::full();
        inv.kernel.driver_override_capable = true;
        assert_eq!(ownership(&inv), "all queues to the host (masks all ones, driver_override capable)");
        if let Some(q) = inv.queues.get_mut(&Apqn::new(0, 6)) {
            q.driver_override = Some("vfio_ap".into());
        }
        assert_eq!(ownership(&inv), "driver_override (1 set)");
    }

    #[test]
    fn ranges_compress_runs() {
        assert_eq!(ranges(&Mask::from_ids([0, 1, 2, 3, 5, 9, 10]), 2), "00-03,05,09-0a");
        assert_eq!(ranges(&Mask::empty(), 4), "-");
    }

    #[test]
    fn json_carries_the_profile() {
        let j = to_json(&inventory()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["profile"], "latest");
        assert_eq!(v["maxDomainId"], 84);
        assert!(v["mdevs"]["4b1d6b9a-2c0e-4b7a-9d55-0123456789ab"]["inUse"].as_bool().unwrap());
    }
}
