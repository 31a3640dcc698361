"""One way for benchmark scripts to hand back their result: JSON on stdout, and the same file at --out."""
from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, out: str | Path | None) -> None:
    """Print ``result`` as JSON; with ``out``, also write it there (parents created), for gpu_all.sh to collect."""
    text = json.dumps(result, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    print(text)
