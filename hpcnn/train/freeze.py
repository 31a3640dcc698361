"""Apply a phase to a model: which parameters train, which BatchNorm layers stay frozen, LR per group.

The config says *what* (``trainable: head``, ``top:2``, name patterns, ``lr_mult``,
``layer_decay``); this module turns it into ``requires_grad`` flags, a list of BatchNorm
modules to keep in inference mode, and optimizer parameter groups carrying ``lr_scale``.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

from ..config.phases import Phase, top_blocks
from ..errors import ConfigError
from ..models.parts import backbone_blocks, block_index, head_name


@dataclass
class PhaseSelection:
    trainable: list[str]          # parameter names that train in this phase
    frozen: list[str]


def _trainable_names(model: nn.Module, phase: Phase) -> set[str]:
    names = [n for n, _ in model.named_parameters()]
    if phase.trainable == "all":
        return set(names)
    if isinstance(phase.trainable, tuple):
        chosen = {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in phase.trainable)}
        if not chosen:
            raise ConfigError(f"phase '{phase.name}': no parameter matches {list(phase.trainable)}",
                              f"phases[{phase.index}].trainable",
                              f"parameter names look like {', '.join(names[:3])}, ...")
        return chosen
    head = head_name(model) + "."
    chosen = {n for n in names if n.startswith(head)}
    top = top_blocks(phase.trainable)
    if top:
        blocks = backbone_blocks(model)
        prefixes = tuple(p for block in blocks[max(0, len(blocks) - top):] for p in block)
        chosen |= {n for n in names if n.startswith(prefixes)}
    return chosen


def select(model: nn.Module, phase: Phase) -> PhaseSelection:
    """Set ``requires_grad`` for this phase (before DDP wraps the model: it registers only those)."""
    chosen = _trainable_names(model, phase)
    for name, p in model.named_parameters():
        p.requires_grad_(name in chosen)
    names = [n for n, _ in model.named_parameters()]
    return PhaseSelection([n for n in names if n in chosen], [n for n in names if n not in chosen])


def frozen_batchnorm(model: nn.Module, phase: Phase) -> tuple[nn.Module, ...]:
    """BatchNorm layers none of whose parameters train: kept in eval mode so their statistics stay put."""
    if not phase.freeze_bn or phase.trains_everything:
        return ()
    return tuple(m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 and not any(p.requires_grad for p in m.parameters()))


def lr_scale(name: str, phase: Phase, blocks: list[list[str]], head: str) -> float:
    """``lr_mult`` (first matching pattern) times ``layer_decay ** k``, k = blocks below the head.

    The head has k = 0, the top backbone block k = 1; parameters outside every block (e.g. a
    class token) count as the bottom.
    """
    scale = next((f for pattern, f in phase.lr_mult if fnmatch.fnmatchcase(name, pattern)), 1.0)
    if phase.layer_decay is not None and not name.startswith(head):
        index = block_index(name, blocks)
        depth = len(blocks) - index if index is not None else len(blocks) + 1
        scale *= phase.layer_decay ** depth
    return scale


def param_groups(model: nn.Module, phase: Phase, weight_decay: float) -> list[dict]:
    """Trainable parameters grouped by (lr scale, decay or not); no decay on biases and norms."""
    blocks = backbone_blocks(model) if phase.layer_decay is not None else []
    head = head_name(model) + "."
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((lr_scale(name, phase, blocks, head), p.ndim > 1), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
            for (scale, decay), params in groups.items()]


__all__ = ["PhaseSelection", "frozen_batchnorm", "lr_scale", "param_groups", "select"]
