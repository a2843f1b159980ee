//! A simulated s390x host and its agent, as real processes of our binary: `cryptopass sim mount
//! --machine M --control SOCK DIR`, then `cryptopass agent --node-name N --sysfs-root DIR
//! --kubeconfig <the node's token> --namespace cryptopass`. The simulator is read back through
//! its control socket and its mount. Drop kills the agent, stops the simulator (which unmounts)
//! and clears a stale mount.
//!
//! Children die with the test (`PR_SET_PDEATHSIG`, tied to the spawning thread: spawn from the
//! test's own thread or a runtime worker, not from `spawn_blocking`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use kube::Client;
use kube::api::Api;

use cryptopass::ap::Inventory;
use cryptopass::api::CryptoNode;
use cryptopass::sim::control::Reply;

use super::cluster::Cluster;
use super::identity::{Identity, agent_identity};
use super::nodes::FakeNode;
use super::{RELEASE_NAMESPACE, wait_until};

pub const BIN: &str = env!("CARGO_BIN_EXE_cryptopass");

pub struct SimAgent {
    pub node: String,
    /// The mount point: the sysfs root of this host.
    pub root: PathBuf,
    pub control: PathBuf,
    pub state_dir: PathBuf,
    pub metrics_addr: SocketAddr,
    pub identity: Identity,
    /// Extra arguments of `cryptopass agent` (e.g. `--ap-masks observe`).
    pub agent_args: Vec<String>,
    log: PathBuf,
    mount: Child,
    agent: Option<Child>,
    _root_dir: tempfile::TempDir,
    work: tempfile::TempDir,
}

