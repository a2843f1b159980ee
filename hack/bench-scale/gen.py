#!/usr/bin/env python3
"""hack/bench-scale helpers: generate the objects (layout: see run.sh), parse the apiserver's
apiserver_request_total, and write the report. Plain stdlib; JSON is valid YAML for kubectl."""
import datetime
import json
import os
import platform
import re
import sys

LABEL = "bench.cryptopass.dev/g"
NS = "default"


def node(i):
    return f"bench-{i}"


def docs(objs):
    # kubectl reads a stream of JSON documents separated by "---".
    return "\n---\n".join(json.dumps(o) for o in objs)


def nodes(m):
    out = []
    for i in range(m):
        labels = {"kubernetes.io/arch": "s390x", "kubernetes.io/os": "linux", "kubernetes.io/hostname": node(i),
                  f"{LABEL}{i}": "y", f"{LABEL}{(i - 1) % m}": "y"}
        out.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node(i), "labels": labels}})
    return docs(out)


def node_status(m):
    st = {"conditions": [{"type": "Ready", "status": "True", "reason": "Bench", "message": "simulated"}],
          "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
          "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}}
    return docs({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node(i)}, "status": st} for i in range(m))


def vm(i, k):
    return f"vm-{i}-{k}"


def vmis(m, per):
    out = []
    for i in range(m):
        for k in range(per):
            out.append({
                "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "metadata": {"name": vm(i, k), "namespace": NS},
                "spec": {"architecture": "s390x", "domain": {"devices": {}, "resources": {"requests": {"memory": "1Gi"}}}},
                "status": {"phase": "Running", "nodeName": node(i), "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "LiveMigratable", "status": "False", "reason": "HostDeviceNotLiveMigratable",
                     "message": "VMI uses a host device"}]},
            })
    return docs(out)


def passthroughs(m, per, out_dir):
    """One file per group of 8 chunks (created by parallel kubectl)."""
    os.makedirs(out_dir, exist_ok=True)
    objs = []
    for i in range(m):
        for k in range(per):
            objs.append({
                "apiVersion": "crypto.s390x.dev/v1alpha1", "kind": "CryptoPassthrough",
                "metadata": {"name": vm(i, k), "namespace": NS},
                "spec": {"vmName": vm(i, k), "adapters": [i % 2], "domains": [0x40 + k], "controlDomains": [0x40 + k],
                         "placement": {"standby": 1, "nodeSelector": {f"{LABEL}{i}": "y"}},
                         "migration": {"enabled": True}},
            })
    chunks = 8
    for c in range(chunks):
        part = objs[c::chunks]
        if part:
            with open(os.path.join(out_dir, f"{c}.yaml"), "w") as f:
                f.write(docs(part))


LINE = re.compile(r'^apiserver_request_total\{([^}]*)\}\s+([0-9.e+]+)$')
KV = re.compile(r'(\w+)="([^"]*)"')


def requests():
    """stdin: the apiserver's /metrics; stdout: JSON {"verb resource[/sub]": count}."""
    counts = {}
    for line in sys.stdin:
        mt = LINE.match(line.strip())
        if not mt:
            continue
        lab = dict(KV.findall(mt.group(1)))
        key = lab.get("verb", "?") + " " + lab.get("resource", "?") + ("/" + lab["subresource"] if lab.get("subresource") else "")
        if not lab.get("code", "200").startswith("2"):
            key += " → " + lab["code"]
        counts[key] = counts.get(key, 0) + float(mt.group(2))
    json.dump(counts, sys.stdout)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) // 1024 // 1024} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), {mem} RAM, {platform.system()} {platform.release()}"


# Requests the bench itself makes (creating the passthroughs, polling them): not the operator's.
BENCH_OWN = {"POST cryptopassthroughs", "LIST cryptopassthroughs"}


