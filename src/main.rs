//! The `cryptopass` binary: argument parsing only; every subcommand lives in `cryptopass::cmd`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cryptopass::cmd::{self, OutputFormat, Rules};

#[derive(Parser)]
#[command(
    name = "cryptopass",
    version,
    about = "vfio_ap crypto passthrough for KubeVirt VMs on IBM Z, kept live-migratable"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what the agent sees in a host's AP sysfs (table modelled on `lszcrypt -V`).
    Inventory {
        #[command(flatten)]
        root: SysfsRoot,
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Copy a host's AP-relevant sysfs files and links into a plain tree (plus snapshot.json).
    Snapshot {
        #[command(flatten)]
        root: SysfsRoot,
        /// Directory to create.
        out: PathBuf,
    },
    /// Offline preflight: would a guest with mdev UUID migrate from SOURCE to TARGET?
    /// Exit 0 compatible, 1 incompatible, 2 usage or read error.
    Check(CheckArgs),
    /// The node agent: without a subcommand, the long-running agent of one node (watches its
    /// CryptoNode, applies its mdevs, reports status, renews its Lease) until SIGTERM.
    Agent(Box<AgentCli>),
    /// The controller: places each CryptoPassthrough on its active node and standby targets, judges
    /// every candidate node, writes the desired mdevs, labels prepared nodes, keeps status (until SIGTERM).
    Controller(ControllerArgs),
    /// Bench only (hack/bench-scale): many simulated nodes, each an in-process FUSE simulator of
    /// one machine file with its own agent loop, in one process.
    #[command(hide = true)]
    AgentFleet(AgentFleetArgs),
    /// Print the CustomResourceDefinitions (the checked-in crds/ equals this).
    Crd,
    /// The simulated s390x AP kernel.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
}

#[derive(Args)]
struct SysfsRoot {
    /// The directory that plays /sys (a live /sys, a FUSE-mounted simulator, a snapshot or a dump).
    #[arg(long, default_value = "/sys")]
    sysfs_root: PathBuf,
}

