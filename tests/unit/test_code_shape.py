"""Keep the training core readable: no function in hpcnn/train/ over ~80 lines."""
from __future__ import annotations

import ast

from tests.helpers import REPO

LIMIT = 80


def test_no_long_functions_in_the_training_core():
    long = []
    for path in sorted((REPO / "hpcnn" / "train").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > LIMIT:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "split these: " + "; ".join(long)
