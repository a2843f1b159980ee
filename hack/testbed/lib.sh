# shellcheck shell=bash
# Shared by up.sh, down.sh, restart.sh and smoke.sh: a local control plane in one state dir.
#
# STATE_DIR layout (all absolute paths; nothing outside it but the cached binaries):
#   env                      `source` it: KUBECONFIG, CRYPTOPASS_TEST_KUBECONFIG, PATH, ...
#   admin.kubeconfig         token of `admin` (group system:masters), the apiserver's real CA
#   <component>.kubeconfig   kube-scheduler / kube-controller-manager / virt-controller, each with its own
#                            token identity
#   virt-controller.{crt,key} the self-signed serving certificate of virt-controller (127.0.0.1)
#   ca.crt                   the CA of the apiserver's serving certificate (from pki/)
#   pki/                     the apiserver's --cert-dir; sa.key/sa.pub (service-account signing); tokens.csv
#   etcd-data/               etcd's data dir
#   <component>.args         the component's argv, one per line (restart.sh reuses it: same ports, same flags)
#   <component>.pid          its pid, which is also its process group (started with setsid)
#   logs/<component>.log     its output
#   ports                    the loopback ports chosen for this run
TB_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler virt-controller) # start order
TB_TIMEOUT=${CRYPTOPASS_TESTBED_TIMEOUT:-120}                             # seconds, per wait

tb_say() { printf 'testbed: %s\n' "$*"; }
tb_die() {
    printf 'testbed: ERROR: %s\n' "$*" >&2
    exit 1
}

# tb_abs DIR: DIR as an absolute path without a trailing slash (need not exist).
tb_abs() { realpath -m -- "$1"; }

# tb_now_ms: milliseconds since the epoch.
tb_now_ms() { date +%s%3N; }