def report(before, after, total, t0, t_created, t_ready, hwm_kb, rss_peak_kb, fleet_hwm_kb, ctl_cpu, fleet_cpu,
           api_cpu, m, per, profile, machine_file, ready, load, rescan, load_start, pass_ms, cnode_bytes):
    b = json.load(open(before))
    a = json.load(open(after))
    total = int(total)
    m, per = int(m), int(per)
    delta = {key: a.get(key, 0) - b.get(key, 0) for key in a}
    delta = {k_: v for k_, v in delta.items() if v >= 1}
    all_req = sum(delta.values())
    own = sum(v for k_, v in delta.items() if k_ in BENCH_OWN)
    watches = sum(v for k_, v in delta.items() if k_.startswith("WATCH "))
    throttled = sum(v for k_, v in delta.items() if k_.endswith(" → 429"))
    timed_out = sum(v for k_, v in delta.items() if k_.endswith(" → 504"))
    t0, t_created, t_ready = float(t0), float(t_created), float(t_ready)
    elapsed = t_ready - t0
    ready = int(ready)
    hwm = int(hwm_kb) / 1024
    goal_t = "met" if elapsed < 60 and ready >= total else "NOT met"
    what = f"all {total} are" if ready >= total else f"stopped at the timeout: only {ready} of {total}"
    goal_m = "met" if hwm <= 50 else "NOT met"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    top = sorted(((k_, v) for k_, v in delta.items() if not k_.startswith("WATCH ")), key=lambda kv: -kv[1])[:20]
    rows = "\n".join(f"| `{k_}` | {int(v)} | {v / total:.2f} |" for k_, v in top)
    return f"""# Scale benchmark (hack/bench-scale/run.sh)

- Date: {now}
- Machine: {machine()}
- Load at the start ({load_start}), at the end ({load}); the machine is shared with other builds and test beds
- Build: `{profile}`; simulated hosts: `{machine_file}` ×{m}
- Layout: {total} passthroughs = {m} nodes × {per}; passthrough k of node i: VMI Running on node i, adapter i mod 2,
  usage + control domain 0x{0x40:02x}+k, standby 1 (nodeSelector limits candidates to nodes i and i+1: active + one
  standby per passthrough, {2 * per} mdevs per node, distinct APQNs per node).
- Agents: one `cryptopass agent-fleet` process ({m} in-process FUSE simulators + {m} agent loops, admin kubeconfig,
  re-scan every {rescan} s; passes of one agent at least {(pass_ms + ' ms') if pass_ms else 'the default interval'} apart, spec changes meanwhile applied together);
  controller: its own process, ServiceAccount token, deploy/ RBAC.

| Figure | Value | Goal |
|---|---|---|
| Time from the first create until {what} `Ready=True` | **{elapsed:.1f} s** (creating took {t_created - t0:.1f} s) | < 60 s: {goal_t} |
| Controller peak RSS (VmHWM) | **{hwm:.1f} MiB** (highest VmRSS sampled {int(rss_peak_kb) / 1024:.1f} MiB) | ≤ 50 MiB: {goal_m} |
| API requests per passthrough (all apiserver requests in the window / {total}) | **{all_req / total:.2f}** ({int(all_req)} total) | |
| … without the bench's own creates and polling lists | **{(all_req - own) / total:.2f}** | |
| apiserver answers 429 (throttled) / 504 (timed out) in the window | {int(throttled)} / {int(timed_out)} | |
| One CryptoNode at the end (`kubectl get cnode bench-0 -o json`) | {int(cnode_bytes) / 1024:.1f} KiB | |
| CPU seconds (whole run): controller / agent fleet / kube-apiserver | {ctl_cpu} / {fleet_cpu} / {api_cpu} | |
| Agent fleet peak RSS ({m} agents + simulators) | {int(fleet_hwm_kb) / 1024:.1f} MiB | |

Requests in the window (`apiserver_request_total` after − before, by verb and resource; the 20 largest; {int(watches)} WATCH
(re)starts not shown):

| verb resource | requests | per passthrough |
|---|---|---|
{rows}
"""


def main():
    cmd = sys.argv[1]
    args = sys.argv[2:]
    if cmd == "nodes":
        print(nodes(int(args[0])))
    elif cmd == "node-status":
        print(node_status(int(args[0])))
    elif cmd == "vmis":
        print(vmis(int(args[0]), int(args[1])))
    elif cmd == "passthroughs":
        passthroughs(int(args[0]), int(args[1]), args[2])
    elif cmd == "requests":
        requests()
    elif cmd == "report":
        print(report(*args))
    else:
        sys.exit(f"gen.py: unknown command {cmd}")


if __name__ == "__main__":
    main()
