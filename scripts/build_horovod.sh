#!/usr/bin/env bash
# Build (once) and install Horovod 0.28.1 into a venv, for hpcnn's optional `dist.backend: horovod`.
#
#   bash scripts/build_horovod.sh                # venv: $VENV, else .venv
#   bash scripts/build_horovod.sh /path/to/venv
#
# Why a script: Horovod 0.28.1 (the last release, 2023-06, sdist only) compiles with -std=c++14,
# but torch >= 2.10 headers need C++20. A g++ wrapper that appends -std=gnu++20 after every other
# flag builds it with the source unchanged (~5.5 min on 2 cores). The wheel is cached outside the
# repo, keyed by torch version and flavour, so later runs on the same machine reinstall it in ~2 s:
#   ${HPCNN_WHEEL_CACHE:-/var/cache/hpcnn/wheels}/torch-<version>-<cuda|cpu>/horovod-0.28.1-cpXY-...whl
# Environment: HPCNN_WHEEL_CACHE (cache root), HPCNN_BUILD_JOBS (make jobs, default 2),
# HPCNN_HOROVOD_REBUILD=1 (ignore the cached wheel), CUDA_HOME (default /usr/local/cuda).
set -euo pipefail

HOROVOD_VERSION=0.28.1
T0=$EPOCHREALTIME
say() { echo "[build_horovod] $*"; }
die() { echo "[build_horovod] error: $*" >&2; exit 1; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=$(cd "${1:-${VENV:-$REPO/.venv}}" 2>/dev/null && pwd) || die "no venv at ${1:-${VENV:-$REPO/.venv}}"
PY="$VENV/bin/python"
[ -x "$PY" ] || die "no Python at $PY — create the venv first (bash scripts/setup.sh) or pass its path"
# --- what we build against (read from torch/version.py: importing torch takes seconds) ------------
read -r TORCH_VERSION TORCH_CUDA PY_TAG < <("$PY" -c '
import importlib.util, os, sys
spec = importlib.util.find_spec("torch")
if spec is None or not spec.submodule_search_locations:
    sys.exit(0)
info = {}
with open(os.path.join(spec.submodule_search_locations[0], "version.py")) as f:
    exec(f.read(), info)
print(info["__version__"], info.get("cuda") or "none", "cp%d%d" % sys.version_info[:2])') || true
[ -n "${PY_TAG:-}" ] || die "torch is not installed in $VENV — Horovod is built against the installed torch, so install it first (bash scripts/setup.sh)"
# Horovod's CMake turns its CUDA code on when torch is a CUDA build and torch finds a toolkit the
# way torch.utils.cpp_extension does: $CUDA_HOME, $CUDA_PATH, nvcc on PATH, else /usr/local/cuda if
# it exists. It then needs HOROVOD_CUDA_HOME. With no toolkit it builds CPU-only (all gloo needs).
CUDA_HOME=${CUDA_HOME:-${CUDA_PATH:-}}
if [ -z "$CUDA_HOME" ] && [ -d /usr/local/cuda ]; then
    CUDA_HOME=/usr/local/cuda
fi
if [ -z "$CUDA_HOME" ] && command -v nvcc >/dev/null; then  # resolved: /usr/local/bin/nvcc may be a link
    CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
fi
USE_CUDA=0
if [ "$TORCH_CUDA" != none ] && [ -n "$CUDA_HOME" ]; then
    USE_CUDA=1
    [ -x "$CUDA_HOME/bin/nvcc" ] || die "torch is a CUDA build and sees a CUDA toolkit at $CUDA_HOME, but it has no bin/nvcc, so Horovod's CUDA build would fail — install the toolkit's compiler there, or point CUDA_HOME at a complete toolkit"
fi
FLAVOUR=$([ "$USE_CUDA" = 1 ] && echo "cuda$TORCH_CUDA" || echo cpu)
say "venv $VENV: torch $TORCH_VERSION (CUDA $TORCH_CUDA), $PY_TAG; Horovod build flavour: $FLAVOUR"

# --- cache location ------------------------------------------------------------------------------
CACHE_ROOT=${HPCNN_WHEEL_CACHE:-/var/cache/hpcnn/wheels}
if [ -z "${HPCNN_WHEEL_CACHE:-}" ] && ! mkdir -p "$CACHE_ROOT" 2>/dev/null; then
    CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/hpcnn/wheels
    say "/var/cache/hpcnn is not writable for $(id -un); caching in $CACHE_ROOT instead"
fi
CACHE_DIR="$CACHE_ROOT/torch-$TORCH_VERSION-$FLAVOUR"
mkdir -p "$CACHE_DIR" || die "cannot create the wheel cache $CACHE_DIR — set HPCNN_WHEEL_CACHE to a writable directory"
[ -w "$CACHE_DIR" ] || die "wheel cache $CACHE_DIR is not writable — set HPCNN_WHEEL_CACHE to a writable directory"

find_wheel() {
    local w
    for w in "$CACHE_DIR"/horovod-"$HOROVOD_VERSION"-"$PY_TAG"-*.whl; do
        [ -f "$w" ] && { echo "$w"; return 0; }
    done
    return 1
}

# --- build dependencies (a fresh Debian 12 machine has none of them) -------------------------
ensure_build_deps() {
    local missing=()
    command -v g++ >/dev/null || missing+=(g++)
    command -v make >/dev/null || missing+=(make)
    command -v cmake >/dev/null || missing+=(cmake)
    local include
    include=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    if [ ! -f "$include/Python.h" ]; then
        local pyver
        pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        missing+=("python$pyver-dev")
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || die "missing build tools: ${missing[*]} — install them (apt-get install ${missing[*]}) or run as root"
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null || die "missing build tools: ${missing[*]} and no apt-get to install them"
    say "installing build tools with apt-get: ${missing[*]}"
    local t=$EPOCHREALTIME
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    say "apt-get took $(since "$t")"
}

build_wheel() {
    ensure_build_deps
    local cmake_version
    cmake_version=$(cmake --version | awk 'NR == 1 { print $3 }')
    # Horovod pip-installs an old cmake into a temp dir when it finds one older than 3.13.
    if [ "$(printf '3.13\n%s\n' "$cmake_version" | sort -V | head -n 1)" != 3.13 ]; then
        die "cmake $cmake_version is older than 3.13 (Horovod's minimum); install a newer cmake"
    fi
    # --no-build-isolation builds with the venv's own tools: setuptools (no longer in 3.12+ venvs),
    # bdist_wheel (in setuptools >= 70.1, else the wheel package) and packaging (Horovod's setup.py).
    local tools=()
    "$PY" -c "import setuptools" 2>/dev/null || tools+=(setuptools)
    "$PY" -c "import setuptools.command.bdist_wheel" 2>/dev/null || "$PY" -c "import wheel" 2>/dev/null \
        || tools+=(wheel)
    "$PY" -c "import packaging" 2>/dev/null || tools+=(packaging)
    if [ ${#tools[@]} -gt 0 ]; then
        say "installing build tools into the venv: ${tools[*]}"
        "$PY" -m pip install -q "${tools[@]}"
    fi
    BUILD_WORK=$(mktemp -d "${TMPDIR:-/tmp}/hpcnn-horovod-build.XXXXXX")
    trap 'rm -rf "$BUILD_WORK"' EXIT
    local work=$BUILD_WORK
    # The wrapper puts the standard last so it wins over Horovod's -std=c++14.
    local gxx
    gxx=$(command -v g++)
    printf '#!/bin/sh\nexec %s "$@" -std=gnu++20\n' "$gxx" > "$work/g++20"
    chmod +x "$work/g++20"
    local env_vars=(
        CXX="$work/g++20"
        HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
        HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=GLOO
        MAKEFLAGS="-j${HPCNN_BUILD_JOBS:-2}"
    )
    if [ "$USE_CUDA" = 1 ]; then
        env_vars+=(CUDAHOSTCXX="$gxx" CUDA_HOME="$CUDA_HOME" HOROVOD_CUDA_HOME="$CUDA_HOME"
                   HOROVOD_BUILD_CUDA_CC_LIST="${HOROVOD_BUILD_CUDA_CC_LIST:-90}")
    fi
    say "building Horovod $HOROVOD_VERSION (about 5-6 min on 2 cores; log: $work/build.log)"
    local t=$EPOCHREALTIME
    # --no-cache-dir: pip's own wheel cache is keyed by the sdist, not by torch, and could hand back
    # a wheel built against another torch.
    if ! env "${env_vars[@]}" "$PY" -m pip wheel --no-deps --no-build-isolation --no-cache-dir -v \
            "horovod==$HOROVOD_VERSION" -w "$work/out" > "$work/build.log" 2>&1; then
        cp "$work/build.log" "$CACHE_DIR/build-failed.log" 2>/dev/null || true
        tail -n 40 "$work/build.log" >&2
        die "Horovod build failed after $(since "$t") — full log in $CACHE_DIR/build-failed.log"
    fi
    local built
    built=$(ls "$work"/out/horovod-"$HOROVOD_VERSION"-*.whl 2>/dev/null | head -n 1)
    [ -n "$built" ] || die "pip reported success but left no Horovod wheel in $work/out"
    # Rename into place so a concurrent reader never sees a half-written wheel.
    cp "$built" "$CACHE_DIR/.$(basename "$built").part"
    mv "$CACHE_DIR/.$(basename "$built").part" "$CACHE_DIR/$(basename "$built")"
    rm -f "$CACHE_DIR/build-failed.log"
    say "built $(basename "$built") ($(du -h "$built" | cut -f1)) in $(since "$t")"
    rm -rf "$work"
    trap - EXIT
}

# --- get a wheel: cached, or build it (one builder at a time per cache key) ----------------------
exec 9> "$CACHE_DIR/.lock"
if ! flock -n 9; then
    say "another build for this torch holds $CACHE_DIR/.lock; waiting (up to 30 min)"
    flock -w 1800 9 || die "gave up waiting for the lock on $CACHE_DIR/.lock"
fi
if [ "${HPCNN_HOROVOD_REBUILD:-0}" = 1 ]; then
    rm -f "$CACHE_DIR"/horovod-"$HOROVOD_VERSION"-"$PY_TAG"-*.whl
fi
if WHEEL=$(find_wheel); then
    say "reusing cached wheel $WHEEL"
else
    build_wheel
    WHEEL=$(find_wheel) || die "the wheel vanished from $CACHE_DIR right after the build"
fi
flock -u 9

# --- install into the venv (skipped when this exact wheel is already there) ---------------------
STAMP="$VENV/.hpcnn-horovod-wheel"
WANT="$(basename "$CACHE_DIR")/$(basename "$WHEEL") $(sha256sum "$WHEEL" | cut -d' ' -f1)"
verify() { "$PY" -c "import horovod.torch as hvd; hvd.init(); assert hvd.size() == 1; hvd.shutdown()" ; }
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && verify >/dev/null 2>&1; then
    say "Horovod $HOROVOD_VERSION already installed from this wheel"
else
    t=$EPOCHREALTIME
    rm -f "$STAMP"
    # --force-reinstall replaces a Horovod built against another torch; deps are resolved apart so
    # that pip does not reinstall pyyaml/psutil/... needlessly.
    "$PY" -m pip install -q --no-deps --force-reinstall "$WHEEL"
    "$PY" -m pip install -q "$WHEEL"
    say "installed into $VENV in $(since "$t")"
    verify || die "Horovod installed but 'import horovod.torch as hvd; hvd.init()' fails in $PY (see above)"
    echo "$WANT" > "$STAMP"
fi
say "ok: horovod.torch imports and initialises; total $(since "$T0")"
