//! `cryptopass sim mount` as a process: shell `echo`/`cat` see the kernel's semantics and errno,
//! the control socket works, SIGKILL-at-write kills the writer, SIGTERM unmounts cleanly.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cryptopass");
const U: &str = "4b1d0000-0000-4000-8000-0000000000cc";

const MACHINE: &str = r#"
kernel: { profile: mig-v1, release: 6.19.0-test }
usageDomains: ["0-15"]
cards:
  - { id: 0, type: CEX8, mode: CCA }
  - { id: 1, type: CEX8, mode: CCA }
"#;

struct MountProc {
    child: Child,
    dir: tempfile::TempDir,
    sock: std::path::PathBuf,
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

fn is_mounted(dir: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts").unwrap().lines().any(|l| l.split(' ').nth(1) == dir.to_str())
}

impl MountProc {
    fn start() -> MountProc {
        let dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap().keep();
        let machine = work.join("m.yaml");
        std::fs::write(&machine, MACHINE).unwrap();
        let sock = work.join("ctl.sock");
        let child = Command::new(BIN)
            .args(["sim", "mount", "--machine"])
            .arg(&machine)
            .arg("--control")
            .arg(&sock)
            .arg(dir.path())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let probe = dir.path().join("bus/ap/apmask");
        wait_for("the mount", || probe.exists() && sock.exists());
        MountProc { child, dir, sock }
    }
    fn p(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }
    /// Runs a bash command; returns (success, stderr).
    fn sh(&self, cmd: &str) -> (bool, String) {
        let o = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
    }
    fn ctl(&self, req: &str) -> serde_json::Value {
        let o = Command::new(BIN).args(["sim", "ctl", "--control"]).arg(&self.sock).arg(req).output().unwrap();
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

impl Drop for MountProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        cryptopass::sim::fuse::unmount_stale(self.dir.path());
    }
}

#[test]
fn shell_echo_and_cat_reproduce_the_errno_table() {
    let m = MountProc::start();
    let create = m.p("devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create");
    let mdev = m.p(&format!("devices/vfio_ap/matrix/{U}"));
    let (ok, _) = m.sh(&format!("echo -n 0x3fff > {}", m.p("bus/ap/apmask")));
    assert!(ok);
    assert!(m.sh(&format!("echo {U} > {create}")).0);
    let (ok, err) = m.sh(&format!("echo {U} > {create}"));
    assert!(!ok && err.contains("File exists"), "{err}");
    let (ok, err) = m.sh(&format!("echo junk > {mdev}/assign_adapter"));
    assert!(!ok && err.contains("Invalid argument"), "{err}");
    let (ok, err) = m.sh(&format!("echo 99999999999999999999999 > {mdev}/assign_adapter"));
    assert!(!ok && err.contains("Numerical result out of range"), "{err}");
    let (ok, err) = m.sh(&format!("echo 256 > {mdev}/assign_domain"));
    assert!(!ok && err.contains("No such device"), "{err}");
    assert!(m.sh(&format!("echo 0 > {mdev}/assign_adapter && echo 5 > {mdev}/assign_domain")).0);
    let (ok, err) = m.sh(&format!("echo 0x5 > {mdev}/assign_adapter; echo +0 > {}", m.p("bus/ap/apmask")));
    assert!(!ok && err.contains("Device or resource busy"), "{err}");
    let out = Command::new("cat").arg(format!("{mdev}/matrix")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "00.0005\n");
    let log = m.ctl(r#"{"op":"log"}"#);
    let log: Vec<String> = serde_json::from_value(log["log"].clone()).unwrap();
    assert!(log.contains(&format!("vfio_ap_mdev {U}: Can not reserve queue 00.0005 for host driver: in use by mdev")));
    let (ok, err) = m.sh(&format!("echo 2 > {mdev}/migratable"));
    assert!(!ok && err.contains("Invalid argument"), "{err}");
}

#[test]
fn control_socket_injects_failures_and_kills_the_writer_before_the_write() {
    let m = MountProc::start();
    let create = m.p("devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create");
    let before = m.ctl(r#"{"op":"writes"}"#)["count"].as_u64().unwrap();
    assert_eq!(m.ctl(r#"{"op":"fail_write","n":1,"errno":5}"#)["ok"], true);
    let (ok, err) = m.sh(&format!("echo {U} > {create}"));
    assert!(!ok && err.contains("Input/output error"), "{err}");
    assert!(!Path::new(&m.p(&format!("devices/vfio_ap/matrix/{U}"))).exists(), "a failed write has no effect");
    m.ctl(r#"{"op":"kill_write","n":1}"#);
    let status = Command::new("bash").arg("-c").arg(format!("echo {U} > {create}")).status().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the writer was SIGKILLed");
    assert!(!Path::new(&m.p(&format!("devices/vfio_ap/matrix/{U}"))).exists(), "killed before the write took effect");
    assert_eq!(m.ctl(r#"{"op":"writes"}"#)["count"].as_u64().unwrap(), before + 2);
    // hardware changes through the socket show up in the tree
    m.ctl(r#"{"op":"card","id":1,"rawType":13}"#);
    assert_eq!(std::fs::read_to_string(m.p("devices/ap/card01/raw_hwtype")).unwrap(), "13\n");
    assert_eq!(m.ctl(r#"{"op":"nonsense"}"#)["ok"], false);
}

#[test]
fn sigterm_unmounts_cleanly() {
    let mut m = MountProc::start();
    assert!(is_mounted(m.dir.path()));
    unsafe { libc::kill(m.child.id() as i32, libc::SIGTERM) };
    let status = m.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!is_mounted(m.dir.path()));
    assert!(!m.sock.exists(), "control socket removed");
}

#[test]
fn garbage_machine_files_give_a_clear_error_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("kernel: { profile: mig-v9 }\nusageDomains: [1]\n", "kernel"),
        ("kernel: { profile: base }\nusageDomains: [\"9-1\"]\n", "backwards"),
        ("kernel: { profile: base }\nusageDomains: [1]\ncards: [{ id: 0, type: CEX99 }]\n", "CEX99"),
        (
            "kernel: { profile: base }\nmaxAdapterId: 15\nusageDomains: [1]\ncards: [{ id: 20, type: CEX8 }]\n",
            "cards[0].id",
        ),
        ("kernel: { profile: base }\nusageDomains: [1]\nqueues: [{ apqn: \"05.0001\" }]\n", "queues[0].apqn"),
        ("kernel: { profile: base }\nusageDomains: [1]\nbogus: 1\n", "bogus"),
        ("\u{0}\u{1}", "m.yaml"),
    ];
    for (text, needle) in cases {
        let f = dir.path().join("m.yaml");
        std::fs::write(&f, text).unwrap();
        let o =
            Command::new(BIN).args(["sim", "dump", "--machine"]).arg(&f).arg(dir.path().join("out")).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains("m.yaml") && err.contains(needle), "{text}: {err}");
    }
}
