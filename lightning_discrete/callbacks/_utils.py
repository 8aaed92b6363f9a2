"""Helpers shared by the callbacks (not public API)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, List, Tuple

import torch
from torch import nn

from ..nn.bottleneck import DiscreteBottleneck

def named_bottlenecks(module: nn.Module) -> List[Tuple[str, DiscreteBottleneck]]:
    """Every :class:`DiscreteBottleneck` inside ``module`` with its qualified name (``""`` -> ``"root"``)."""
    return [(name or "root", m) for name, m in module.named_modules() if isinstance(m, DiscreteBottleneck)]


@contextlib.contextmanager
def recording_paused(module: nn.Module) -> Iterator[None]:
    """:meth:`DiscreteBottleneck.recording_paused` for every bottleneck of ``module``."""
    with contextlib.ExitStack() as stack:
        for _, m in named_bottlenecks(module):
            stack.enter_context(m.recording_paused())
        yield


def log_value(pl_module: Any, name: str, value: Any, on_step: bool) -> None:
    """``pl_module.log`` a value that is already identical on every rank (no sync)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().to(torch.float32)
    pl_module.log(name, value, on_step=on_step, on_epoch=not on_step, sync_dist=False, batch_size=1)
