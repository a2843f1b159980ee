//! Admission latency of the migration gate (testbed.md, "Measuring admission latency"; issue 6
//! item 9): VMIMs created through the real kube-apiserver with `dryRun=All` at a fixed rate, for a
//! VMI with a passthrough and one without, side by side in one run: alternately in a namespace our
//! webhook configurations apply to and in one they do not (the same objects in both), so that both
//! series see the same load; the cluster holds PASSTHROUGHS passthroughs (all of them in the
//! matchConditions map literal).
//! Prints p50/p99 of each and the difference, for the server as it was (ALPN http/1.1 only) and as
//! it is (h2 offered), kube-apiserver's own time per webhook call (its metrics), the handler's own
//! latency from its histogram, one call straight to the server over HTTPS, and the handler alone
//! in process (the axum Router, no socket) over the same caches.
//! Goals: handler p99 < 200 µs; added p99 < 2 ms at 100 requests/s (architecture.md).
//!
//! Needs the test bed: `hack/bench-admission/run.sh` starts one and runs this; without
//! `CRYPTOPASS_TEST_KUBECONFIG` the bench says so and does nothing.
//! Env: RATE (requests/s, default 100), DURATION (s per VMI, default 15), PASSTHROUGHS (1000).

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/webhook_cluster/mod.rs"]
mod webhook_cluster;
#[path = "../tests/webhook_support/mod.rs"]
mod webhook_support;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use futures::StreamExt;
use kube::Client;
use rustls::ServerConfig;
use serde_json::{Value, json};
use tower::ServiceExt;

use cryptopass::webhook::tls::{CertDir, Certificates};
use cryptopass::webhook::{AdmissionMetrics, Gate, VALIDATE_PATH, router, scope};
use webhook_cluster::*;
use webhook_support::*;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

struct Series {
    p50: Duration,
    p99: Duration,
    n: usize,
    failed: usize,
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// `rate` dry-run creates per second for `secs` seconds, alternating between `with` (a namespace
/// our webhooks apply to) and `without` (the same objects in a namespace they do not), so that both
/// series see the same load; each request in its own task (a slow answer does not slow the rate).
async fn side_by_side(client: &Client, with: &Value, without: &Value, rate: u64, secs: u64) -> (Series, Series) {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..rate * secs {
        tick.tick().await;
        let gated = i % 2 == 0;
        let (client, vmim) = (client.clone(), if gated { with.clone() } else { without.clone() });
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = migrate_dry(&client, &vmim).await.is_ok();
            (gated, t.elapsed(), ok)
        }));
    }
    let (mut lat, mut failed) = ([Vec::new(), Vec::new()], [0, 0]);
    for t in tasks {
        match t.await {
            Ok((gated, d, true)) => lat[usize::from(!gated)].push(d),
            Ok((gated, _, false)) => failed[usize::from(!gated)] += 1,
            Err(_) => failed[0] += 1,
        }
    }
    let mut out = lat.into_iter().zip(failed).map(|(mut l, failed)| {
        l.sort();
        Series { p50: quantile(&l, 0.5), p99: quantile(&l, 0.99), n: l.len(), failed }
    });
    let with = out.next().expect("two series");
    (with, out.next().expect("two series"))
}

/// The handler alone: the Router in process on the same caches, one review at a time.
async fn handler_alone(gate: &Gate, review: &Value, n: usize) -> (Duration, Duration) {
    let body = review.to_string();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let req = axum::http::Request::post(VALIDATE_PATH)
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .expect("a request");
        let t = Instant::now();
        let resp = router(gate.clone()).oneshot(req).await.expect("an answer");
        let _ = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("a body");
        lat.push(t.elapsed());
    }
    lat.sort();
    (quantile(&lat, 0.5), quantile(&lat, 0.99))
}

