"""hpcnn's host-list expansion agrees with Slurm's own (scontrol show hostnames)."""
from __future__ import annotations

from tests.unit.test_hostlist import EXPANSIONS


def test_expansion_agrees_with_scontrol(slurm_cluster):
    for nodelist, hosts in EXPANSIONS:
        out = slurm_cluster.run(["scontrol", "show", "hostnames", nodelist], timeout=10)
        assert out.stdout.split() == hosts, nodelist
