"""The layering rules from docs/architecture.md, enforced."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import REPO

PKG = REPO / "hpcnn"
LAUNCHER_VARS = ("SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "HOROVOD_", "OMPI_", "PMI_")
SLURM_COMMANDS = {"scontrol", "sacct", "sbatch", "squeue", "scancel"}
COMMANDS_MODULE = PKG / "slurm" / "site" / "commands.py"

# docs/architecture.md's list, top to bottom: a module imports only from its own layer or the ones below it
# (at any depth: function-level imports too). A part is a top-level module or package, slurm's split in three.
LAYERS = [
    ("cli/", {"__main__", "cli"}),
    ("lessons", {"lessons"}),
    ("tune/", {"tune"}),
    ("scale/", {"scale"}),
    ("compare/, runlist", {"compare", "runlist"}),
    ("slurm", {"slurm"}),
    ("slurm/jobs/", {"slurm.jobs"}),
    ("bench/, predict/, explain/", {"bench", "predict", "explain"}),
    ("run", {"run"}),
    ("objectives", {"objectives"}),
    ("ssl/", {"ssl"}),
    ("train/", {"train"}),
    ("data/, models/, dist/", {"data", "models", "dist"}),
    ("monitor/", {"monitor"}),
    ("slurm/site/", {"slurm.site"}),
    ("env/", {"env"}),
    ("config/, rundir", {"config", "rundir"}),
    ("results", {"results"}),
    ("files, rundir_lock, regular_files, tables, progress", {"files", "rundir_lock", "regular_files", "tables",
                                                            "progress"}),
    ("errors, __init__", {"errors", "hpcnn"}),
]
# Login-node modules never import torch or torchvision (at any depth), not even when both are installed ...
NO_TORCH_PARTS = {"config", "rundir", "env", "slurm", "slurm.site", "slurm.jobs", "monitor", "scale",
                  "compare", "runlist", "results", "files", "rundir_lock", "regular_files", "tables", "progress", "errors",
                  "hpcnn"}
NO_TORCH_ELSEWHERE = {"hpcnn.predict", "hpcnn.predict.listing", "hpcnn.predict.outputs", "hpcnn.predict.manifest",
                      "hpcnn.predict.labelled", "hpcnn.tune", "hpcnn.tune.payload", "hpcnn.tune.plots", "hpcnn.tune.ranks", "hpcnn.tune.space",
                      "hpcnn.tune.spec", "hpcnn.tune.status", "hpcnn.tune.study", "hpcnn.tune.submit",
                      "hpcnn.tune.trials",
                      # the login-node front ends: the verb registry, its helpers, Slurm, compare, scale, monitor, runs
                      "hpcnn.cli", "hpcnn.cli.args", "hpcnn.cli.jobs", "hpcnn.cli.compare", "hpcnn.cli.scale",
                      "hpcnn.cli.monitor", "hpcnn.cli.runs"}
# ... and the other front ends (hpcnn.cli.train, data, bench, explain, predict, tune, weights, lessons) import it only
# inside the command that needs it (hpcnn.lessons, the library, is a compute-side tool).
LAZY_TORCH_PARTS = {"cli"}
TORCH_PARTS = ("train", "dist", "models", "data", "run", "ssl", "objectives", "bench", "explain", "lessons")
def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def part(module: str) -> str:
    """hpcnn.slurm.jobs.payload -> slurm.jobs; hpcnn.train.loop -> train; hpcnn -> hpcnn."""
    parts = module.split(".")
    if len(parts) == 1:
        return "hpcnn"
    return ".".join(parts[1:3]) if parts[1] == "slurm" and len(parts) > 2 else parts[1]


LAYER_OF = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}
NO_TORCH_MODULES = sorted(m for m in MODULES if part(m) in NO_TORCH_PARTS or m in NO_TORCH_ELSEWHERE)
LOGIN_MODULES = sorted(NO_TORCH_MODULES + [m for m in MODULES if part(m) in LAZY_TORCH_PARTS])


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Nodes under `if TYPE_CHECKING:`: never executed, so not part of the import graph."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for b in node.body for n in ast.walk(b)}
    return out


def resolve_imports(tree: ast.AST, name: str, is_package: bool = False) -> list[tuple[ast.AST, str]]:
    """(node, absolute module) for every import in module ``name``, at any depth (function-level ones too).

    Relative imports are resolved (``from ..train import x`` in hpcnn/cli/jobs.py -> hpcnn.train);
    ``from PKG import X`` means the submodule PKG.X when there is one, else PKG itself.
    """
    skip = _type_checking_only(tree)
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((node, sub if sub in MODULES else base))
    return out


def imports(path: Path, tree: ast.AST | None = None) -> list[tuple[ast.AST, str]]:
    tree = ast.parse(path.read_text()) if tree is None else tree
    return resolve_imports(tree, module_name(path), path.name == "__init__.py")


def needs_torch(target: str) -> bool:
    if target.split(".")[0] in ("torch", "torchvision"):
        return True
    return target.startswith("hpcnn.") and part(target) in TORCH_PARTS and target not in NO_TORCH_ELSEWHERE


def _payload_calls(tree: ast.AST) -> set[int]:
    """Nodes inside a ``*Payload.__call__``: what a Slurm task runs on a compute node (the job's entry)."""
    return {id(n) for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and c.name.endswith("Payload")
            for f in c.body if isinstance(f, ast.FunctionDef) and f.name == "__call__" for n in ast.walk(f)}


def test_imports_are_resolved_like_python_does():
    found = {target for _, target in imports(PKG / "cli" / "jobs.py")}
    assert {"hpcnn.errors", "hpcnn.config", "hpcnn.slurm.site.commands", "hpcnn.slurm.jobs.records",
            "hpcnn.slurm.jobs.handles", "hpcnn.slurm"} <= found


BLOCKED_IMPORT_PROBE = textwrap.dedent("""
    import json, sys, traceback
    from pathlib import Path
    tried = []

    class Blocker:  # torch and torchvision are installed here: refuse them, and note who asked
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                tried.append(name + " <- " + "".join(traceback.format_stack(limit=6)[:-1]))
                raise ImportError("blocked: " + name)

    sys.meta_path.insert(0, Blocker())
    tmp, modules = Path(sys.argv[1]), json.loads(sys.argv[2])
    failed = {}
    for module in modules:
        try:
            __import__(module)
        except Exception as err:
            failed[module] = repr(err)
    # what a login node does with a job that names torchvision's model and weights: load, pre-flight, render
    cache = tmp / "cache"
    (cache / "hub" / "checkpoints").mkdir(parents=True)
    (cache / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"weights")
    from hpcnn.config import load_job
    from hpcnn.config.weights_names import parse_weights_name, weights_source
    from hpcnn.slurm.jobs.submission import plan_job
    cfg = load_job(None, ["model.name=resnet18", "model.weights=IMAGENET1K_V1", f"model.weights_cache={cache}",
                          f"train.runs_dir={tmp / 'runs'}"])
    assert weights_source(cfg.model).name == "resnet18-f37072fd.pth"
    assert parse_weights_name("resnet50").entry == "IMAGENET1K_V2"
    plan = plan_job(cfg, "local")
    # a run directory read back: its config, its weights for a new job
    from hpcnn import rundir
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "model_final.pt").write_bytes(b"weights")
    rundir.write_config(run, cfg)
    assert rundir.config_for_resume(run, ["train.epochs=7"]).train.epochs == 7
    assert weights_source(load_job(None, [f"model.weights={run}"]).model).name == "model_final.pt"
    print(json.dumps({"failed": failed, "tried": tried, "script": len(plan.script)}))
""")


def test_login_node_modules_import_and_work_without_torch_or_torchvision(tmp_path):
    """Every login-node module imports, and a job naming torchvision weights is loaded and pre-flighted, while an
    import hook refuses torch and torchvision, which are installed here: no silent `try: import torchvision`."""
    assert {"hpcnn.config.load", "hpcnn.rundir", "hpcnn.slurm.site.preflight", "hpcnn.predict.manifest"} <= \
        set(LOGIN_MODULES)
    proc = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT_PROBE, str(tmp_path), json.dumps(LOGIN_MODULES)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, report["failed"]
    assert report["tried"] == [], "\n".join(report["tried"])
    assert report["script"] > 0


@pytest.mark.parametrize("module", NO_TORCH_MODULES)
def test_no_torch_mentioned_in_login_node_modules(module):
    """No import of torch, torchvision or the training stack, at any depth, guarded or not; a payload's
    ``__call__`` (run on a compute node) is the one place allowed to."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    allowed = _payload_calls(tree)
    bad = [target for node, target in imports(path, tree) if id(node) not in allowed and needs_torch(target)]
    assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_relative_imports_of_the_training_stack_are_seen():
    probe = ast.parse("from ...train import fit\nfrom ... import run\nfrom .. import site\n"
                      "def later():\n    from ...data.sources import fetch\nfrom ... import rundir, runlist\n")
    targets = [t for _, t in resolve_imports(probe, "hpcnn.slurm.jobs.payload")]
    assert targets == ["hpcnn.train", "hpcnn.run", "hpcnn.slurm.site", "hpcnn.rundir", "hpcnn.runlist",
                       "hpcnn.data.sources"]
    assert [needs_torch(t) for t in targets] == [True, True, False, False, False, True]


def import_graph() -> dict[str, set[str]]:
    graph = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for _, target in imports(path):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, deterministic order)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_find_cycle_reports_the_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_even_through_function_level_imports():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_has_a_layer():
    assert sorted(m for m in MODULES if part(m) not in LAYER_OF) == []
    assert len(LAYER_OF) == sum(len(names) for _, names in LAYERS), "a part is in two layers"


def upward_imports() -> list[str]:
    """Imports (function-level ones too) of a layer above the importer's, but for a payload's ``__call__``."""
    found = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        allowed = _payload_calls(tree)
        for node, target in imports(path, tree):
            if target in MODULES and id(node) not in allowed and LAYER_OF[part(target)] < LAYER_OF[part(name)]:
                found.append(f"{name} ({LAYERS[LAYER_OF[part(name)]][0]}) imports {target} "
                             f"({LAYERS[LAYER_OF[part(target)]][0]}), line {node.lineno}")
    return found


def test_imports_only_point_down_the_layers():
    assert upward_imports() == []


def diagram_layers(page: str) -> list[tuple[str, str]]:
    """(label, text) per layer of the page's diagram: a label line, then its indented continuation lines."""
    layers: list[tuple[str, str]] = []
    for line in page.split("```")[1].strip("\n").splitlines():
        if line.startswith(" "):
            layers[-1] = (layers[-1][0], layers[-1][1] + " " + line.strip())
        else:
            label, _, text = re.split(r"(\s{2,})", line, maxsplit=1)
            layers.append((label, text))
    return layers


def test_layers_are_the_ones_the_architecture_page_lists():
    """The page's diagram names these layers in this order, and marks exactly the torch-free ones (no torch)."""
    diagram = diagram_layers((REPO / "docs" / "architecture.md").read_text())
    assert [label for label, _ in diagram] == [label for label, _ in LAYERS]
    for (label, text), (_, parts) in zip(diagram, LAYERS):
        assert ("(no torch)" in text) == (parts <= NO_TORCH_PARTS), label


def test_a_payload_runs_one_of_the_job_entries():
    """Slurm tasks run a payload; its ``__call__`` imports the entry of a training, benchmark, prediction or
    search job (the one place an import may point up), or runs another payload (a sweep task: TrainPayload)."""
    entries = {"hpcnn.run", "hpcnn.bench.run", "hpcnn.predict.task", "hpcnn.tune.worker"}
    payloads = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for cls in ast.walk(tree):
            if isinstance(cls, ast.ClassDef) and cls.name.endswith("Payload"):
                body = [n for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__call__"
                        for n in ast.walk(f)]
                calls = {id(n) for n in body}
                payloads[f"{name}.{cls.name}"] = {t for node, t in imports(path, tree) if id(node) in calls} | {
                    "payload" for n in body if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("Payload")}
    assert len(payloads) >= 4
    assert {p: targets for p, targets in payloads.items() if not targets & (entries | {"payload"})} == {}


def test_processes_that_join_a_group_start_with_run_bootstrap():
    """run (training), bench/run (benchmark) and cli/predict (multi-process prediction) share one bootstrap."""
    for path in (PKG / "run.py", PKG / "bench" / "run.py", PKG / "cli" / "predict.py"):
        called = {ast.unparse(n.func) for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)}
        assert "bootstrap" in called, f"{path.relative_to(REPO)} does not call run.bootstrap"


