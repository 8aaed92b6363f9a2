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
