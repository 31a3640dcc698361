"""Regenerate hpcnn/config/torchvision_names.json from the installed torchvision (after upgrading it).

    python scripts/torchvision_names.py          # writes the file; `git diff` shows what changed
    python scripts/torchvision_names.py --check  # exit 1 if the file differs from the installed torchvision
"""
from __future__ import annotations

import json
import sys

import torchvision
import torchvision.models as tvm

from hpcnn.config.torchvision_names import DATA_FILE, live_names
from hpcnn.files import atomic_write_text


def main(argv: list[str]) -> int:
    text = json.dumps(live_names(tvm, torchvision.__version__.split("+")[0]), indent=1) + "\n"
    if "--check" in argv:
        same = DATA_FILE.is_file() and json.loads(DATA_FILE.read_text()) == json.loads(text)
        print(f"{DATA_FILE}: {'matches' if same else 'differs from'} torchvision {torchvision.__version__}")
        return 0 if same else 1
    atomic_write_text(DATA_FILE, text)
    print(f"wrote {DATA_FILE} (torchvision {torchvision.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
