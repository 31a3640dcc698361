"""Slurm host lists and count lists, expanded as `scontrol show hostnames` does (Slurm 22.05)."""
from __future__ import annotations


import pytest

from hpcnn.env import hostlist
from hpcnn.errors import WorldError

# Every row below was checked against `scontrol show hostnames` on Slurm 22.05.
EXPANSIONS = [
    ("n1", ["n1"]),
    ("gpu[001-004,007]", ["gpu001", "gpu002", "gpu003", "gpu004", "gpu007"]),
    ("n[1-3],login1", ["n1", "n2", "n3", "login1"]),
    ("a[1-2]-b[3-4]", ["a1-b3", "a1-b4", "a2-b3", "a2-b4"]),
    ("rack[1-2]-node[01-02]", ["rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"]),
    ("x[1-2][3-4]", ["x13", "x14", "x23", "x24"]),
    ("tux-[1-3]", ["tux-1", "tux-2", "tux-3"]),
    ("x[8-10]", ["x8", "x9", "x10"]),
    ("x[09-11]", ["x09", "x10", "x11"]),          # padding from the first bound...
    ("n[001-10]", ["n001", "n002", "n003", "n004", "n005", "n006", "n007", "n008", "n009", "n010"]),
    ("n[9-011]", ["n9", "n10", "n11"]),           # ...not from the second
    ("x[1-010]", [f"x{i}" for i in range(1, 11)]),
    ("n[01-1]", ["n01"]),
    ("n[1-2],n1", ["n1", "n2", "n1"]),            # duplicates kept
    ("n1 n2", ["n1", "n2"]),                      # whitespace separates hosts too
    ("a,,b", ["a", "b"]),
    ("[1-2]", ["1", "2"]),
    ("gpu[1,3-4],cpu[07-08],big", ["gpu1", "gpu3", "gpu4", "cpu07", "cpu08", "big"]),
]


@pytest.mark.parametrize("nodelist,hosts", EXPANSIONS, ids=[e[0] for e in EXPANSIONS])
def test_expand_matches_scontrol(nodelist, hosts):
    assert hostlist.expand(nodelist) == hosts
    assert hostlist.first(nodelist) == hosts[0]


def test_empty_list_expands_to_nothing_and_has_no_first():
    assert hostlist.expand("") == []
    with pytest.raises(WorldError, match="empty host list"):
        hostlist.first("")


@pytest.mark.parametrize("nodelist,needle", [
    ("n[1-", "'\\[' without a matching '\\]'"),
    ("n1-2]", "'\\]' without a matching '\\['"),
    ("n[3-1]", "descending range '3-1'"),
    ("n[a]", "bad range 'a'"),
    ("n[]", "bad range ''"),
    ("n[1-10:2]", "bad range '1-10:2'"),
    ("n[1-[2]]", "nested brackets"),
])
def test_malformed_lists_raise_world_error_naming_the_list(nodelist, needle):
    with pytest.raises(WorldError, match=needle) as err:
        hostlist.expand(nodelist)
    assert repr(nodelist) in str(err.value) and "hint:" in str(err.value)


@pytest.mark.parametrize("spec,counts", [
    ("4", [4]),
    ("2(x3),1", [2, 2, 2, 1]),
    ("2,1", [2, 1]),
    ("1,3(x2)", [1, 3, 3]),
    ("2(x2)", [2, 2]),
])
def test_tasks_per_node(spec, counts):
    assert hostlist.tasks_per_node(spec) == counts


@pytest.mark.parametrize("spec", ["", "2(x)", "x2", "2(3)", "2(x3"])
def test_bad_tasks_per_node(spec):
    with pytest.raises(WorldError, match="bad count"):
        hostlist.tasks_per_node(spec)
