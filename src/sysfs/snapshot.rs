//! `cryptopass snapshot`: copy a host's AP-relevant sysfs files and links into a plain tree with
//! the same relative layout, plus `snapshot.json` (architecture.md, "Tree metadata").
//!
//! Links are recreated verbatim and never followed; files get exactly the bytes read. Write-only
//! attributes (`EACCES`) become empty files, as in a dump; files whose read fails with `EIO` (a
//! queue whose TAPQ fails) are left out and listed under `unreadable`. The output depends only on
//! the source, apart from `takenAt`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::attr;
use super::error::Error;
use super::mdev::is_uuid;
use super::meta::{self, META_FILE, SnapshotMeta};

/// The subtrees copied whole, when present.
pub const SUBTREES: [&str; 6] =
    ["bus/ap", "devices/ap", "devices/vfio_ap", "bus/mdev/devices", "class/mdev_bus", "bus/matrix"];
/// Single files copied when present.
pub const FILES: [&str; 1] = ["firmware/uv/prot_virt_guest"];
/// Names that are noise on a real host: power management, uevents, subsystem links, modaliases.
pub const SKIPPED: [&str; 4] = ["power", "uevent", "subsystem", "modalias"];

/// What became of one regular file.
#[derive(Debug, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// Write-only attribute: an empty file in the snapshot.
    WriteOnly,
    /// Read failed with this error name: left out, listed in `unreadable`.
    Unreadable(&'static str),
}

/// Sorts a read result into what the snapshot does with it; other errors abort the snapshot.
pub fn classify(read: io::Result<Vec<u8>>) -> io::Result<Content> {
    match read {
        Ok(b) => Ok(Content::Bytes(b)),
        Err(e) => match e.raw_os_error() {
            Some(libc::EACCES) => Ok(Content::WriteOnly),
            Some(libc::EIO) => Ok(Content::Unreadable("EIO")),
            _ => Err(e),
        },
    }
}

/// Copies the AP-relevant part of the sysfs at `root` into `out` (which must not exist or be an
/// empty directory) and writes `out/snapshot.json`. Returns the metadata written.
pub fn take(root: &Path, out: &Path) -> Result<SnapshotMeta, Error> {
    let bus = root.join("bus/ap");
    if !bus.is_dir() {
        return Err(Error::snapshot(bus, "not a directory: is this the root of a sysfs with the AP bus?"));
    }
    prepare_out(root, out)?;
    let mut c = Copier { root, out, unreadable: BTreeMap::new() };
    for rel in SUBTREES.iter().chain(FILES.iter()) {
        if attr::exists(&root.join(rel)) {
            c.copy(Path::new(rel))?;
        }
    }
    copy_iommu_groups(root, out)?;

    let id = meta::host_identity(root)?;
    let m = SnapshotMeta {
        kernel_release: id.kernel_release,
        vfio_ap_stream: id.vfio_ap_stream,
        hostname: id.hostname,
        taken_at: Some(meta::now_rfc3339()),
        cryptopass_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        unreadable: c.unreadable,
    };
    let path = out.join(META_FILE);
    fs::write(&path, m.to_json()).map_err(|e| Error::io(path, e))?;
    Ok(m)
}

struct Copier<'a> {
    root: &'a Path,
    out: &'a Path,
    unreadable: BTreeMap<String, String>,
}

impl Copier<'_> {
    fn copy(&mut self, rel: &Path) -> Result<(), Error> {
        let src = self.root.join(rel);
        let dst = self.out.join(rel);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let kind = fs::symlink_metadata(&src).map_err(|e| Error::io(&src, e))?.file_type();
        if kind.is_symlink() {
            let target = fs::read_link(&src).map_err(|e| Error::io(&src, e))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(|e| Error::io(&dst, e))
        } else if kind.is_dir() {
            fs::create_dir(&dst).map_err(|e| Error::io(&dst, e))?;
            for name in sorted_names(&src)? {
                if !SKIPPED.contains(&name.as_str()) {
                    self.copy(&rel.join(name))?;
                }
            }
            Ok(())
        } else if kind.is_file() {
            match classify(attr::read_bytes(&src)).map_err(|e| Error::io(&src, e))? {
                Content::Bytes(b) => fs::write(&dst, b).map_err(|e| Error::io(&dst, e)),
                Content::WriteOnly => fs::write(&dst, b"").map_err(|e| Error::io(&dst, e)),
                Content::Unreadable(why) => {
                    self.unreadable.insert(rel.to_string_lossy().into_owned(), why.to_string());
                    Ok(())
                }
            }
        } else {
            Err(Error::snapshot(src, "neither a file, a directory nor a symbolic link"))
        }
    }
}

