"""Which NVML GPUs a process's CUDA_VISIBLE_DEVICES names, in each form the variable takes (stand-in NVML).

CUDA numbers GPUs by CUDA_DEVICE_ORDER, NVML by its own index; the stand-in's PCI bus numbers are
set so that the two differ, and Slurm's physical IDs are matched through the minor number.
"""
from __future__ import annotations

import logging

import pytest

from hpcnn.monitor import open_nvml
from hpcnn.env.slurm_gpus import slurm_gpu_ids
from hpcnn.monitor.identity import visible_entries
from tests.support import fake_pynvml

# NVML index -> PCI bus: PCI order is NVML 1, 3, 2, 0
SHUFFLED = {"count": 4, "pci_bus": [0x40, 0x18, 0x30, 0x20]}
UUIDS = ["GPU-aa11-0", "GPU-bb22-1", "GPU-bb33-2", "GPU-cc44-3"]
SLURM_VARS = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "SLURMD_NODENAME", "CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES")


@pytest.fixture
def nvml(monkeypatch):
    for var in SLURM_VARS:
        monkeypatch.delenv(var, raising=False)
    fake_pynvml.configure()
    yield fake_pynvml
    misuse, balanced = list(fake_pynvml.misuse), fake_pynvml.inits == fake_pynvml.shutdowns
    fake_pynvml.configure()
    assert misuse == [] and balanced


def opened(nvml, **kwargs) -> list[int] | None:
    reader = open_nvml(nvml, **kwargs)
    if reader is None:
        return None
    with reader:
        return reader.indices


def test_indices_follow_pci_order_not_nvml_order(nvml, monkeypatch):
    nvml.configure(**SHUFFLED)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert opened(nvml) == [1, 2]
    assert opened(nvml, cuda_ordinal=1) == [2]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert opened(nvml) == [1, 3, 2, 0]


def test_fastest_first_is_pci_order_on_one_model_and_said_to_be_a_guess_on_mixed(nvml, monkeypatch, caplog):
    from hpcnn.monitor import identity

    monkeypatch.setattr(identity, "_warned", set())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    nvml.configure(**SHUFFLED)
    caplog.set_level(logging.WARNING, "hpcnn.monitor")
    assert opened(nvml) == [1] and not caplog.records
    nvml.configure(**SHUFFLED, name=["H100", "H100", "A100", "A100"])
    assert opened(nvml) == [1]
    assert len(caplog.records) == 1 and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in caplog.records[0].getMessage()


def test_uuids_and_unique_prefixes(nvml, monkeypatch):
    nvml.configure(**SHUFFLED, uuids=UUIDS)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-cc44-3,GPU-aa")
    assert opened(nvml) == [3, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aa,GPU-bb,GPU-cc")  # GPU-bb names two GPUs: CUDA stops there
    assert opened(nvml) == [0]


def test_mig_instances_in_both_forms_sample_their_parent(nvml, monkeypatch):
    nvml.configure(count=2, mig={"1": 3})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-fake-1-2")
    with open_nvml(nvml) as reader:
        row = reader.sample()[0]
    assert (row["gpu"], row["mig"]) == (1, "MIG-fake-1-2") and row["util_percent"] == 87
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-GPU-fake-1/1/0")  # before driver R470
    assert opened(nvml) == [1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-fake-0-0")          # GPU 0 has no MIG instances
    assert opened(nvml) is None


def test_slurm_physical_ids_win_over_renumbered_indices(nvml, monkeypatch):
    nvml.configure(count=4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # renumbered inside the job's device cgroup
    monkeypatch.setenv("SLURM_STEP_GPUS", "2,3")
    assert opened(nvml) == [2, 3]
    # NVML inside the cgroup sees only the job's two GPUs: minor numbers still say which they are
    nvml.configure(count=2, minor=[2, 3])
    assert opened(nvml) == [0, 1]
    # NVML lists all four but may open only the job's: indices count the ones CUDA can use
    monkeypatch.delenv("SLURM_STEP_GPUS")
    nvml.configure(count=4, hidden=[0, 1])
    assert opened(nvml) == [2, 3]


def test_slurm_job_gpus_only_in_the_batch_step():
    env = {"SLURM_JOB_GPUS": "1,3"}
    assert slurm_gpu_ids(env) is None                            # e.g. an salloc shell on the login node
    assert slurm_gpu_ids({**env, "SLURMD_NODENAME": "n1"}) == [1, 3]
    assert slurm_gpu_ids({**env, "SLURMD_NODENAME": "n1", "SLURM_STEP_GPUS": "0"}) == [0]


def test_visible_entries_read_as_cuda_reads_them():
    assert visible_entries({}) is None
    assert visible_entries({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_entries({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_entries({"CUDA_VISIBLE_DEVICES": "1, 0,x,2"}) == ["1", "0"]
    assert visible_entries({"CUDA_VISIBLE_DEVICES": "1,1,2"}) == ["1"]


def test_torch_uuid_without_prefix_finds_the_gpu_or_the_mig_parent(nvml, monkeypatch):
    nvml.configure(**SHUFFLED, uuids=UUIDS, mig={"2": 1})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert opened(nvml, cuda_ordinal=0, uuid="cc44-3") == [3]
    assert opened(nvml, cuda_ordinal=0, uuid="fake-2-0") == [2]      # torch's UUID of a MIG instance
    assert opened(nvml, cuda_ordinal=0, uuid="dead-beef") == [1]     # unknown to NVML: CUDA ordinal 0 (PCI first)
