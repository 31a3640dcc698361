"""The layering rules from docs/architecture.md, enforced."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

PKG = REPO / "hpcnn"
TORCH_FREE = ["hpcnn", "hpcnn.config", "hpcnn.env", "hpcnn.errors", "hpcnn.monitor", "hpcnn.slurm", "hpcnn.slurm.cli",
              "hpcnn.slurm.site", "hpcnn.slurm.jobs", "hpcnn.results", "hpcnn.files",
              "hpcnn.scale", "hpcnn.scale_cli", "hpcnn.compare", "hpcnn.compare_cli", "hpcnn.monitor_cli"]
LAUNCHER_VARS = ("SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "HOROVOD_", "OMPI_", "PMI_")
SLURM_COMMANDS = {"scontrol", "sacct", "sbatch", "squeue", "scancel"}
COMMANDS_MODULE = PKG / "slurm" / "site" / "commands.py"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Nodes under `if TYPE_CHECKING:`: never executed, so not part of the import graph."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for b in node.body for n in ast.walk(b)}
    return out


def resolve_imports(tree: ast.AST, name: str, is_package: bool = False) -> list[tuple[ast.AST, str]]:
    """(node, absolute module) for every import in module ``name``, at any depth (function-level ones too).

    Relative imports are resolved (``from ..train import x`` in hpcnn/slurm/cli.py -> hpcnn.train);
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
    return target.split(".")[0] in ("torch", "torchvision") or \
        target.startswith(("hpcnn.train", "hpcnn.dist", "hpcnn.models", "hpcnn.data", "hpcnn.run"))


def test_imports_are_resolved_like_python_does():
    found = {target for _, target in imports(PKG / "slurm" / "cli.py")}
    assert {"hpcnn.errors", "hpcnn.config", "hpcnn.slurm.site.commands", "hpcnn.slurm.jobs.records",
            "hpcnn.slurm.jobs.handles", "hpcnn.slurm"} <= found


@pytest.mark.parametrize("module", TORCH_FREE)
def test_login_node_modules_import_without_torch(module):
    if module not in MODULES:
        pytest.fail(f"{module} is missing")
    code = f"import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; import {module}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _python_files(sub: str):
    return sorted((PKG / sub).rglob("*.py")) if (PKG / sub).is_dir() else [PKG / f"{sub}.py"]


@pytest.mark.parametrize("sub", ["env", "slurm", "config", "errors", "monitor", "results", "files", "scale", "compare"])
def test_no_torch_mentioned_in_login_node_layers(sub):
    for path in _python_files(sub):
        tree = ast.parse(path.read_text())
        # `try: import torchvision ... except ImportError:` is an optional use, allowed
        guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for b in t.body for n in ast.walk(b)}
        # a payload's __call__ runs on the compute nodes (trainer, predictor, bench): torch is allowed there
        guarded |= {id(n) for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and c.name.endswith("Payload")
                    for f in c.body if isinstance(f, ast.FunctionDef) and f.name == "__call__" for n in ast.walk(f)}
        bad = [target for node, target in imports(path, tree) if id(node) not in guarded and needs_torch(target)]
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_relative_imports_of_the_training_stack_are_seen():
    probe = ast.parse("from ...train import fit\nfrom ... import run\nfrom .. import site\n"
                      "def later():\n    from ...data.sources import fetch\n")
    targets = [t for _, t in resolve_imports(probe, "hpcnn.slurm.jobs.payload")]
    assert targets == ["hpcnn.train", "hpcnn.run", "hpcnn.slurm.site", "hpcnn.data.sources"]
    assert [needs_torch(t) for t in targets] == [True, True, False, True]


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