def test_sbatch_runs_inside_submitit_reached_only_from_executor():
    """submitit's private ``_submit_command`` runs sbatch; hpcnn reaches it in slurm/jobs/executor.py alone."""
    users = sorted(str(p.relative_to(REPO)) for p in PKG.rglob("*.py") if "_submit_command" in p.read_text())
    assert users == ["hpcnn/slurm/jobs/executor.py"]


def _is_environ(node: ast.AST) -> bool:
    text = ast.unparse(node)
    return text.endswith("environ") or text.endswith("getenv")


def launcher_reads(source: str, where: str = "<probe>") -> list[str]:
    """`os.environ[...]`, `environ.get(...)`, `os.getenv(...)`, `... in os.environ` with a launcher variable."""
    found = []
    for node in ast.walk(ast.parse(source)):
        keys = []
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            keys = [node.slice]
        elif isinstance(node, ast.Call) and node.args and (
                _is_environ(node.func) or (isinstance(node.func, ast.Attribute) and _is_environ(node.func.value))):
            keys = [node.args[0]]
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            keys = [node.left]
        for key in keys:
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith(LAUNCHER_VARS):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_launcher_read_detection():
    probe = ("import os\nfrom os import environ, getenv\na = os.environ['SLURM_JOB_ID']\nb = environ.get('RANK')\n"
             "c = getenv(\"SLURM_PROCID\")\nd = 'WORLD_SIZE' in os.environ\ne = os.environ.get('HOME')\n"
             "f = os.environ.get('HPCNN_STATE_DIR')\n")
    assert sorted(line.split(":")[1] for line in launcher_reads(probe)) == ["3", "4", "5", "6"]


