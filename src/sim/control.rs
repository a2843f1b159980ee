//! The simulator's control channel (architecture.md, "Simulator control"): one JSON request and
//! one JSON reply per line on a unix socket. It never appears in the tree.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Errno, FaultAction, SharedSim, Sim, lock};
use crate::ap::{ApFunctions, Apqn, functions};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Mark an mdev attached to a running guest (or released).
    InUse {
        uuid: String,
        value: bool,
    },
    /// Mark a migration of the device in progress (`migratable` writes get EBUSY).
    Migrating {
        uuid: String,
        value: bool,
    },
    /// Change a card's hardware.
    Card {
        id: u8,
        #[serde(default, rename = "rawType")]
        raw_type: Option<u8>,
        #[serde(default)]
        hwtype: Option<u8>,
        #[serde(default)]
        functions: Option<u32>,
        #[serde(default)]
        online: Option<bool>,
        #[serde(default)]
        config: Option<bool>,
        #[serde(default)]
        chkstop: Option<bool>,
    },
    /// Change a queue's hardware.
    Queue {
        apqn: Apqn,
        #[serde(default)]
        functions: Option<u32>,
        #[serde(default, rename = "seState")]
        se_state: Option<u8>,
        #[serde(default)]
        online: Option<bool>,
        #[serde(default)]
        config: Option<bool>,
        #[serde(default)]
        chkstop: Option<bool>,
    },
    /// The `n`-th write from now fails with `errno` and has no effect.
    FailWrite {
        n: u64,
        errno: Errno,
    },
    /// The writer of the `n`-th write from now is SIGKILLed before the write takes effect.
    KillWrite {
        n: u64,
    },
    ClearFaults,
    /// Write count and the writes so far.
    Writes,
    /// The kernel log.
    Log,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<String>>,
}

fn ok() -> Reply {
    Reply { ok: true, ..Reply::default() }
}
fn err(e: impl Into<String>) -> Reply {
    Reply { ok: false, error: Some(e.into()), ..Reply::default() }
}

impl Sim {
    /// Executes one control request.
    pub fn control(&mut self, req: Request) -> Reply {
        let k = &mut self.kernel;
        match req {
            Request::InUse { uuid, value } | Request::Migrating { uuid, value } if !k.mdevs.contains_key(&uuid) => {
                let _ = value;
                err(format!("no mdev {uuid}"))
            }
            Request::InUse { uuid, value } => {
                if let Some(m) = k.mdevs.get_mut(&uuid) {
                    m.in_use = value;
                }
                ok()
            }
            Request::Migrating { uuid, value } => {
                if let Some(m) = k.mdevs.get_mut(&uuid) {
                    m.migrating = value;
                }
                ok()
            }
            Request::Card { id, raw_type, hwtype, functions, online, config, chkstop } => {
                let Some(c) = k.cards.get_mut(&id) else { return err(format!("no card {id:02x}")) };
                if let Some(t) = raw_type {
                    c.raw_type = t;
                    c.hwtype = hwtype.unwrap_or(crate::ap::types::compatible_hwtype(t));
                }
                if let Some(f) = functions {
                    c.functions = ApFunctions(f);
                }
                c.online = online.unwrap_or(c.online);
                c.chkstop = chkstop.unwrap_or(c.chkstop);
                if let Some(cfg) = config {
                    c.config = cfg;
                    k.cfg_adapters.set(id, cfg);
                }
                ok()
            }
            Request::Queue { apqn, functions: f, se_state, online, config, chkstop } => {
                if !k.queue_exists(apqn) {
                    return err(format!("no queue {apqn}"));
                }
                let card = k.queue_functions(apqn).unwrap_or_default();
                let q = k.queues.entry(apqn).or_default();
                let mut fx = f.map(ApFunctions).or(q.functions).unwrap_or(card);
                if let Some(se) = se_state {
                    fx = ApFunctions((fx.0 & !functions::SE_STATE) | ((u32::from(se) & 3) << 14));
                }
                if f.is_some() || se_state.is_some() {
                    q.functions = Some(fx);
                }
                q.online = online.or(q.online);
                q.config = config.or(q.config);
                q.chkstop = chkstop.or(q.chkstop);
                ok()
            }
            Request::FailWrite { n, errno } => {
                self.faults.push((self.writes + n.max(1), FaultAction::Fail(errno)));
                ok()
            }
            Request::KillWrite { n } => {
                self.faults.push((self.writes + n.max(1), FaultAction::Kill));
                ok()
            }
            Request::ClearFaults => {
                self.faults.clear();
                ok()
            }
            Request::Writes => {
                Reply { count: Some(self.writes), writes: serde_json::to_value(&self.write_log).ok(), ..ok() }
            }
            Request::Log => Reply { log: Some(self.kernel.log.clone()), ..ok() },
        }
    }
}

fn handle(sim: &SharedSim, line: &str) -> Reply {
    match serde_json::from_str::<Request>(line) {
        Ok(req) => lock(sim).control(req),
        Err(e) => err(format!("bad request: {e}")),
    }
}

fn serve_conn(sim: &SharedSim, stream: UnixStream) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = handle(sim, &line);
        let mut s = serde_json::to_string(&reply).unwrap_or_else(|_| "{\"ok\":false}".into());
        s.push('\n');
        out.write_all(s.as_bytes())?;
    }
    Ok(())
}

/// Listens on `path` (replacing a stale socket) and serves requests on a background thread.
pub fn serve(sim: SharedSim, path: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sim = sim.clone();
            std::thread::spawn(move || {
                if let Err(e) = serve_conn(&sim, stream) {
                    tracing::debug!("control connection ended: {e}");
                }
            });
        }
    });
    Ok(())
}

/// Client: sends one request line and returns the reply.
pub fn request(path: &Path, request: &str) -> std::io::Result<Reply> {
    let mut stream = UnixStream::connect(path)?;
    stream.write_all(request.trim_end().as_bytes())?;
    stream.write_all(b"\n")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
