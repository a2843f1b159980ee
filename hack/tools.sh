#!/usr/bin/env bash
# Installs the tools `make test` needs, pinned and cached by version:
#   cargo-nextest  (test runner)
#   docutils       (rst2man: mdevctl's build script renders its man page with it)
#   mdevctl        (the real one; tests drive it against simulated sysfs trees)
#
# Layout under ${CRYPTOPASS_CACHE:-$HOME/.cache/cryptopass}:
#   bin/                         stable names, symlinks into tools/ (put this on PATH)
#   tools/<tool>-<version>/      one install root per tool and version
#   stamps/<tool>-<version>      written last, after the installed tool ran once; a tool
#                                without its stamp is removed and installed again
#   logs/<tool>-<version>.log    build output of the last install attempt
#
# Idempotent: a tool whose stamp exists and whose binary still runs is not touched, so a
# second run takes about a second. Any failure exits non-zero with a message naming the step.
set -euo pipefail

NEXTEST_VERSION=0.9.151   # needs rustc >= 1.91
DOCUTILS_VERSION=0.21.2   # >= 0.21 ships `rst2man`; older releases only `rst2man.py`
MDEVCTL_VERSION=1.4.0

CACHE=${CRYPTOPASS_CACHE:-$HOME/.cache/cryptopass}
BIN=$CACHE/bin
TOOLS=$CACHE/tools
STAMPS=$CACHE/stamps
LOGS=$CACHE/logs

say() { printf 'tools: %s\n' "$*"; }
die() {
    printf 'tools: ERROR: %s\n' "$*" >&2
    exit 1
}

for cmd in cargo rustc python3 flock; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' is not on PATH (needed to install the test tools)"
done

mkdir -p "$BIN" "$TOOLS" "$STAMPS" "$LOGS"
# One installer at a time per cache (two `make test` in parallel would race on the same dirs).
exec 9>"$CACHE/.tools.lock"
flock 9

start=$(date +%s)

# link NAME TARGET: $BIN/NAME -> TARGET (replaced atomically).
link() {
    ln -sfn "$2" "$BIN/$1.tmp.$$"
    mv -Tf "$BIN/$1.tmp.$$" "$BIN/$1"
}

# fresh TOOL VERSION CHECK...: true when the stamp exists and CHECK runs.
fresh() {
    local tool=$1 version=$2
    shift 2
    [[ -f $STAMPS/$tool-$version ]] && "$@" >/dev/null 2>&1
}

# run_logged TOOL VERSION CMD...: runs CMD with its output in the log; on failure shows the tail.
run_logged() {
    local log=$LOGS/$1-$2.log
    shift 2
    if ! "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2 || true
        die "'$*' failed (full log: $log)"
    fi
}

# --- docutils (rst2man) -------------------------------------------------------------------
docutils_root=$TOOLS/docutils-$DOCUTILS_VERSION
# `rst2man` from docutils >= 0.21, or `rst2man.py` from older releases: link whichever exists.
rst2man_of() {
    local f
    for f in "$docutils_root/venv/bin/rst2man" "$docutils_root/venv/bin/rst2man.py"; do
        [[ -x $f ]] && { echo "$f"; return; }
    done
    echo "$docutils_root/venv/bin/rst2man"
}
if fresh docutils "$DOCUTILS_VERSION" "$(rst2man_of)" --version; then
    say "docutils $DOCUTILS_VERSION: cached"
