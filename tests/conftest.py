"""Shared test setup: the datamodules see no data outside the tests' own folders."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_offline_copies_of_this_machine(monkeypatch):
    """Hermetic tests: an offline copy installed on the machine (Debian's
    dataset-fashion-mnist in /usr/share/datasets/fashion-mnist) is not looked at;
    tests of the lookup point ``offline_dirs`` at their own temp folders."""
    try:
        from lightning_discrete.data.datamodules import _IDXDataModule
    except ImportError:  # torchvision or the data part missing
        return
    for cls in [_IDXDataModule, *_IDXDataModule.__subclasses__()]:
        monkeypatch.setattr(cls, "offline_dirs", ())


@pytest.fixture(scope="session")
def parity6():
    """All 64 inputs of 6 bits ``(64, 6)`` float and their labels ``(64,)`` long: the
    parity of the first 3 bits (a small Boolean function a logic-gate network learns
    exactly). Shared by the session: do not modify the tensors."""
    import itertools

    import torch

    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)))
    return x, (x[:, :3].sum(1) % 2).long()