fn main() {
    if std::env::var_os(support::cluster::KUBECONFIG_ENV).is_none() {
        eprintln!("bench admission: skipped (no test bed; run hack/bench-admission/run.sh)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    rt.block_on(run());
}

/// Namespace `ns`: passthroughs p0..p<count-1> for vm0..vm<count-1> (p0 active on `a` with the
/// prepared standby `b`), VMIs vm0 and vm-plain running on `a`.
async fn populate(client: &Client, ns: &str, count: usize, uuid0: &str, a: &str, b: &str) {
    let nodes = vec![
        node_entry(a, "Active", true, "Equivalent", json!([])),
        node_entry(b, "Standby", true, "Equivalent", json!([])),
    ];
    let nowhere = json!({"nodeSelector": {"cryptopass-bench-nowhere": "none"}});
    futures::stream::iter(0..count)
        .map(|i| {
            let (client, nodes, nowhere) = (client.clone(), nodes.clone(), nowhere.clone());
            let uuid = if i == 0 { uuid0.to_string() } else { uuid::Uuid::new_v4().to_string() };
            async move {
                let mut pt = passthrough(ns, &format!("p{i}"), &format!("vm{i}"), &uuid);
                pt["spec"]["placement"] = nowhere;
                passthrough_with_status(&client, ns, pt, status(&uuid, a, true, nodes)).await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    running_vmi(client, ns, "vm0", a, json!({})).await;
    running_vmi(client, ns, "vm-plain", a, json!({})).await;
}

async fn run() {
    let (rate, secs, count) = (env("RATE", 100), env("DURATION", 15), env("PASSTHROUGHS", 1000) as usize);
    let c = support::cluster().await;
    let client = c.client.clone();
    let gated = support::TestNamespace::create(&c, "bench-admission").await;
    let open = support::TestNamespace::create(&c, "bench-admission-off").await;
    let uuid0 = uuid::Uuid::new_v4().to_string();
    let k0 = key(&uuid0);
    let a = support::FakeNode::create_with_labels(&c, "bench-a", &[(k0.as_str(), "true")]).await;
    let b = support::FakeNode::create_with_labels(&c, "bench-b", &[(k0.as_str(), "true")]).await;
    let t = Instant::now();
    populate(&client, &gated.name, count, &uuid0, &a.name, &b.name).await;
    populate(&client, &open.name, 1, &uuid0, &a.name, &b.name).await;
    eprintln!("{count} passthroughs with status in {:?}", t.elapsed());

    let entries = (0..count).map(|i| format!("{}/vm{i}", gated.name)).collect();
    let expression = scope::expression(&entries);
    let ours = vmim(&gated.name, "vm0", None, &[]);
    let plain = vmim(&gated.name, "vm-plain", None, &[]);
    // The webhook server on a runtime of its own: in a cluster it is another process, and the load
    // generator's tasks here must not delay its answers.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the server");
    println!(
        "\nAdmission through kube-apiserver, dryRun=All, {rate} requests/s alternating between a namespace with our \
         webhooks and one without, {secs} s per VMI, {count} passthroughs ({} characters of matchConditions)",
        expression.len()
    );
    let mut last = None;
    for (variant, http1_only) in [("ALPN http/1.1 only (as before)", true), ("ALPN h2 and http/1.1", false)] {
        let (c2, ns) = (client.clone(), gated.name.clone());
        let server = server_rt
            .spawn(async move {
                if http1_only {
                    GateServer::start_with(&c2, &ns, |dir| Arc::new(Http1Only(dir, OnceLock::new()))).await
                } else {
                    GateServer::start(&c2, &ns).await
                }
            })
            .await
            .expect("the webhook server");
        let registered = Registered::install(&c, &gated.name, &server, &expression).await;
        // In effect once vm0's VMIM comes back mutated by this server.
        support::eventually("our webhooks to be in effect", || {
            let (client, v, k0, before) =
                (client.clone(), ours.clone(), k0.clone(), server.requests("mutate", "mutated"));
            let server = &server;
            async move {
                let o = migrate_dry(&client, &v).await.ok()?;
                (o.data["spec"]["addedNodeSelector"][&k0] == "true" && server.requests("mutate", "mutated") > before)
                    .then_some(())
            }
        })
        .await;
        let calls_before = webhook_calls(&client).await;
        let (gated_ours, base_ours) =
            side_by_side(&client, &ours, &vmim(&open.name, "vm0", None, &[]), rate, secs).await;
        let calls = webhook_calls(&client).await;
        let (gated_plain, base_plain) =
            side_by_side(&client, &plain, &vmim(&open.name, "vm-plain", None, &[]), rate, secs).await;
        let served = server.requests("validate", "allowed");
        let (live50, live99) = (server.duration_bucket("validate", 0.5), server.duration_bucket("validate", 0.99));
        let row =
            |name: &str, s: &Series| format!("| {name} | {} | {} | {} | {} |", us(s.p50), us(s.p99), s.n, s.failed);
        let added = |g: &Series, b: &Series| {
            format!("{} (p50 {})", us(g.p99.saturating_sub(b.p99)), us(g.p50.saturating_sub(b.p50)))
        };
        println!("\n### Webhook server with {variant}\n");
        println!("| series | p50 | p99 | answered | failed |\n|---|---|---|---|---|");
        println!("{}", row("VMI with passthrough, without our webhooks", &base_ours));
        println!("{}", row("VMI with passthrough, with our webhooks", &gated_ours));
        println!("{}", row("VMI without passthrough, without our webhooks", &base_plain));
        println!("{}", row("VMI without passthrough, with our webhooks", &gated_plain));
        println!("\nadded p99 with passthrough: {}", added(&gated_ours, &base_ours));
        println!("added p99 without passthrough: {}", added(&gated_plain, &base_plain));
        println!(
            "validations served during the series: {served}; handler latency from cryptopass_admission_duration_seconds: \
             p50 ≤ {} p99 ≤ {} (bucket bounds)",
            us(live50),
            us(live99)
        );
        for (name, (sum, n)) in &calls {
            let (sum0, n0) = calls_before.get(name).copied().unwrap_or_default();
            if n > &n0 {
                println!(
                    "kube-apiserver's own time per call of {name} (apiserver_admission_webhook_admission_duration_seconds, \
                     mean of {} calls): {}",
                    n - n0,
                    us(Duration::from_secs_f64((sum - sum0) / (n - n0)))
                );
            }
        }
        // Gone before the next variant: kube-apiserver no longer calls this server.
        drop(registered);
        let mut quiet = 0;
        while quiet < 3 {
            let before = server.requests("mutate", "mutated");
            let _ = migrate_dry(&client, &ours).await;
            quiet = if server.requests("mutate", "mutated") == before { quiet + 1 } else { 0 };
        }
        last = Some(server);
    }
    let server = last.expect("a server");
    // Our side of one call: a client on one keep-alive HTTPS connection (HTTP/1.1), one at a time.
    let (d50, d99) = direct(&server, &review("CREATE", ours.clone()), 5_000).await;
    println!(
        "\none call straight to the server (TLS keep-alive connection, HTTP/1.1, sequential; what kube-apiserver waits \
         for per webhook): p50 {} p99 {}",
        us(d50),
        us(d99)
    );

    let gate = Gate { caches: server.watches.caches.clone(), metrics: AdmissionMetrics::default() };
    let mutated = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"namespace": gated.name, "generateName": "kubevirt-migrate-vm-"},
        "spec": {"vmiName": "vm0", "addedNodeSelector": {k0.clone(): "true"}}});
    let (h50, h99) = handler_alone(&gate, &review("CREATE", mutated), 20_000).await;
    let (p50, p99) = handler_alone(&gate, &review("CREATE", plain.clone()), 20_000).await;
    println!(
        "\nhandler alone (in process, {count} passthroughs cached): validate a steered VMIM p50 {} p99 {}; a VMI without passthrough p50 {} p99 {}",
        us(h50),
        us(h99),
        us(p50),
        us(p99)
    );
    server_rt.shutdown_background();
}

/// kube-apiserver's `apiserver_admission_webhook_admission_duration_seconds` sum and count per
/// webhook name (over its other labels).
async fn webhook_calls(client: &Client) -> std::collections::BTreeMap<String, (f64, f64)> {
    let req = axum::http::Request::get("/metrics").body(Vec::new()).expect("a request");
    let text = client.request_text(req).await.expect("kube-apiserver's /metrics");
    let mut out = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_admission_webhook_admission_duration_seconds_") else { continue };
        let (sum, rest) = match (rest.strip_prefix("sum{"), rest.strip_prefix("count{")) {
            (Some(r), _) => (true, r),
            (_, Some(r)) => (false, r),
            _ => continue,
        };
        let Some(name) = rest.split("name=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let e = out.entry(name.to_string()).or_default();
        if sum {
            e.0 += v;
        } else {
            e.1 += v;
        }
    }
    out
}

/// `n` validations of `review` on one connection to `server`, one after the other.
async fn direct(server: &GateServer, review: &Value, n: usize) -> (Duration, Duration) {
    let mut conn = Conn::open(server.addr, &server.pki.ca_pem()).await.expect("a connection");
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (code, _) = conn.post(VALIDATE_PATH, review).await.expect("an answer");
        lat.push(t.elapsed());
        assert_eq!(code, 200);
    }
    lat.sort();
    (quantile(&lat, 0.5), quantile(&lat, 0.99))
}

/// The server as it was before HTTP/2: ALPN offers http/1.1 only.
struct Http1Only(Arc<CertDir>, OnceLock<Arc<ServerConfig>>);

impl Certificates for Http1Only {
    fn current(&self) -> Option<Arc<ServerConfig>> {
        let config = self.1.get_or_init(|| {
            let mut c = (*self.0.config()).clone();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(c)
        });
        Some(config.clone())
    }
}
