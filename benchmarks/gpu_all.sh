#!/usr/bin/env bash
# Every GPU measurement hpcnn still owes, in one bounded run on a borrowed GPU machine (no network).
#
#   OUT=/some/dir bash benchmarks/gpu_all.sh        # run from the repository root; default OUT=./gpu_out
#
# Writes JSON (and pytest's junit XML) under $OUT: gpu_tests.xml, one <name>.json per benchmarks/gpu_*.py
# (each called with --out), trainer_overhead*.json, allreduce.json, and gpu_all.json: every step's exit
# code and seconds. monitoring.json (benchmarks/gpu_monitoring.py) carries driver_query_cost, the NVML
# driver's own time per sample that docs/monitoring.md lists as pending; it is written before the
# training part, so a step timeout does not lose it. Each step has its own timeout, a failing step does
# not stop the others, and the whole run stops starting new steps after HPCNN_GPU_BUDGET_S seconds
# (default 480, i.e. ~8 minutes).
# PYTHON defaults to .venv/bin/python when present, else python3; the repository goes on PYTHONPATH, so a
# machine with torch but without an hpcnn install works.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
BUDGET=${HPCNN_GPU_BUDGET_S:-480}
START=$(date +%s)
STEPS_JSON="$OUT/gpu_all.steps"
: > "$STEPS_JSON"

# step NAME SECONDS CMD...: run CMD under `timeout`, capped by what is left of the budget; log rc and seconds.
step() {
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET - ($(date +%s) - START) ))
    if [ "$left" -lt 15 ]; then
        echo "{\"step\": \"$name\", \"rc\": null, \"skipped\": \"out of time\"}" >> "$STEPS_JSON"
        echo "== $name: skipped (budget spent)"; return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (timeout ${limit}s): $*"
    local t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - t0 )), \"timeout_s\": $limit}" >> "$STEPS_JSON"
    echo "   rc=$rc ($(( $(date +%s) - t0 )) s); log: $OUT/$name.log"
}

"$PYTHON" - <<'PY' > "$OUT/machine.json" 2>&1
import importlib.util, json, os, platform, socket, torch
cuda = torch.cuda.is_available()
# what hpcnn imports at run time; a lent GPU machine may lack some (no network there: carry wheels)
needed = ["torchvision", "yaml", "jinja2", "numpy", "PIL", "sklearn", "matplotlib", "pynvml", "pytest", "submitit"]
print(json.dumps({"host": socket.gethostname(), "cpus": os.cpu_count(), "python": platform.python_version(),
                  "torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count(),
                  "gpu": torch.cuda.get_device_name(0) if cuda else None,
                  "missing_modules": [m for m in needed if importlib.util.find_spec(m) is None]}))
PY
NGPU=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)

# in order of priority: the budget cuts from the end
step gpu_tests 150 "$PYTHON" -m pytest -m gpu tests/gpu -q -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml"
step trainer_overhead 110 "$PYTHON" benchmarks/bench_trainer_overhead.py --cases resnet50,resnet18_32 \
    --rounds 15 --out "$OUT/trainer_overhead.json"
for script in benchmarks/gpu_*.py; do
    [ -e "$script" ] || continue
    name=$(basename "$script" .py); name=${name#gpu_}
    limit=120; [ "$name" = pipeline ] && limit=150
    step "$name" "$limit" "$PYTHON" "$script" --out "$OUT/$name.json"
done
[ "$NGPU" -ge 1 ] && step bench_resnet50 60 "$PYTHON" -m hpcnn bench model.name=resnet50 data.image_size=224 \
    train.batch_size=256 train.amp=bf16 train.channels_last=true optim.name=sgd train.deterministic=false \
    --warmup 10 --steps 20 --out "$OUT/bench_resnet50.json"
step trainer_overhead_compiled 150 "$PYTHON" benchmarks/bench_trainer_overhead.py --cases resnet18_32_compiled \
    --rounds 15 --out "$OUT/trainer_overhead_compiled.json"
if [ "$NGPU" -ge 2 ]; then
    step allreduce 60 "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m hpcnn bench \
        allreduce --sizes 1K..256M --iters 20 --out "$OUT/allreduce.json"
else
    echo "{\"benchmark\": \"allreduce\", \"skipped\": \"$NGPU GPU(s): NCCL needs one GPU per rank, at least 2\"}" \
        > "$OUT/allreduce.json"
fi

"$PYTHON" - "$STEPS_JSON" "$OUT/gpu_all.json" "$BUDGET" <<'PY'
import json, sys
steps = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
json.dump({"budget_s": int(sys.argv[3]), "steps": steps}, open(sys.argv[2], "w"), indent=2)
PY
rm -f "$STEPS_JSON"
echo "done in $(( $(date +%s) - START )) s; results in $OUT"
