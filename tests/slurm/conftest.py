"""The `slurm_cluster` fixture: a real 3-node Slurm on this machine, started by tests/slurm/cluster.sh.

Started once per session; stopped at the end only if this session started it (a cluster that was
already up, e.g. for other work, is left running). Without root/apt the Slurm tests are skipped,
except under CI=true, where they fail with the daemons' log tails.
"""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CLUSTER_SH = HERE / "cluster.sh"
UP_TIMEOUT_S = 240      # `up` may have to apt-get install first
DOWN_TIMEOUT_S = 90


@dataclass
class SlurmCluster:
    """Where the cluster is and how to talk to it."""

    lab: Path
    conf: str
    env: dict = field(repr=False)

    def run(self, argv: list[str], timeout: float = 60, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run a Slurm client command (or anything) with SLURM_CONF set; text output captured."""
        proc = subprocess.run([str(a) for a in argv], env=self.env, capture_output=True, text=True,
                              timeout=timeout, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc


def _cluster_sh(action: str, timeout: float) -> tuple[int, str]:
    """Run `cluster.sh ACTION` in its own process group, killed whole if it overruns (daemons detach themselves)."""
    proc = subprocess.Popen(["bash", str(CLUSTER_SH), action], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return 124, f"cluster.sh {action} ran over {timeout} s\n{out}"
    return proc.returncode, out


def _lab_dir() -> Path:
    return Path(os.environ.get("HPCNN_SLURM_DIR", "/tmp/hpcnn-slurm").rstrip("/"))


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running local Slurm cluster (nodes n1 n2 n3, partition debug, 2 fake GPUs per node, sacct)."""
    if os.geteuid() != 0:
        reason = "the local Slurm cluster needs root (apt-get, daemons, unshare)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    was_up = _cluster_sh("status", timeout=30)[0] == 0
    rc, out = _cluster_sh("up", timeout=UP_TIMEOUT_S)
    if rc != 0:
        tails = "" if "----- tail" in out else _cluster_sh("logs", timeout=30)[1]
        message = f"local Slurm cluster did not start (cluster.sh up rc={rc}):\n{out}\n{tails}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    lab = _lab_dir()
    conf = str(lab / "etc" / "slurm.conf")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield SlurmCluster(lab=lab, conf=conf, env=dict(os.environ))
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if not was_up:
            _cluster_sh("down", timeout=DOWN_TIMEOUT_S)


def pytest_collection_modifyitems(config, items):
    """Every test under tests/slurm/ needs the cluster: mark it `slurm`."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.slurm)