fn spawn(cmd: &mut Command) -> Child {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address")
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped yet.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Reaps `child` within `limit` (no panic: also used in `Drop`); `None` when it did not exit.
fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl SimAgent {
    /// Mounts `machine` and starts the agent of `node` over it.
    pub async fn start(c: &Cluster, node: &FakeNode, machine: PathBuf) -> SimAgent {
        SimAgent::start_with(c, node, machine, &[]).await
    }

    /// [`SimAgent::start`] with extra agent arguments.
    pub async fn start_with(c: &Cluster, node: &FakeNode, machine: PathBuf, agent_args: &[&str]) -> SimAgent {
        let mut a = SimAgent::mount(c, node, machine).await;
        a.agent_args = agent_args.iter().map(|s| s.to_string()).collect();
        a.start_agent();
        a
    }

    /// Only the simulator (and the node's identity); [`SimAgent::start_agent`] starts the agent.
    pub async fn mount(c: &Cluster, node: &FakeNode, machine: PathBuf) -> SimAgent {
        let identity = agent_identity(c, &node.name).await;
        let root_dir = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        let control = work.path().join("ctl.sock");
        let log = work.path().join("agent.log");
        let mount_log = std::fs::File::create(work.path().join("sim.log")).expect("sim log");
        let mount = spawn(
            Command::new(BIN)
                .args(["sim", "mount", "--machine"])
                .arg(&machine)
                .arg("--control")
                .arg(&control)
                .arg(root_dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(mount_log),
        );
        let probe = root_dir.path().join("bus/ap/apmask");
        let mut a = SimAgent {
            node: node.name.clone(),
            root: root_dir.path().to_path_buf(),
            control,
            state_dir: work.path().join("state"),
            metrics_addr: free_addr(),
            identity,
            agent_args: Vec::new(),
            log,
            mount,
            agent: None,
            _root_dir: root_dir,
            work,
        };
        let mount_died = |a: &mut SimAgent| a.mount.try_wait().ok().flatten().is_some();
        wait_until(Duration::from_secs(20), &format!("the simulator of {} ({})", a.node, machine.display()), || {
            assert!(!mount_died(&mut a), "sim mount exited: {}", a.sim_log());
            probe.exists() && a.control.exists()
        });
        a
    }

    /// Starts the agent (its log goes on in the same file).
    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none(), "the agent of {} is running", self.node);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("agent log");
        let child = spawn(
            Command::new(BIN)
                .args(["agent", "--node-name", &self.node, "--sysfs-root"])
                .arg(&self.root)
                .arg("--state-dir")
                .arg(&self.state_dir)
                .arg("--kubeconfig")
                .arg(&self.identity.kubeconfig)
                .args(["--namespace", RELEASE_NAMESPACE, "--metrics-addr", &self.metrics_addr.to_string()])
                .args(&self.agent_args)
                .env("CRYPTOPASS_LOG", "info,kube=warn,tower=warn,hyper=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log),
        );
        self.agent = Some(child);
    }

    /// SIGTERM and wait: the agent's exit status.
    pub fn stop_agent(&mut self) -> ExitStatus {
        let mut child = self.agent.take().expect("a running agent");
        signal(&child, libc::SIGTERM);
        match wait_with_deadline(&mut child, Duration::from_secs(20)) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the agent of {} did not exit within 20 s of SIGTERM:\n{}", self.node, self.log());
            }
        }
    }

    /// SIGKILL (a crash) and reap.
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A clean restart: SIGTERM, wait, start again.
    pub fn restart_agent(&mut self) {
        let status = self.stop_agent();
        assert!(status.success(), "the agent exited with {status} on SIGTERM:\n{}", self.log());
        self.start_agent();
    }

    /// Whether the agent process is still running.
    pub fn agent_running(&mut self) -> bool {
        self.agent.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// One request on the simulator's control socket.
    pub fn ctl(&self, request: serde_json::Value) -> Reply {
        cryptopass::sim::control::request(&self.control, &request.to_string())
            .unwrap_or_else(|e| panic!("control socket of {}: {e}", self.node))
    }

    /// Writes the simulated kernel has taken so far.
    pub fn writes(&self) -> u64 {
        self.ctl(serde_json::json!({"op": "writes"})).count.expect("a write count")
    }

    /// Marks an mdev in use by a guest (or released).
    pub fn set_in_use(&self, uuid: &str, in_use: bool) {
        let r = self.ctl(serde_json::json!({"op": "in_use", "uuid": uuid, "value": in_use}));
        assert!(r.ok, "in_use {uuid}: {:?}", r.error);
    }

    /// The host as the agent reads it (through the mount).
    pub fn inventory(&self) -> Inventory {
        cryptopass::sysfs::read_inventory(&self.root).unwrap_or_else(|e| panic!("inventory of {}: {e}", self.node))
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// An attribute below the sysfs root (`None` when it cannot be read).
    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    pub fn has_mdev(&self, uuid: &str) -> bool {
        self.path(&format!("devices/vfio_ap/matrix/{uuid}")).exists()
    }

    /// The node's CryptoNode as `client` sees it.
    pub async fn crypto_node(&self, client: &Client) -> Option<CryptoNode> {
        Api::<CryptoNode>::all(client.clone()).get_opt(&self.node).await.ok().flatten()
    }

    /// `GET path` on the agent's HTTP address: (status code, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.metrics_addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.metrics_addr).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    }

    /// The agent's `/metrics` text (empty when unreachable).
    pub fn metrics(&self) -> String {
        self.http_get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// The value of one sample line of `/metrics`, e.g. `cryptopass_agent_mdevs{state="synced"}`.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics();
        text.lines().find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
    }

    /// The agent's log so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn sim_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("sim.log")).unwrap_or_default()
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.kill_agent();
        signal(&self.mount, libc::SIGTERM);
        if wait_with_deadline(&mut self.mount, Duration::from_secs(10)).is_none() {
            let _ = self.mount.kill();
            let _ = self.mount.wait();
        }
        cryptopass::sim::fuse::unmount_stale(&self.root);
        if std::thread::panicking() {
            eprintln!("--- agent log of {} ---\n{}", self.node, self.log());
        }
    }
}