def test_only_env_reads_launcher_variables():
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.relative_to(PKG).parts[0] == "env":  # env detects World and JobInfo for everyone else
            continue
        offenders += launcher_reads(path.read_text(), str(path.relative_to(REPO)))
    assert not offenders, offenders


def slurm_argv_strings(source: str, where: str = "<probe>") -> list[str]:
    """Slurm command names used as a list/tuple element or call argument: an argv about to be run."""
    found = []
    for node in ast.walk(ast.parse(source)):
        values = node.elts if isinstance(node, (ast.List, ast.Tuple)) else node.args if isinstance(node, ast.Call) \
            else []
        found += [f"{where}:{v.lineno}: {v.value!r}" for v in values
                  if isinstance(v, ast.Constant) and v.value in SLURM_COMMANDS]
    return found


def test_slurm_argv_detection():
    probe = ("subprocess.run(['scontrol', 'requeue', job])\nrun(('sacct', '-j', x))\nshutil.which('sbatch')\n"
             "log('sbatch failed')\n")
    assert sorted(line.split(":")[1] for line in slurm_argv_strings(probe)) == ["1", "2", "3"]


def test_slurm_commands_run_only_in_site_commands():
    """scontrol/sacct/sbatch/squeue/scancel appear as argv strings only in hpcnn/slurm/site/commands.py."""
    offenders = []
    for path in PKG.rglob("*.py"):
        if path != COMMANDS_MODULE:
            offenders += slurm_argv_strings(path.read_text(), str(path.relative_to(REPO)))
    assert not offenders, offenders
