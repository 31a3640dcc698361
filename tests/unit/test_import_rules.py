"""The layering rules from docs/architecture.md, enforced."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.helpers import REPO

PKG = REPO / "hpcnn"
TORCH_FREE = ["hpcnn", "hpcnn.config", "hpcnn.env", "hpcnn.errors", "hpcnn.monitor", "hpcnn.slurm", "hpcnn.slurm.cli"]
LAUNCHER_VARS = ("SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "HOROVOD_", "OMPI_", "PMI_")


@pytest.mark.parametrize("module", TORCH_FREE)
def test_login_node_modules_import_without_torch(module):
    if not (PKG / module.replace("hpcnn.", "").replace(".", "/")).exists() and module != "hpcnn" \
            and not (PKG / (module.replace("hpcnn.", "").replace(".", "/") + ".py")).exists():
        pytest.fail(f"{module} is missing")
    code = f"import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; import {module}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _python_files(sub: str):
    return sorted((PKG / sub).rglob("*.py")) if (PKG / sub).is_dir() else [PKG / f"{sub}.py"]


@pytest.mark.parametrize("sub", ["env", "slurm", "config", "errors", "monitor"])
def test_no_torch_mentioned_in_login_node_layers(sub):
    for path in _python_files(sub):
        tree = ast.parse(path.read_text())
        # `try: import torchvision ... except ImportError:` is an optional use, allowed
        guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for b in t.body for n in ast.walk(b)}
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            bad = [n for n in names if n.split(".")[0] in ("torch", "torchvision")
                   or n.startswith(("hpcnn.train", "hpcnn.dist", "hpcnn.models", "hpcnn.data"))]
            assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_only_env_reads_launcher_variables():
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if rel.parts[0] in ("env", "slurm"):  # env detects; slurm reads its own job ids on purpose
            continue
        text = path.read_text()
        for var in LAUNCHER_VARS:
            for pattern in (f'environ["{var}', f"environ['{var}", f'environ.get("{var}', f'getenv("{var}'):
                if pattern in text:
                    offenders.append(f"{rel}: {pattern}")
    assert not offenders, offenders
