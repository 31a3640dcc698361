"""Which parameters are the classifier head and which are backbone blocks, for any model hpcnn builds.

Transfer learning trains "the head only" or "the head and the top N blocks"; that needs
the model's parts by name, without each architecture declaring them. The head is the
attribute torchvision uses (``fc``, ``classifier``, ``heads``, ``head``) or, for hpcnn's
``Sequential(features, head)`` models and plain stacks, the last child. Blocks are the
backbone's children in order, bottom to top; a normalisation layer belongs to the block
before it (conv + BN is one block), and a lone container is looked into.
"""
from __future__ import annotations

from torch import nn

HEAD_ATTRS = ("fc", "classifier", "heads", "head")
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def head_name(model: nn.Module) -> str:
    for attr in HEAD_ATTRS:
        if isinstance(getattr(model, attr, None), nn.Module):
            return attr
    children = [name for name, _ in model.named_children()]
    if not children:
        raise ValueError(f"{type(model).__name__} has no classifier head to find")
    return children[-1]


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _body(model: nn.Module, head: str) -> tuple[str, nn.Module]:
    """The backbone container and its name prefix: descend while only one child carries parameters."""
    prefix, module = "", model
    skip = {head}
    while True:
        carriers = [(n, c) for n, c in module.named_children() if n not in skip and _has_params(c)]
        if len(carriers) != 1 or not list(carriers[0][1].children()):
            return prefix, module
        name, module = carriers[0]
        prefix, skip = f"{prefix}{name}.", set()


def backbone_blocks(model: nn.Module) -> list[list[str]]:
    """Parameter-name prefixes of each backbone block, bottom to top (the head excluded)."""
    head = head_name(model)
    prefix, body = _body(model, head)
    blocks: list[list[str]] = []
    for name, child in body.named_children():
        if (not prefix and name == head) or not _has_params(child):
            continue
        if isinstance(child, _NORMS) and blocks:
            blocks[-1].append(f"{prefix}{name}.")
        else:
            blocks.append([f"{prefix}{name}."])
    return blocks


def block_index(name: str, blocks: list[list[str]]) -> int | None:
    """Which block (0 = bottom) a parameter name belongs to, or None."""
    return next((i for i, prefixes in enumerate(blocks) if name.startswith(tuple(prefixes))), None)


__all__ = ["HEAD_ATTRS", "backbone_blocks", "block_index", "head_name"]