# tb_ours STATE PID COMPONENT: PID is alive, runs COMPONENT's binary and names STATE in its command
# line (a pid file of a killed run may name a pid that is now someone else's).
tb_ours() {
    local state=$1 pid=$2 comp=$3 exe cmdline
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    [[ ${exe##*/} == "$comp" || ${exe##*/} == "$comp (deleted)" ]] || return 1
    cmdline=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$state/"* ]]
}

# tb_find STATE: pids of every test-bed process of STATE: those of the pid files, and any process
# of our binaries whose command line names STATE (a run killed before it wrote its pid files).
tb_find() {
    local state=$1 comp pid p exe
    {
        for comp in "${TB_COMPONENTS[@]}"; do
            pid=$(cat "$state/$comp.pid" 2>/dev/null) || continue
            if tb_ours "$state" "$pid" "$comp"; then echo "$pid"; fi
        done
        for p in /proc/[0-9]*; do
            exe=$(readlink "$p/exe" 2>/dev/null) || continue
            exe=${exe##*/}
            exe=${exe% (deleted)}
            for comp in "${TB_COMPONENTS[@]}"; do
                if [[ $exe == "$comp" ]] && tb_ours "$state" "${p#/proc/}" "$comp"; then echo "${p#/proc/}"; fi
            done
        done
    } | sort -un
}

# tb_kill SIGNAL PID...: signals each PID's process group when it leads one, else the PID alone.
tb_kill() {
    local sig=$1 pid pgid
    shift
    for pid in "$@"; do
        pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') || continue
        if [[ $pgid == "$pid" ]]; then
            kill "-$sig" -- "-$pid" 2>/dev/null || true
        else
            kill "-$sig" "$pid" 2>/dev/null || true
        fi
    done
}

# tb_stop PID...: SIGTERM, wait up to 15 s, then SIGKILL and wait until they are gone.
# With TB_STOP_SIGNAL=KILL: SIGKILL at once (down.sh: the state is thrown away anyway).
tb_stop() {
    (($#)) || return 0
    local deadline pid alive
    if [[ ${TB_STOP_SIGNAL:-TERM} == KILL ]]; then
        alive=("$@")
    else
        tb_kill TERM "$@"
        deadline=$(($(date +%s) + 15))
        while :; do
            alive=()
            for pid in "$@"; do if tb_exists "$pid"; then alive+=("$pid"); fi; done
            ((${#alive[@]})) || return 0
            if (($(date +%s) >= deadline)); then break; fi
            sleep 0.1
        done
        tb_say "still running 15 s after SIGTERM, killing: ${alive[*]}"
    fi
    tb_kill KILL "${alive[@]}"
    deadline=$(($(date +%s) + 10))
    for pid in "${alive[@]}"; do
        while tb_exists "$pid"; do
            (($(date +%s) < deadline)) || tb_die "pid $pid survives SIGKILL"
            sleep 0.05
        done
    done
}

# tb_exists PID: the process still exists and may hold its files and sockets. Stopping waits for this
# to fail. The leader of a multi-threaded process shows as a zombie while its other threads still
# exit and hold its sockets (a restart on the same port would fail with "address already in use"),
# so a zombie counts as gone only once it is the last of its threads (an unreaped zombie, e.g. under
# a PID 1 that does not reap orphans, holds nothing).
tb_exists() {
    kill -0 "$1" 2>/dev/null || return 1
    [[ $(ps -o stat= -p "$1" 2>/dev/null) == Z* ]] || return 0
    local tasks=("/proc/$1/task/"*)
    ((${#tasks[@]} > 1))
}

# tb_running PID: alive and not a zombie (dying or dead: for start-up checks).
tb_running() {
    kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}

# tb_stop_all STATE: stops every process of STATE (tb_find) in reverse start order: virt-controller,
# scheduler and controller-manager, then the apiserver, then etcd (an apiserver whose etcd is gone does not exit
# on SIGTERM for a long time).
tb_stop_all() {
    local state=$1 pids pid exe group comp batch
    mapfile -t pids < <(tb_find "$state")
    ((${#pids[@]})) || return 0
    tb_say "stopping ${#pids[@]} process(es) of $state: ${pids[*]}"
    for group in "virt-controller kube-scheduler kube-controller-manager" kube-apiserver etcd; do
        batch=()
        for pid in "${pids[@]}"; do
            exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
            exe=${exe##*/}
            exe=${exe% (deleted)}
            for comp in $group; do if [[ $exe == "$comp" ]]; then batch+=("$pid"); fi; done
        done
        tb_stop "${batch[@]}"
    done
}

# tb_start STATE COMPONENT: starts COMPONENT from STATE/COMPONENT.args in its own session (so that
# down.sh can kill its whole process group and Ctrl-C of the caller does not reach it).
tb_start() {
    local state=$1 comp=$2 bin args
    mapfile -t args <"$state/$comp.args"
    bin=$(command -v "$comp") || tb_die "$comp is not on PATH"
    mkdir -p "$state/logs"
    printf '\n=== %s: started by testbed\n' "$(date -Is)" >>"$state/logs/$comp.log"
    setsid "$bin" "${args[@]}" </dev/null >>"$state/logs/$comp.log" 2>&1 &
    echo $! >"$state/$comp.pid"
    disown $! # no "Killed" notice from bash when down.sh or a failed start-up kills it
}

# tb_check_alive STATE COMPONENT...: fails (with the log tail) when one of them has died.
tb_check_alive() {
    local state=$1 comp pid
    shift
    for comp in "$@"; do
        pid=$(cat "$state/$comp.pid" 2>/dev/null) || tb_die "$comp: no pid file in $state"
        if ! tb_running "$pid"; then
            printf -- '--- last 30 lines of %s ---\n' "$state/logs/$comp.log" >&2
            tail -n 30 "$state/logs/$comp.log" >&2 || true
            tb_die "$comp (pid $pid) exited during start-up (log: $state/logs/$comp.log)"
        fi
    done
}

# tb_wait STATE WHAT "COMPONENTS" CMD...: polls CMD until it succeeds; fails fast when one of
# COMPONENTS dies, and after TB_TIMEOUT seconds (showing CMD's last output).
tb_wait() {
    local state=$1 what=$2 comps=$3 t0 out
    shift 3
    t0=$(date +%s)
    while :; do
        # shellcheck disable=SC2086 # a list of names
        tb_check_alive "$state" $comps
        if out=$("$@" 2>&1); then return 0; fi
        if (($(date +%s) - t0 >= TB_TIMEOUT)); then
            printf '%s\n' "$out" | tail -n 20 >&2
            tb_die "timed out after ${TB_TIMEOUT} s waiting for $what (logs: $state/logs/)"
        fi
        sleep 0.2
    done
}

# tb_free_ports N: N distinct free TCP ports on 127.0.0.1 (held together while chosen).
tb_free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# tb_kubeconfig FILE SERVER CA USER TOKEN: a self-contained kubeconfig with token auth.
tb_kubeconfig() {
    local file=$1 server=$2 ca=$3 user=$4 token=$5
    : >"$file.tmp"
    chmod 600 "$file.tmp"
    cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cryptopass-testbed
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$ca")
users:
- name: $user
  user:
    token: $token
contexts:
- name: $user@cryptopass-testbed
  context:
    cluster: cryptopass-testbed
    user: $user
current-context: $user@cryptopass-testbed
EOF
    mv -f "$file.tmp" "$file"
}

# tb_bindir: the test bed's binaries for K8S_VERSION (hack/testbed/build.sh makes them).
tb_bindir() {
    local cache=${CRYPTOPASS_CACHE:-$HOME/.cache/cryptopass}
    echo "${CRYPTOPASS_TESTBED_DIR:-$cache/testbed/k8s-${K8S_VERSION:-1.37.2}}"
}

# tb_port STATE NAME: the port recorded as NAME in STATE/ports.
tb_port() {
    local name port
    while read -r name port; do
        if [[ $name == "$2" ]]; then
            echo "$port"
            return 0
        fi
    done <"$1/ports"
    return 1
}

# tb_serving STATE COMPONENT: COMPONENT answers ok on its secure port: kube-scheduler's /readyz (which
# includes its informers' sync with the apiserver), kube-controller-manager's /healthz (it has no
# /readyz). Both paths are allowed without credentials; their serving certificates are self-signed in
# memory, so TLS is not verified here (tb_wait's liveness check makes sure the process is ours).
tb_serving() {
    local port path=/healthz
    port=$(tb_port "$1" "$2") || return 1
    [[ $2 == kube-scheduler ]] && path=/readyz
    [[ $(curl -sk --max-time 2 "https://127.0.0.1:$port$path") == ok ]]
}

# tb_virt_controller_leader STATE: virt-controller answers GET /leader over TLS (verified against its
# self-signed certificate) with 200 and {"apiserver":{"leader":"true"}}: it holds its Lease and runs
# its controllers.
tb_virt_controller_leader() {
    local port out
    port=$(tb_port "$1" virt-controller) || return 1
    out=$(curl -sS --fail --max-time 2 --cacert "$1/virt-controller.crt" "https://127.0.0.1:$port/leader") || return 1
    echo "$out"
    [[ $(tr -d ' \n' <<<"$out") == *'"leader":"true"'* ]]
}

# tb_virt_controller_confined: virt-controller-scope.yaml is in force: a server-side dry-run create
# of a pod in `default` as virt-controller's user is refused by the policy (KUBECONFIG: the admin).
tb_virt_controller_confined() {
    local out
    if out=$(printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: testbed-probe\nspec:\n  containers: [{name: c, image: x}]\n' |
        kubectl --request-timeout=5s -n default create --dry-run=server -f - \
            --as=system:serviceaccount:kubevirt:kubevirt-controller 2>&1); then
        echo "not refused yet: $out"
        return 1
    fi
    echo "$out"
    grep -q cryptopass-testbed-virt-controller-scope <<<"$out"
}