else
    say "docutils $DOCUTILS_VERSION: installing into $docutils_root (python3 venv + pip)"
    t0=$(date +%s)
    rm -rf "$docutils_root"
    python3 -m venv "$docutils_root/venv" >"$LOGS/docutils-$DOCUTILS_VERSION.log" 2>&1 ||
        die "python3 -m venv failed (Debian: apt-get install python3-venv); see $LOGS/docutils-$DOCUTILS_VERSION.log"
    run_logged docutils "$DOCUTILS_VERSION" \
        "$docutils_root/venv/bin/python" -m pip install --disable-pip-version-check --no-input \
        "docutils==$DOCUTILS_VERSION"
    "$(rst2man_of)" --version >/dev/null 2>&1 || die "docutils $DOCUTILS_VERSION: no working rst2man or rst2man.py"
    touch "$STAMPS/docutils-$DOCUTILS_VERSION"
    say "docutils $DOCUTILS_VERSION: installed in $(($(date +%s) - t0)) s"
fi
link rst2man "$(rst2man_of)"
# mdevctl's build.rs runs $RST2MAN (default: `rst2man` from PATH) to render its man page.
export PATH=$BIN:$PATH RST2MAN=$BIN/rst2man

# --- cargo crates -------------------------------------------------------------------------
# cargo_tool TOOL VERSION BIN-NAME CHECK-FUNCTION [EXTRA cargo install ARGS...]
# CHECK-FUNCTION gets the installed binary's path and must succeed for the tool to count.
cargo_tool() {
    local tool=$1 version=$2 bin=$3 check=$4
    shift 4
    local root=$TOOLS/$tool-$version
    if fresh "$tool" "$version" "$check" "$root/bin/$bin"; then
        say "$tool $version: cached"
    else
        say "$tool $version: building with cargo install --locked into $root (minutes, once per machine)"
        local t0
        t0=$(date +%s)
        rm -rf "$root"
        # A private target dir: never the crate's; kept only if the build fails (a retry resumes).
        CARGO_TARGET_DIR=$CACHE/build-$tool-$version \
            run_logged "$tool" "$version" \
            cargo install --locked --version "$version" --root "$root" --no-track "$@" "$tool"
        rm -rf "$CACHE/build-$tool-$version"
        [[ -x $root/bin/$bin ]] || die "cargo install $tool $version did not produce $root/bin/$bin"
        "$check" "$root/bin/$bin" >>"$LOGS/$tool-$version.log" 2>&1 ||
            die "$root/bin/$bin does not run after the install (see $LOGS/$tool-$version.log)"
        touch "$STAMPS/$tool-$version"
        say "$tool $version: installed in $(($(date +%s) - t0)) s"
    fi
    link "$bin" "$root/bin/$bin"
}

check_nextest() { "$1" nextest --version; }

# mdevctl refuses to start (even for --version) unless its config and script dirs exist under
# $MDEVCTL_ENV_ROOT (default /), so check it against a scratch root laid out as it wants.
check_mdevctl() {
    local r rc=0
    r=$(mktemp -d)
    mkdir -p "$r"/{etc/mdevctl.d,usr/lib/mdevctl}/scripts.d/{callouts,notifiers} "$r/sys"
    MDEVCTL_ENV_ROOT=$r "$1" --version | grep -qx "mdevctl $MDEVCTL_VERSION" || rc=1
    MDEVCTL_ENV_ROOT=$r "$1" list || rc=1
    rm -rf "$r"
    return "$rc"
}

# nextest without the self-update feature: it never updates itself, and builds fewer crates.
cargo_tool cargo-nextest "$NEXTEST_VERSION" cargo-nextest check_nextest \
    --no-default-features --features default-no-update

cargo_tool mdevctl "$MDEVCTL_VERSION" mdevctl check_mdevctl
link lsmdev "$TOOLS/mdevctl-$MDEVCTL_VERSION/bin/mdevctl" # mdevctl acts as `lsmdev` by argv[0]

# --- summary ------------------------------------------------------------------------------
say "ready in $(($(date +%s) - start)) s: $BIN"
say "  $("$BIN/cargo-nextest" nextest --version | head -n 1)"
say "  mdevctl $MDEVCTL_VERSION (needs MDEVCTL_ENV_ROOT with its scripts.d dirs: see README.md)"
say "  rst2man $("$BIN/rst2man" --version | head -n 1)"
