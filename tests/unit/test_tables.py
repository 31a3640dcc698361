"""The one table printer: header first, columns two spaces apart, a reason at a row's end."""
from __future__ import annotations

from hpcnn.tables import format_table


def test_columns_align_two_spaces_apart():
    text = format_table([["run", "state", "acc"], ["a-long-name", "done", "0.9"], ["b", "failed", "-"]])
    assert text.splitlines() == ["run          state   acc",
                                 "a-long-name  done    0.9",
                                 "b            failed  -"]


def test_right_aligned_columns():
    text = format_table([["run", "img/s", "state"], ["a", "12.5", "done"], ["b", "1234.0", "done"]], align="lrl")
    assert text.splitlines() == ["run   img/s  state",
                                 "a      12.5  done",
                                 "b    1234.0  done"]
    last = format_table([["n", "img/s"], ["a", "7"], ["b", "1234"]], align="lr")  # right-aligned: padded on the left
    assert last.splitlines() == ["n  img/s", "a      7", "b   1234"]


def test_notes_follow_their_row():
    text = format_table([["task", "state"], ["0", "COMPLETED"], ["1", "FAILED"]], notes=[None, "", "out of memory"])
    assert text.splitlines() == ["task  state", "0     COMPLETED", "1     FAILED    <- out of memory"]
    assert format_table([["a"], ["b"]], notes=["x"], note_mark=" # ").splitlines() == ["a # x", "b"]


def test_last_column_is_never_padded():
    text = format_table([["run", "label"], ["a", "a-very-long-label"], ["b", "x"]])
    assert [len(line) for line in text.splitlines()] == [len("run  label"), len("a    a-very-long-label"), len("b    x")]
    assert not any(line.endswith(" ") for line in text.splitlines())
    blank_end = format_table([["a", "b"], ["longer", ""]])  # an empty last cell leaves no trailing spaces
    assert blank_end.splitlines() == ["a       b", "longer"]


def test_indent_and_non_string_cells():
    assert format_table([["k", "v"], [1, None], [2.5, True]], indent="  ").splitlines() == \
        ["  k    v", "  1    None", "  2.5  True"]


def test_rows_of_different_lengths():
    assert format_table([["a", "b", "c"], ["xx"], ["y", "zzz"]]).splitlines() == ["a   b    c", "xx", "y   zzz"]


def test_empty_input():
    assert format_table([]) == ""
    assert format_table([], notes=["ignored"]) == ""
    assert format_table([["only", "header"]]) == "only  header"


def test_no_module_pads_columns_by_hand():
    """docs/architecture.md: every listing hpcnn prints goes through format_table (no ljust/rjust, no {x:>8})."""
    import re

    from tests.helpers import REPO

    by_hand = re.compile(r"\.[lr]just\(|\{[^{}]*:[<>^]\d+[^{}]*\}")
    found = [f"{path.relative_to(REPO)}:{n}" for path in sorted((REPO / "hpcnn").rglob("*.py"))
             if path.name != "tables.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if by_hand.search(line)]
    assert found == []


def test_a_narrower_gap_between_columns():
    assert format_table([("FAIL", "1x1", "x"), ("ok", "1x2", "y")], gap=" ") == "FAIL 1x1 x\nok   1x2 y"
