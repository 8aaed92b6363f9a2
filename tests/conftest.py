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

# ------------------------------------------------------------------------------------- #
# tiny dataset files on disk (IDX for MNIST / Fashion-MNIST, pickles for CIFAR-10)
# ------------------------------------------------------------------------------------- #
IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def _idx_bytes(array):
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, data."""
    import struct

    import numpy as np

    a = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def _write_idx_files(folder, n_train=60, n_test=20, seed=0, gz=False):
    """Write the four IDX files (28x28 images, labels 0..9) into ``folder``; returns the arrays."""
    import gzip
    import os

    import numpy as np

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    arrays = {
        ("train", "images"): rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        ("train", "labels"): (np.arange(n_train) % 10).astype(np.uint8),
        ("test", "images"): rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        ("test", "labels"): (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, name in IDX_NAMES.items():
        data = _idx_bytes(arrays[key])
        opener = gzip.open if gz else open
        with opener(os.path.join(folder, name + (".gz" if gz else "")), "wb") as fh:
            fh.write(data)
    return arrays


def _write_mnist_layout(data_dir, name="FashionMNIST", **kwargs):
    """IDX files where torchvision / the datamodules read them: ``<data_dir>/<name>/raw``."""
    import os

    return _write_idx_files(os.path.join(data_dir, name, "raw"), **kwargs)


def _write_cifar_layout(data_dir, per_batch=8, n_test=10, seed=0):
    """Tiny CIFAR-10 python-pickle batches in ``<data_dir>/cifar-10-batches-py``."""
    import os
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    folder = os.path.join(data_dir, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    out = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(os.path.join(folder, name), "wb") as fh:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, fh)
        out[name] = (data, labels)
    with open(os.path.join(folder, "batches.meta"), "wb") as fh:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, fh)
    return out


@pytest.fixture(scope="session")
def idx_names():
    """``{(split, kind): IDX file name}`` of the four MNIST-format files."""
    return dict(IDX_NAMES)


@pytest.fixture(scope="session")
def idx_bytes():
    """``idx_bytes(uint8 array) -> bytes``: the IDX encoding of an array."""
    return _idx_bytes


@pytest.fixture(scope="session")
def make_idx_files():
    """``make_idx_files(folder, n_train=60, n_test=20, seed=0, gz=False) -> arrays``: the four IDX
    files (28x28 random images, labels ``i % 10``) in ``folder``; returns ``{(split, kind): array}``."""
    return _write_idx_files


@pytest.fixture(scope="session")
def make_mnist_layout():
    """``make_mnist_layout(data_dir, name="FashionMNIST", **make_idx_files kwargs) -> arrays``: the
    IDX files in ``<data_dir>/<name>/raw``, where the datamodules read them."""
    return _write_mnist_layout


@pytest.fixture(scope="session")
def make_cifar_layout():
    """``make_cifar_layout(data_dir, per_batch=8, n_test=10, seed=0) -> batches``: tiny CIFAR-10
    pickle batches in ``<data_dir>/cifar-10-batches-py``."""
    return _write_cifar_layout


# ------------------------------------------------------------------------------------- #
# the command line
# ------------------------------------------------------------------------------------- #
@pytest.fixture(scope="session")
def fast_args():
    """``fast_args(data_dir, run_dir) -> list``: LightningCLI overrides that make any recipe run
    three training steps and two validation batches on the tiny data files, without logger,
    progress bar or model summary."""

    def args(data_dir, run_dir):
        return [
            f"--data.data_dir={data_dir}",
            "--data.val_size=8",
            "--data.batch_size=8",
            "--trainer.max_epochs=1",
            "--trainer.max_steps=-1",
            "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=2",
            "--trainer.val_check_interval=null",
            "--trainer.check_val_every_n_epoch=1",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={run_dir}",
        ]

    return args
