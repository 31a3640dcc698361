"""submitit's LocalExecutor with tasks_per_node=2, for real: both tasks detect a consistent World and
actually meet at the master address and port it names (a plain TCP handshake, no torch needed)."""
from __future__ import annotations

import socket
import sys
import time

import pytest

from hpcnn.env import detect_world

import submitit  # noqa: E402 - a runtime dependency
import cloudpickle  # noqa: E402 - comes with submitit

MEET_TIMEOUT_S = 30.0
JOB_DEADLINE_S = 50.0


def detect_and_meet():
    """Runs in each submitit task: rank 0 listens on (master_addr, master_port), the others report in."""
    world = detect_world()
    deadline = time.monotonic() + MEET_TIMEOUT_S
    if world.rank == 0:
        peers = []
        with socket.create_server((world.master_addr, world.master_port)) as server:
            server.settimeout(MEET_TIMEOUT_S)
            while len(peers) < world.world_size - 1:
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(MEET_TIMEOUT_S)
                    peers.append(int(conn.recv(64).decode()))
        return world, sorted(peers)
    while True:  # rank 0 may not listen yet: retry the connection until the deadline
        try:
            with socket.create_connection((world.master_addr, world.master_port), timeout=5) as conn:
                conn.sendall(str(world.rank).encode())
            return world, []
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.dist
@pytest.mark.timeout(60)
def test_local_executor_two_tasks_form_one_world(tmp_path):
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit", python=sys.executable)
    executor.update_parameters(tasks_per_node=2, timeout_min=1)
    # By value, so the tasks need not import this test module from whatever directory pytest ran in.
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        job = executor.submit(detect_and_meet)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    deadline = time.monotonic() + JOB_DEADLINE_S
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.2)  # polling a subprocess's state, bounded by the deadline
    if not job.done():
        job.cancel()
        pytest.fail(f"submitit local job did not finish in {JOB_DEADLINE_S:.0f} s:\n{job.stderr()}")
    (world0, peers), (world1, _) = job.results()

    assert peers == [1]  # rank 1 reached rank 0 at the address both derived
    assert (world0.rank, world0.local_rank, world1.rank, world1.local_rank) == (0, 0, 1, 1)
    for world in (world0, world1):
        assert world.launcher == "submitit"
        assert (world.world_size, world.local_world_size, world.num_nodes, world.node_rank) == (2, 2, 1, 0)
        assert world.job_id == job.job_id  # the controller's pid, shared by both tasks
        assert world.master_addr == "127.0.0.1"
    assert world0.master_port == world1.master_port
