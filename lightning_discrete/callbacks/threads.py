"""Limit PyTorch's CPU threads for the length of a run (small models, busy machines)."""

from __future__ import annotations

from typing import ClassVar, List, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

__all__ = ["CPUThreads"]


class CPUThreads(Callback):
    """Run on ``num_threads`` CPU threads (``torch.set_num_threads``) while the Trainer runs
    on the CPU, and restore the previous number afterwards.

    Small networks gain nothing from intra-op parallelism, and on a machine whose cores
    are busy with other work extra threads make every step wait for a free core (the
    quick start ran 6x slower with 2 threads than with 1 on a loaded 2-core machine).
    Nothing changes when the accelerator is not the CPU.

    The thread count is a setting of the whole process: with several instances at
    once (in one Trainer or nested runs) the one set up last is in force, and the
    number from before the first one comes back when the last one is torn down.
    Nothing is saved in checkpoints (the setting is configuration);
    :attr:`state_key` names ``num_threads``.

    Args:
        num_threads: intra-op threads during the run (>= 1).

    Examples:
        >>> CPUThreads(num_threads=1).state_key
        "CPUThreads{'num_threads': 1}"
    """

    _active: ClassVar[List["CPUThreads"]] = []  # instances in force, oldest first
    _outer: ClassVar[Optional[int]] = None  # the thread count before the first of them

    def __init__(self, num_threads: int = 1) -> None:
        if num_threads < 1:
            raise ValueError(f"`num_threads` must be >= 1, got {num_threads}")
        self.num_threads = int(num_threads)

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(num_threads=self.num_threads)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type != "cpu" or self in CPUThreads._active:
            return
        if not CPUThreads._active:
            CPUThreads._outer = torch.get_num_threads()
        CPUThreads._active.append(self)
        torch.set_num_threads(self.num_threads)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self not in CPUThreads._active:
            return
        CPUThreads._active.remove(self)
        if CPUThreads._active:
            torch.set_num_threads(CPUThreads._active[-1].num_threads)
        elif CPUThreads._outer is not None:
            torch.set_num_threads(CPUThreads._outer)
            CPUThreads._outer = None
