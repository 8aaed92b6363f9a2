"""The training hot path: no host-device synchronisation on steps where nothing is logged,
and training steps that compile with ``torch.compile(fullgraph=True)``."""

from __future__ import annotations

import traceback
from typing import List

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_discrete.callbacks import (
    ActiveUnitMonitor,
    GradientSNRMonitor,
    LatentUtilizationMonitor,
    TemperatureScheduler,
)

from _callback_helpers import MixedNet, classification_data, loader, trainer_kwargs

# ops that copy a value to the host (``.item()``, ``float(t)``, ``.tolist()``) or whose
# output size depends on the data (a sync on CUDA)
_SYNC_OPS = ("_local_scalar_dense", "bincount", "nonzero", "masked_select", "unique", "item")


class _OpSpy(TorchDispatchMode):
    def __init__(self, ops: List[str]) -> None:
        super().__init__()
        self.ops = ops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        # torch's CPU Adam reads its step counter, a host tensor, with ``.item()``: not ours,
        # and no device sync (on CUDA the counter stays on the host too)
        if not (name in _SYNC_OPS and any("torch/optim/" in f.filename for f in traceback.extract_stack())):
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


class _SpyStart(Callback):
    """First callback: opens a dispatch spy around each training batch (closed by _SpyEnd)."""

    def __init__(self) -> None:
        self.per_step: List[List[str]] = []
        self.mode = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.per_step.append([])
        self.mode = _OpSpy(self.per_step[-1])
        self.mode.__enter__()


class _SpyEnd(Callback):
    def __init__(self, start: _SpyStart) -> None:
        self.start = start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.start.mode.__exit__(None, None, None)


def test_no_sync_on_steps_that_log_nothing():
    seed_everything(0)
    model = MixedNet()
    start = _SpyStart()
    monitors = [
        TemperatureScheduler(tau_f={"kind": "exponential", "start": 1.0, "end": 0.5}, tau_b=0.7),
        ActiveUnitMonitor(),
        LatentUtilizationMonitor(),
        GradientSNRMonitor(mode="window", window=100),
    ]
    trainer = Trainer(
        max_epochs=1,
        callbacks=[start, *monitors, _SpyEnd(start)],
        **trainer_kwargs(log_every_n_steps=5),
    )
    trainer.fit(model, loader(classification_data(96), 8))  # 12 steps, logged at 0, 5, 10
    assert len(start.per_step) == 12
    for step, ops in enumerate(start.per_step):
        assert "addmm" in ops or "mm" in ops  # the spy saw the step's work
        if step % 5:
            synced = sorted({op for op in ops if op in _SYNC_OPS})
            assert synced == [], f"step {step} synchronised with the host via {synced}"
