"""Limit PyTorch's CPU threads for the length of a run (small models, busy machines)."""

from __future__ import annotations

from typing import Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["CPUThreads"]


class CPUThreads(Callback):
    """Run on ``num_threads`` CPU threads (``torch.set_num_threads``) while the Trainer runs
    on the CPU, and restore the previous number afterwards.

    Small networks gain nothing from intra-op parallelism, and on a machine whose cores
    are busy with other work extra threads make every step wait for a free core (the
    quick start ran 6x slower with 2 threads than with 1 on a loaded 2-core machine).
    Nothing changes when the accelerator is not the CPU.

    Args:
        num_threads: intra-op threads during the run (>= 1).
    """

    def __init__(self, num_threads: int = 1) -> None:
        if num_threads < 1:
            raise ValueError(f"`num_threads` must be >= 1, got {num_threads}")
        self.num_threads = int(num_threads)
        self._previous: Optional[int] = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type == "cpu" and self._previous is None:
            self._previous = torch.get_num_threads()
            torch.set_num_threads(self.num_threads)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._previous is not None:
            torch.set_num_threads(self._previous)
            self._previous = None
