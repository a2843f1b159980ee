//! The kernel's own words: every message vfio_ap and the AP bus log, and the console lines QEMU
//! and libvirt print, formatted in one place for the simulator and the verdict engine.
//! Quoted from kernel-ap.md §3, §5, §6, §9 (the seed's slips corrected per §10).

use super::functions::Facility;
use super::ids::Apqn;

fn dev(uuid: &str) -> String {
    format!("vfio_ap_mdev {uuid}: ")
}

// §3 masks
pub fn cannot_reserve_for_host(uuid: &str, q: Apqn) -> String {
    format!("{}Can not reserve queue {q} for host driver: in use by mdev", dev(uuid))
}

// §5 assign / ap_config
pub fn already_assigned(uuid: &str, q: Apqn, other: &str) -> String {
    format!("{}Userspace may not assign queue {q} to mdev: already assigned to {other}", dev(uuid))
}

// §6.1 seed (v1) rules
pub fn config_size_larger(uuid: &str, src: usize, tgt: usize) -> String {
    format!("{}migration failed: source guest's AP config size ({src}) larger than target's ({tgt})", dev(uuid))
}
pub fn queue_count_differs(uuid: &str, src: usize, tgt: usize) -> String {
    format!("{}migration failed: number of queues on source ({src}) and target ({tgt}) guests differ", dev(uuid))
}
pub fn queue_not_assigned(uuid: &str, q: Apqn) -> String {
    format!("{}migration failed: queue {q} not assigned to guest matrix", dev(uuid))
}
pub fn target_is_se_guest(uuid: &str) -> String {
    format!("{}Migration failed: Target is a secure execution guest", dev(uuid))
}

// §6.1 / §6.2 hardware compatibility (the v1 code prints the same header as the latest code)
pub fn queues_not_compatible(uuid: &str, q: Apqn) -> String {
    format!("{}Migration failed: Source and target queue ({q}) not compatible", dev(uuid))
}
/// The pair of lines for one facility that differs.
pub fn facility_differs(uuid: &str, f: &Facility, q: Apqn, in_source: bool) -> [String; 2] {
    let (yes, no) = if f.says_available { ("available", "not available") } else { ("installed", "not installed") };
    let (s, t) = if in_source { (yes, no) } else { (no, yes) };
    [
        format!("{}{} {s} in source queue {q}", dev(uuid), f.kernel_name),
        format!("{}{} {t} in target queue {q}", dev(uuid), f.kernel_name),
    ]
}
/// An unnamed facility bit (v1 compares all 32 bits).
pub fn facility_bit_differs(uuid: &str, bit: u32, q: Apqn, in_source: bool) -> [String; 2] {
    let (s, t) = if in_source { ("installed", "not installed") } else { ("not installed", "installed") };
    [
        format!("{}Facility bit {bit} {s} in source queue {q}", dev(uuid)),
        format!("{}Facility bit {bit} {t} in target queue {q}", dev(uuid)),
    ]
}
pub fn ap_type_not_compatible(uuid: &str, src: u8, tgt: u8) -> String {
    format!("{}AP type of source ({src:02x}) not compatible with target ({tgt:02x})", dev(uuid))
}

// §6.2 latest rules
pub fn queue_not_available(uuid: &str, q: Apqn) -> String {
    format!("{}Queue {q} not available to vfio_ap driver on target host", dev(uuid))
}
pub fn control_domain_not_available(uuid: &str, d: u8) -> String {
    format!("vfio_ap_mdev: {uuid}: Control domain {d:04x} not available on the destination host")
}
pub fn function_downgrade(uuid: &str, q: Apqn) -> [String; 2] {
    [
        format!("{}Full native card function available on source queue {q}", dev(uuid)),
        format!("{}Only stateless functions available on target queue {q}", dev(uuid)),
    ]
}
pub fn bind_state_not_zero(uuid: &str, src: u8, tgt: u8, q: Apqn) -> String {
    format!("{}Bind/associate state for source ({src:x}) and target ({tgt:x}) queue {q} must be 0", dev(uuid))
}
pub fn se_not_allowed(uuid: &str) -> String {
    format!("{}Migration not allowed from or to a Secure Execution guest", dev(uuid))
}
// §9
pub fn tapq_failed(uuid: &str, q: Apqn, rc: u8) -> String {
    format!("{}Failed to get hwinfo for queue {q}: TAPQ rc={rc}", dev(uuid))
}

// Console lines on the source (libvirt)
pub fn console_device_not_found(uuid: &str) -> String {
    format!("error: device not found: mediated device '{uuid}' not found")
}
pub fn console_migration_disabled(uuid: &str) -> String {
    format!(
        "error: Requested operation is not valid: cannot migrate domain: {uuid}: Migration is disabled for VFIO device"
    )
}
/// `load of migration failed: <strerror>` for the errno the destination returned.
pub fn console_load_failed(errno: i32) -> String {
    format!("error: operation failed: job 'migration in' failed: load of migration failed: {}", strerror(errno))
}

/// The C library's text for the errnos this contract uses.
pub fn strerror(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "Operation not permitted",
        libc::EIO => "Input/output error",
        libc::E2BIG => "Argument list too long",
        libc::EFAULT => "Bad address",
        libc::EBUSY => "Device or resource busy",
        libc::EEXIST => "File exists",
        libc::ENODEV => "No such device",
        libc::EINVAL => "Invalid argument",
        libc::ERANGE => "Numerical result out of range",
        libc::EUSERS => "Too many users",
        libc::EOPNOTSUPP => "Operation not supported",
        libc::EADDRINUSE => "Address already in use",
        libc::EADDRNOTAVAIL => "Cannot assign requested address",
        libc::EACCES => "Permission denied",
        libc::ENOENT => "No such file or directory",
        _ => "Unknown error",
    }
}

/// The errno's symbolic name (`EADDRINUSE`), for status and JSON.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ERANGE => "ERANGE",
        libc::EUSERS => "EUSERS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EACCES => "EACCES",
        libc::ENOENT => "ENOENT",
        _ => "E?",
    }
}

/// A kernel line without its device prefix (`vfio_ap_mdev <uuid>: ` or `vfio_ap_mdev: <uuid>: `):
/// the wording a status reason quotes, where the UUID is already known.
pub fn without_device(line: &str) -> &str {
    let rest = match line.strip_prefix("vfio_ap_mdev: ") {
        Some(r) => r,
        None => match line.strip_prefix("vfio_ap_mdev ") {
            Some(r) => r,
            None => return line,
        },
    };
    rest.split_once(": ").map_or(line, |(_, text)| text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_device_strips_both_prefix_forms() {
        let u = "4b1d3c2a-0000-4000-8000-000000000001";
        let q = Apqn::new(1, 2);
        assert_eq!(
            without_device(&queue_not_available(u, q)),
            "Queue 01.0002 not available to vfio_ap driver on target host"
        );
        assert_eq!(
            without_device(&control_domain_not_available(u, 5)),
            "Control domain 0005 not available on the destination host"
        );
        assert_eq!(without_device("no prefix: here"), "no prefix: here");
    }
}
