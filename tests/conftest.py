"""Shared fixtures: an environment-leak guard and tiny, fast training configs."""
from __future__ import annotations

import os

import pytest

from tests.helpers import TINY

# The test suite's site default, as a user sets theirs (hpcnn never falls back to the test cluster by itself);
# subprocesses inherit it. Tests of the profile choice itself override it with monkeypatch.
os.environ["HPCNN_PROFILE"] = "local"

# Set once per process by torch itself or by our own documented process-wide defaults.
SET_BY_LIBRARIES = {"PYTEST_CURRENT_TEST", "SLURM_CONF", "CUBLAS_WORKSPACE_CONFIG", "TORCH_NCCL_ASYNC_ERROR_HANDLING",
                    "TORCHINDUCTOR_CACHE_DIR", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK"}


@pytest.fixture(autouse=True)
def no_env_leaks():
    """A test that changes os.environ must put it back (Lightning's guard)."""
    before = dict(os.environ)
    yield
    after = dict(os.environ)
    leaked = {k for k in after.keys() ^ before.keys()} | {k for k in after if k in before and after[k] != before[k]}
    leaked = {k for k in leaked if k not in SET_BY_LIBRARIES}
    for k in leaked:  # restore, then fail
        if k in before:
            os.environ[k] = before[k]
        else:
            os.environ.pop(k, None)
    assert not leaked, f"test leaked environment variables: {sorted(leaked)}"


@pytest.fixture
def tiny(tmp_path):
    """Overrides for a seconds-long run writing under tmp_path."""
    return TINY + [f"train.runs_dir={tmp_path / 'runs'}"]
