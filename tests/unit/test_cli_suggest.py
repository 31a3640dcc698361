"""A misspelt verb or flag gets "did you mean", in one line, exit 2 (like misspelt config keys)."""
from __future__ import annotations

import pytest

from hpcnn.cli import main


@pytest.mark.parametrize("argv,line", [
    (["sumbit", "jobs/default.yaml"], "hpcnn: error: unknown command 'sumbit' — did you mean 'submit'?"),
    (["submit", "jobs/default.yaml", "--profle", "local"],
     "hpcnn: error: unrecognized arguments: --profle local — did you mean '--profile'?"),
    (["profiles", "lst"], "hpcnn profiles: error: unknown command 'lst' — did you mean 'list'?"),
    (["data", "generate", "--out", "x", "--format", "pgn"],
     "hpcnn data generate: error: argument --format: unknown choice 'pgn' — did you mean 'png'?"),
    (["train", "--run-dri=runs/x"], "hpcnn: error: unrecognized arguments: --run-dri=runs/x — did you mean '--run-dir'?"),
])
def test_misspelt_verb_or_flag_gets_one_line_suggestion(capsys, argv, line):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_nothing_close_keeps_argparse_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["xyzzy"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("usage: hpcnn") and "did you mean" not in err
