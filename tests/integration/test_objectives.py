"""SimCLR runs through the one Trainer: its input pipeline (data.decode), checkpoints and set-up are supervised's."""
from __future__ import annotations

import pytest
import torch

from hpcnn.config import load_job
from hpcnn.dist import SingleComm
from hpcnn.errors import CheckpointError, ConfigError
from hpcnn.objectives import objective_for
from hpcnn.ssl import SimCLRObjective
from hpcnn.train.events import Callback
from hpcnn.train.objective import Supervised
from hpcnn.train.trainer import Trainer
from tests.integration.test_resume_exact import SIMCLR


def test_simclr_run_uses_data_decode_like_supervised(tmp_path):
    """data.decode is the train pipeline's: a gpu request on the CPU stops a SimCLR run too (it was ignored)."""
    cfg = load_job(None, [*SIMCLR, "train.epochs=1", "train.max_steps_per_epoch=1", "data.decode=gpu"])
    with pytest.raises(ConfigError) as err:
        Trainer(cfg, SingleComm(), tmp_path, torch.device("cpu"), objective=objective_for(cfg))
    assert err.value.where == "data.decode"


def test_objective_follows_the_config_and_a_run_resumes_only_with_its_own(tmp_path):
    cfg = load_job(None, [*SIMCLR, "train.epochs=1", "train.max_steps_per_epoch=1", "train.log_every=1"])
    assert isinstance(objective_for(cfg), SimCLRObjective)
    assert type(objective_for(load_job(None, ["data.source=digits"]))) is Supervised
    with pytest.raises(ConfigError):  # a SimCLR config given to the supervised objective says how to start it
        Trainer(cfg, SingleComm(), tmp_path, torch.device("cpu"))
    stages = _Stages()
    result = Trainer(cfg, SingleComm(), tmp_path, torch.device("cpu"), callbacks=[stages],
                     objective=SimCLRObjective(cfg)).fit()
    assert result.status == "completed"
    assert stages.seen == ["train", "eval", "checkpoint"]  # GPU telemetry tags its samples with these (no probe)
    state = torch.load(sorted((tmp_path / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)
    assert state["kind"] == "simclr" and state["format"] == 2
    with pytest.raises(CheckpointError, match="simclr run"):
        Trainer(cfg, SingleComm(), tmp_path, torch.device("cpu"), resume="auto", objective=_Other(cfg))


class _Stages(Callback):
    def __init__(self):
        self.seen = []

    def on_stage(self, trainer, stage: str, global_step: int) -> None:
        self.seen.append(stage)


class _Other(SimCLRObjective):
    kind = "other"