fn sorted_names(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        match entry.file_name().into_string() {
            Ok(n) => names.push(n),
            Err(n) => return Err(Error::snapshot(dir.join(n), "file name is not UTF-8")),
        }
    }
    names.sort();
    Ok(names)
}

/// The `kernel/iommu_groups/<N>` directories the mdevs' `iommu_group` links point to, as empty
/// directories, so that the links resolve inside the snapshot.
fn copy_iommu_groups(root: &Path, out: &Path) -> Result<(), Error> {
    let matrix = root.join("devices/vfio_ap/matrix");
    if !attr::exists(&matrix) {
        return Ok(());
    }
    for (name, dir) in attr::subdirs(&matrix)? {
        if !is_uuid(&name) {
            continue;
        }
        let link = dir.join("iommu_group");
        if let Some(n) = attr::read_link_name(&link)? {
            if n.parse::<u32>().is_err() {
                return Err(Error::parse(link, "a link to iommu_groups/<N>", &n));
            }
            let group = out.join("kernel/iommu_groups").join(n);
            fs::create_dir_all(&group).map_err(|e| Error::io(group, e))?;
        }
    }
    Ok(())
}

/// `out` must not exist or be an empty directory, and must not lie inside what is copied.
fn prepare_out(root: &Path, out: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => {
            let mut entries = fs::read_dir(out).map_err(|e| Error::io(out, e))?;
            if entries.next().is_some() {
                return Err(Error::snapshot(out, "output directory is not empty"));
            }
        }
        Ok(_) => return Err(Error::snapshot(out, "output exists and is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(out, e)),
    }
    let (root_abs, out_abs) = (absolute(root)?, absolute(out)?);
    if SUBTREES.iter().any(|s| out_abs.starts_with(root_abs.join(s))) {
        return Err(Error::snapshot(out, "output directory lies inside the tree being copied"));
    }
    fs::create_dir_all(out).map_err(|e| Error::io(out, e))
}

/// `path` with its longest existing prefix canonicalized (the rest need not exist yet).
fn absolute(path: &Path) -> Result<PathBuf, Error> {
    let mut rest = Vec::new();
    let mut cur = path.to_path_buf();
    loop {
        match cur.canonicalize() {
            Ok(c) => return Ok(rest.iter().rev().fold(c, |acc: PathBuf, n| acc.join(n))),
            Err(_) => match (cur.parent(), cur.file_name()) {
                (Some(p), Some(n)) => {
                    rest.push(n.to_os_string());
                    cur = if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() };
                }
                _ => return Err(Error::snapshot(path, "cannot resolve the path")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_only_files_become_empty_and_eio_is_listed() {
        let err = |n| Err(io::Error::from_raw_os_error(n));
        assert_eq!(classify(err(libc::EACCES)).unwrap(), Content::WriteOnly);
        assert_eq!(classify(err(libc::EIO)).unwrap(), Content::Unreadable("EIO"));
        assert!(classify(err(libc::ENOMEM)).is_err());
        assert_eq!(classify(Ok(b"1\n".to_vec())).unwrap(), Content::Bytes(b"1\n".to_vec()));
    }

    #[test]
    fn output_must_be_empty_and_outside_the_copied_tree() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("sys");
        fs::create_dir_all(root.join("bus/ap")).unwrap();
        let inside = root.join("bus/ap/snap");
        let e = prepare_out(&root, &inside).unwrap_err();
        assert!(e.to_string().contains("inside"), "{e}");
        let full = t.path().join("full");
        fs::create_dir_all(full.join("x")).unwrap();
        let e = prepare_out(&root, &full).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: output directory is not empty", full.display()));
        prepare_out(&root, &t.path().join("new/out")).unwrap();
        assert!(t.path().join("new/out").is_dir());
    }
}
