"""`hpcnn ... | head`: a reader that leaves early ends the command quietly (exit 141), not with a traceback."""
from __future__ import annotations

import subprocess

from tests.helpers import PYTHON, REPO


def test_a_reader_that_left_gets_no_traceback():
    proc = subprocess.Popen([PYTHON, "-m", "hpcnn", "profiles", "list"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # gone before the command writes its first line (it imports for ~0.5 s first)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