#[derive(Args)]
struct CheckArgs {
    /// Sysfs root of the host the guest runs on now.
    #[arg(long)]
    source: PathBuf,
    /// Sysfs root of the destination host.
    #[arg(long)]
    target: PathBuf,
    /// The mdev UUID (the same on both hosts).
    #[arg(long)]
    uuid: String,
    /// Rule set: `auto` follows the kernel profile found in the trees.
    #[arg(long, value_enum, default_value_t = Rules::Auto)]
    rules: Rules,
    /// Also check target → source (the relation is not symmetric).
    #[arg(long)]
    both_ways: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// One pass without Kubernetes: make the host hold the desired mdevs, print the plan and the
    /// result per mdev. Exit 0 all as desired, 1 some refused or failed, 2 usage or read error.
    Apply(AgentApplyArgs),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct AgentCli {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    #[command(flatten)]
    run: AgentRunArgs,
}

/// What the agent acts on: shared by the long-running agent and `agent apply`.
#[derive(Args)]
struct AgentHostArgs {
    /// The directory that plays /sys.
    #[arg(long, default_value = "/sys")]
    sysfs_root: PathBuf,
    /// Where the ownership record lives (what the agent created or changed).
    #[arg(long, default_value = "/var/lib/cryptopass")]
    state_dir: PathBuf,
    /// How queues are handed to vfio_ap.
    #[arg(long, value_enum, default_value_t = cryptopass::agent::MaskMode::Manage)]
    ap_masks: cryptopass::agent::MaskMode,
    /// Also write mdevctl definitions of the agent's mdevs under DIR/matrix/<uuid> (e.g. /etc/mdevctl.d).
    #[arg(long)]
    mdevctl_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ControllerArgs {
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    serve: ControllerServeArgs,
    #[command(flatten)]
    election: ElectionArgs,
}

/// What the controller serves.
#[derive(Args)]
struct ControllerServeArgs {
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:9465")]
    metrics_addr: std::net::SocketAddr,
    /// Serve the migration gate webhooks (HTTPS: /validate-vmim, /mutate-vmim) on this address,
    /// bound once the watch caches have synced (SO_REUSEPORT).
    #[arg(long)]
    webhook_addr: Option<std::net::SocketAddr>,
    /// The webhooks' serving certificate: tls.crt and tls.key (a mounted Secret), reloaded when they
    /// change. Without it the leader manages a CA and the certificate in the Secret
    /// cryptopass-webhook-tls and the configurations' caBundle, and rotates them.
    #[arg(long, requires = "webhook_addr")]
    webhook_cert_dir: Option<PathBuf>,
    /// The webhook Service in the release namespace: self-managed certificates name its DNS names.
    #[arg(long, default_value = "cryptopass-webhook")]
    webhook_service: String,
    /// Another name of the self-managed serving certificate (an IP address or a DNS name).
    #[arg(long, hide = true)]
    webhook_cert_san: Vec<String>,
    /// Lifetime of a self-managed serving certificate (renewed at 2/3 of it).
    #[arg(long, hide = true, value_parser = lifetime)]
    webhook_cert_validity: Option<std::time::Duration>,
    /// Lifetime of a self-managed CA (rotated at 2/3 of it).
    #[arg(long, hide = true, value_parser = lifetime)]
    webhook_ca_validity: Option<std::time::Duration>,
}

impl ControllerServeArgs {
    fn webhook(self, namespace: &str) -> Option<cryptopass::webhook::Serving> {
        use cryptopass::webhook::{CertSource, Serving, certs::SelfManaged, pki};
        let certs = match self.webhook_cert_dir {
            Some(dir) => CertSource::Dir(dir),
            None => {
                let default = pki::Lifetimes::default();
                CertSource::SelfManaged(SelfManaged {
                    namespace: namespace.to_string(),
                    names: pki::Names::of_service(&self.webhook_service, namespace, &self.webhook_cert_san),
                    lifetimes: pki::Lifetimes {
                        serving: self.webhook_cert_validity.unwrap_or(default.serving),
                        ca: self.webhook_ca_validity.unwrap_or(default.ca),
                    },
                })
            }
        };
        Some(Serving { addr: self.webhook_addr?, certs })
    }
}

/// Leader election on the Lease `cryptopass-controller` in the release namespace.
#[derive(Args)]
struct ElectionArgs {
    /// This replica's identity in the Lease (default: the pod or host name and the process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

/// How a long-running component reaches the API server.
#[derive(Args)]
struct KubeArgs {
    /// A kubeconfig file; without it, the in-cluster configuration (or $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The release namespace (the agent's Lease lives there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "cryptopass")]
    namespace: String,
}

#[derive(Args)]
struct AgentRunArgs {
    /// This node's name (the CryptoNode's and the Lease's).
    #[arg(long, env = "NODE_NAME", required = true)]
    node_name: Option<String>,
    #[command(flatten)]
    host: AgentHostArgs,
    #[command(flatten)]
    kube: KubeArgs,
    /// Where /metrics (and /healthz) are served.
    #[arg(long, default_value = "0.0.0.0:9464")]
    metrics_addr: std::net::SocketAddr,
    /// Serve /healthz on this address too (e.g. for a probe on another port).
    #[arg(long)]
    health_addr: Option<std::net::SocketAddr>,
    /// Seconds between re-scans of the host without a spec change.
    #[arg(long, default_value_t = 5, hide = true)]
    rescan_seconds: u64,
}

#[derive(Args)]
struct AgentFleetArgs {
    /// Node names are PREFIX0 … PREFIX<count-1>.
    #[arg(long, default_value = "bench-")]
    prefix: String,
    #[arg(long)]
    count: usize,
    /// The machine file every node copies.
    #[arg(long)]
    machine: PathBuf,
    /// Mounts and state dirs go under DIR/<node>/.
    #[arg(long)]
    work_dir: PathBuf,
    #[command(flatten)]
    kube: KubeArgs,
    /// Seconds between re-scans of each host without a spec change.
    #[arg(long, default_value_t = 5)]
    rescan_seconds: u64,
    /// Milliseconds between the starts of two passes of one agent (spec changes meanwhile wait).
    #[arg(long, default_value_t = 1000)]
    pass_interval_ms: u64,
}

#[derive(Args)]
struct AgentApplyArgs {
    #[command(flatten)]
    host: AgentHostArgs,
    /// YAML or JSON: a list of mdevs (uuid, adapters, domains, controlDomains, migratable) or {mdevs: [...]}.
    #[arg(long)]
    desired: PathBuf,
    /// Plan only: write nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(Args)]
struct MachineArgs {
    /// A YAML machine file, or a sysfs tree (snapshot, dump, or any copy with the /sys layout).
    #[arg(long)]
    machine: PathBuf,
    /// Kernel profile; overrides the one of the machine file or the one detected from a tree.
    #[arg(long, value_enum)]
    profile: Option<cryptopass::sim::Profile>,
}

#[derive(Subcommand)]
enum SimCommand {
    /// Write the simulated host as a plain tree with the relative layout of /sys.
    Dump {
        #[command(flatten)]
        machine: MachineArgs,
        dir: PathBuf,
    },
    /// Serve the simulated host over FUSE at DIR until SIGINT/SIGTERM.
    Mount {
        #[command(flatten)]
        machine: MachineArgs,
        /// Unix socket for control requests (`cryptopass sim ctl`).
        #[arg(long)]
        control: Option<PathBuf>,
        dir: PathBuf,
    },
    /// Send one JSON request to a running `sim mount --control SOCK` and print the reply.
    Ctl {
        #[arg(long)]
        control: PathBuf,
        /// The request, e.g. '{"op":"log"}' (see README, "Simulator control").
        request: String,
    },
}

/// A certificate lifetime: a duration of at least 10 s (renewals come at 2/3 of it).
fn lifetime(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(10) {
        return Err(format!("{s} is shorter than 10s"));
    }
    Ok(d)
}

fn main() -> ExitCode {
    cmd::init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inventory { root, output } => cmd::inventory::run(&root.sysfs_root, output),
        Command::Snapshot { root, out } => cmd::snapshot::run(&root.sysfs_root, &out),
        Command::Check(a) => cmd::check::run(&cmd::check::CheckOptions {
            source: a.source,
            target: a.target,
            uuid: a.uuid,
            rules: a.rules,
            both_ways: a.both_ways,
            output: a.output,
        }),
        Command::Agent(agent) => match *agent {
            AgentCli { command: Some(AgentCommand::Apply(a)), .. } => cmd::agent::run(&cmd::agent::ApplyArgs {
                sysfs_root: a.host.sysfs_root,
                desired: a.desired,
                state_dir: a.host.state_dir,
                mode: a.host.ap_masks,
                mdevctl_dir: a.host.mdevctl_dir,
                dry_run: a.dry_run,
                output: a.output,
            }),
            AgentCli { command: None, run } => agent_run(run),
        },
        Command::Controller(c) => cmd::controller::run_blocking(cmd::controller::ControllerArgs {
            kubeconfig: c.kube.kubeconfig,
            metrics_addr: c.serve.metrics_addr,
            webhook: c.serve.webhook(&c.kube.namespace),
            namespace: c.kube.namespace,
            identity: c.election.identity,
        }),
        Command::AgentFleet(a) => agent_fleet(a),
        Command::Crd => cmd::crd::run(),
        Command::Sim { command } => match command {
            SimCommand::Dump { machine, dir } => cmd::sim::dump(&machine.machine, machine.profile, &dir),
            SimCommand::Mount { machine, control, dir } => {
                cmd::sim::mount(&machine.machine, machine.profile, control.as_deref(), &dir)
            }
            SimCommand::Ctl { control, request } => cmd::sim::ctl(&control, &request),
        },
    };
    cmd::exit(result)
}

/// The long-running agent: exit 0 after SIGTERM/SIGINT, 2 when it cannot start.
fn agent_run(a: AgentRunArgs) -> cmd::Outcome {
    let node_name = a.node_name.ok_or_else(|| cmd::Error::Usage("--node-name is required".into()))?;
    let cfg = cryptopass::agent::run::AgentConfig {
        node_name,
        sysfs_root: a.host.sysfs_root,
        state_dir: a.host.state_dir,
        mode: a.host.ap_masks,
        mdevctl_dir: a.host.mdevctl_dir,
        namespace: a.kube.namespace,
        kubeconfig: a.kube.kubeconfig,
        metrics_addr: Some(a.metrics_addr),
        health_addr: a.health_addr,
        rescan: std::time::Duration::from_secs(a.rescan_seconds.max(1)),
        pass_interval: cryptopass::agent::run::PASS_INTERVAL,
    };
    cryptopass::agent::run::run_blocking(cfg).map(|()| 0).map_err(|e| cmd::Error::Usage(format!("agent: {e}")))
}

/// `agent-fleet` (hidden): exit 0 after SIGTERM/SIGINT, 2 when it cannot start.
fn agent_fleet(a: AgentFleetArgs) -> cmd::Outcome {
    let cfg = cryptopass::agent::fleet::FleetConfig {
        nodes: (0..a.count).map(|i| format!("{}{i}", a.prefix)).collect(),
        machine: a.machine,
        work_dir: a.work_dir,
        namespace: a.kube.namespace,
        kubeconfig: a.kube.kubeconfig,
        mode: cryptopass::agent::MaskMode::Manage,
        rescan: std::time::Duration::from_secs(a.rescan_seconds.max(1)),
        pass_interval: std::time::Duration::from_millis(a.pass_interval_ms),
    };
    cryptopass::agent::fleet::run_blocking(cfg).map(|()| 0).map_err(|e| cmd::Error::Usage(format!("agent-fleet: {e}")))
}
