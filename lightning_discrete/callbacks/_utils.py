"""Helpers shared by the callbacks (not public API)."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import Tensor, nn
from torchmetrics import Metric

from ..nn.bottleneck import DiscreteBottleneck

PLOTS_HINT = "pip install lightning_discrete[plots]"


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
    """``pl_module.log`` a value that is already identical on every rank (reduced across ranks).

    Called on every rank. An epoch value is declared synchronised (``sync_dist=True``: no
    "It is recommended to use ``sync_dist=True``" warning) and Lightning is told not to
    reduce it again (``rank_zero_only=True``, whose only effect in Lightning 2.x is to skip the
    all-reduce): an all-reduce here would be wasted on identical values, and it would hang the
    run when only rank zero reads the epoch metrics (the progress bar does, in the callbacks'
    ``on_train_epoch_end``). See ``docs/design.md``, "Distributed rules".
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().to(torch.float32)
    reduced = not on_step
    pl_module.log(name, value, on_step=on_step, on_epoch=not on_step, sync_dist=reduced, rank_zero_only=reduced,
                  batch_size=1)


def global_states(metric: Metric) -> Dict[str, Tensor]:
    """CPU copies of ``metric``'s states summed across ranks (a collective: call on every rank)."""
    with metric.sync_context():
        return {k: v.detach().cpu().clone() for k, v in metric.metric_state.items()}


def restore_states(metric: Metric, states: Dict[str, Tensor]) -> Metric:
    """Load global counts saved by :func:`global_states` into ``metric`` on global rank zero;
    the other ranks start from zero, so the next cross-rank sum counts them once."""
    if rank_zero_only.rank == 0:
        for key, value in states.items():
            setattr(metric, key, value.clone().to(metric.device))
    return metric


class PlotsCheck:
    """Whether matplotlib (the ``plots`` extra) can be imported; warns once per instance when not."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._warned = False

    def available(self) -> bool:
        """``True`` when matplotlib imports; otherwise warn (the first time) and return ``False``."""
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            if not self._warned:
                self._warned = True
                rank_zero_warn(f"matplotlib is not installed: {self.what} skipped. To draw it: `{PLOTS_HINT}`.")
            return False
        return True


def send_figure(trainer: Trainer, tag: str, figure: Any, filename: str) -> Optional[str]:
    """Send ``figure`` to every TensorBoard logger (``add_figure``); without one, save it as
    ``<log dir>/<filename>`` next to the other logs. Returns the PNG's path, if one was written.
    Call on global rank zero only; nothing is written when the Trainer has no logger."""
    step = trainer.global_step
    tensorboards = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
    for logger in tensorboards:
        logger.experiment.add_figure(tag, figure, global_step=step, close=False)
    if tensorboards or not trainer.loggers or not trainer.log_dir:
        return None
    path = os.path.join(trainer.log_dir, filename)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path)
    return path
