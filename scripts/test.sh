#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian 12 machine (root), then run it:
# the venv, a throw-away local Slurm (apt packages, daemons started by the tests), Horovod
# (built once and cached). Extra arguments go to pytest, e.g. `bash scripts/test.sh -k resume`.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/setup.sh
bash tests/slurm/cluster.sh install
if [ "${HPCNN_SKIP_HOROVOD:-0}" != 1 ]; then
    if ! bash scripts/build_horovod.sh .venv; then
        echo "[test] Horovod build failed" >&2
        [ "${CI:-}" = true ] && exit 1   # CI must run the Horovod tests, not skip them
    fi
fi
if [ "${CI:-}" = true ]; then
    # daemons must not outlive a CI run, even when pytest is killed
    trap 'bash tests/slurm/cluster.sh down >/dev/null 2>&1 || true' EXIT
fi
echo "[test] setup took $((SECONDS - start)) s"
.venv/bin/python -m pytest -q --durations=15 "$@"
