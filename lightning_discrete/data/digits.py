"""Data that needs no download: scikit-learn's bundled 8x8 digits, and the quick start's
automatic choice between them and Fashion-MNIST.

* :class:`DigitsDataModule` -- the 1,797 8 x 8 grey images of handwritten digits 0-9 that
  ship inside scikit-learn (``sklearn.datasets.load_digits``, UCI optdigits test set):
  real data, in every scikit-learn install, nothing to fetch. Batches and options are
  those of the other datamodules (:class:`~lightning_discrete.data.VisionDataModule`).
* :class:`QuickstartDataModule` -- ``dataset="auto"`` uses Fashion-MNIST when it is
  already on the machine (``<data_dir>/FashionMNIST/raw/`` or an offline copy such as
  Debian's ``dataset-fashion-mnist``) and the digits otherwise.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler
from typing_extensions import override

from .datamodules import FashionMNISTDataModule, VisionDataModule
from .idx import DataError

__all__ = ["DigitsDataModule", "QuickstartDataModule", "QUICKSTART_DATASETS"]

_DIGITS_TEST_SPLIT_SEED = 0  # the held-out test images are the same whatever `split_seed` is
_DIGITS_MAX = 16.0  # load_digits pixels are counts 0..16 (8x8 blocks of a 32x32 bitmap)

QUICKSTART_DATASETS = ("auto", "digits", "fashion_mnist")


def _load_sklearn_digits() -> Tuple[Tensor, Tensor]:
    """``(uint8 images (1797, 1, 8, 8), int64 labels (1797,))``; pixels ``round(v * 255 / 16)``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "The digits dataset comes with scikit-learn, which is not installed. To fix it, run "
            "`pip install scikit-learn` (or `pip install -e \".[cli]\"` in a clone of lightning_discrete), or use "
            "Fashion-MNIST instead (`--data.dataset=fashion_mnist`; offline: `sudo apt-get install "
            "dataset-fashion-mnist`)."
        ) from None
    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float64).reshape(-1, 1, 8, 8)
    images = torch.round(x * (255.0 / _DIGITS_MAX)).clamp_(0, 255).to(torch.uint8)
    return images.contiguous(), torch.as_tensor(digits.target, dtype=torch.int64)


class DigitsDataModule(VisionDataModule):
    """scikit-learn's bundled digits: 1,797 grey images 1 x 8 x 8 of the digits 0-9 (no download).

    Pixel values (``0..16``) are stored as ``uint8`` ``round(v * 255 / 16)``, so batches hold
    ``v / 16`` in ``[0, 1]`` (to 1/510) like the other datamodules (``flatten`` gives 64
    features, ``binarize_thresholds`` works too). There is no official test split:
    ``test_size`` images are held out with a fixed seed (the same for every ``split_seed``),
    and ``val_size`` of the rest are the validation set (seeded by ``split_seed``). With
    the defaults: 1,200 train / 300 val / 297 test.

    Needs scikit-learn (``pip install scikit-learn``); ``data_dir`` and ``download`` are
    accepted for a uniform command line and ignored.

    Args:
        batch_size: batch size of every loader.
        val_size: validation examples taken from the non-test images (count or fraction).
        test_size: images held out as the test set (a count).
        **others: see :class:`~lightning_discrete.data.VisionDataModule`.

    Examples:
        >>> dm = DigitsDataModule(flatten=True, batch_size=16)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> x.shape, y.dtype, len(dm.train_set), len(dm.val_set)
        (torch.Size([16, 64]), torch.int64, 1200, 300)
    """

    name = "digits"
    image_shape = (1, 8, 8)
    num_examples = 1797

    def __init__(
        self,
        batch_size: int = 64,
        val_size: Union[int, float] = 300,
        test_size: int = 297,
        **others: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, val_size=val_size, **others)
        if not 1 <= int(test_size) < self.num_examples - 1:
            raise ValueError(f"`test_size` must be between 1 and {self.num_examples - 2}, got {test_size}")
        self.test_size = int(test_size)
        self._data: Optional[Tuple[Tensor, Tensor]] = None

    @staticmethod
    def available() -> bool:
        """Whether scikit-learn (which ships the images) is installed."""
        return importlib.util.find_spec("sklearn") is not None

    def _missing_files(self) -> List[str]:
        return []  # nothing on disk: the images are inside scikit-learn

    def _check_files(self) -> None:
        if not self.available():
            _load_sklearn_digits()  # raises the DataError that names the pip command

    def prepare_data(self) -> None:
        """Nothing to download."""

    def _load(self, train: bool) -> Tuple[Tensor, Tensor]:
        if self._data is None:
            self._data = _load_sklearn_digits()
        images, targets = self._data
        g = torch.Generator().manual_seed(_DIGITS_TEST_SPLIT_SEED)
        perm = torch.randperm(len(targets), generator=g)
        idx = (perm[self.test_size :] if train else perm[: self.test_size]).sort().values
        return images[idx].contiguous(), targets[idx]

    def describe(self) -> str:
        """One line naming the data and its split (for logs and the training summary)."""
        n_val = self._num_val(self.num_examples - self.test_size)
        n_train = self.num_examples - self.test_size - n_val
        return (
            f"scikit-learn's bundled digits: 1,797 real 8x8 images of handwritten digits "
            f"({n_train:,} train / {n_val:,} val / {self.test_size:,} test; no download)"
        )


class QuickstartDataModule(LightningDataModule):
    """The quick start's data: Fashion-MNIST when it is already here, the digits otherwise.

    ``dataset``:

    * ``"auto"`` -- Fashion-MNIST if its IDX files are in ``<data_dir>/FashionMNIST/raw/``
      or in one of :attr:`FashionMNISTDataModule.offline_dirs
      <lightning_discrete.data.FashionMNISTDataModule.offline_dirs>` (Debian's
      ``/usr/share/datasets/fashion-mnist``, imported automatically), else scikit-learn's
      digits (:class:`DigitsDataModule`);
    * ``"digits"`` or ``"fashion_mnist"`` -- that one.

    Batches are flattened ``(x, y)``; :attr:`input_dim` is 64 (digits) or 784 (Fashion-MNIST),
    which a model with ``input_dim: null`` takes over (see
    :class:`~lightning_discrete.models.StochasticBinaryNetwork`).

    Args:
        dataset: ``auto``, ``digits`` or ``fashion_mnist``.
        data_dir: where Fashion-MNIST is looked for (and imported to).
        batch_size: batch size of every loader.
        num_workers: DataLoader workers.
        val_size: validation examples; ``None``: 300 (digits) or 5000 (Fashion-MNIST).
        split_seed: seed of the validation split.
        examples_per_epoch: training examples per epoch, a fresh random draw each
            epoch (the budget of an epoch on the large dataset); ``None``: the whole
            training set. Smaller training sets are used whole.

    Checkpoints keep the dataset in use (``auto`` resolved), so a resumed run goes on
    with the same one.

    Examples:
        >>> dm = QuickstartDataModule(dataset="digits")
        >>> dm.input_dim, dm.num_classes, dm.state_dict()
        (64, 10, {'dataset': 'digits'})
    """

    def __init__(
        self,
        dataset: str = "auto",
        data_dir: str = "data",
        batch_size: int = 64,
        num_workers: int = 0,
        val_size: Optional[Union[int, float]] = None,
        split_seed: int = 42,
        examples_per_epoch: Optional[int] = None,
    ) -> None:
        super().__init__()
        if dataset not in QUICKSTART_DATASETS:
            raise ValueError(f"`dataset` must be one of {QUICKSTART_DATASETS}, got {dataset!r}")
        if examples_per_epoch is not None and examples_per_epoch < 1:
            raise ValueError(f"`examples_per_epoch` must be >= 1 or null, got {examples_per_epoch}")
        self.save_hyperparameters()
        self.choice = dataset
        self.data_dir = os.path.expanduser(str(data_dir))
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.split_seed = split_seed
        self.examples_per_epoch = examples_per_epoch
        self._inner: Optional[VisionDataModule] = None
        self._dataset: Optional[str] = None

    # -- the choice ---------------------------------------------------------------- #
    def fashion_mnist_available(self) -> bool:
        """Fashion-MNIST files in ``data_dir`` or an offline copy, and torchvision to read them."""
        if importlib.util.find_spec("torchvision") is None:
            return False
        here = not FashionMNISTDataModule(data_dir=self.data_dir)._missing_files()
        return here or FashionMNISTDataModule.find_offline_copy() is not None

    @property
    def dataset(self) -> str:
        """The dataset in use: ``digits`` or ``fashion_mnist`` (``auto`` resolved once)."""
        if self._dataset is None:
            if self.choice != "auto":
                self._dataset = self.choice
            else:
                self._dataset = "fashion_mnist" if self.fashion_mnist_available() else "digits"
        return self._dataset

    @property
    def datamodule(self) -> VisionDataModule:
        """The datamodule of the chosen dataset."""
        if self._inner is None:
            common: Dict[str, Any] = dict(
                data_dir=self.data_dir,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                split_seed=self.split_seed,
                flatten=True,
            )
            if self.dataset == "digits":
                self._inner = DigitsDataModule(val_size=300 if self.val_size is None else self.val_size, **common)
            else:
                self._inner = FashionMNISTDataModule(val_size=5000 if self.val_size is None else self.val_size, **common)
        return self._inner

    @property
    def input_dim(self) -> int:
        """Features of one flattened example: 64 (digits) or 784 (Fashion-MNIST)."""
        return self.datamodule.input_dim

    @property
    def num_classes(self) -> int:
        return self.datamodule.num_classes

    def describe(self) -> str:
        """One line naming the data in use and why it was chosen."""
        if self.dataset == "digits":
            text = self.datamodule.describe()  # type: ignore[attr-defined]
            if self.choice == "auto":
                text += "; Fashion-MNIST was not found on this machine"
            return text
        dm = self.datamodule
        per_epoch = f", {self.examples_per_epoch:,} random training images per epoch" if self.examples_per_epoch else ""
        n_val = dm._num_val(60000)
        return (
            f"Fashion-MNIST from {dm.raw_folder} (28x28 images of clothing, {60000 - n_val:,} train / "
            f"{n_val:,} val / 10,000 test{per_epoch})"
        )

    # -- LightningDataModule, delegated --------------------------------------------- #
    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: Optional[str] = None) -> None:
        dm = self.datamodule
        dm.trainer = self.trainer
        if stage in (None, "fit"):
            rank_zero_info(f"Quick start data: {self.describe()}")
        dm.setup(stage)

    def train_dataloader(self) -> DataLoader:
        loader = self.datamodule.train_dataloader()
        k = self.examples_per_epoch
        if k is None or loader.batch_size is None or k >= len(loader.dataset):  # type: ignore[arg-type]
            return loader
        # the same loader, drawing k fresh random examples each epoch
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=RandomSampler(loader.dataset, num_samples=k),  # type: ignore[arg-type]
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            persistent_workers=loader.persistent_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self.datamodule.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.datamodule.test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.datamodule.predict_dataloader()

    @override
    def state_dict(self) -> Dict[str, Any]:
        """The dataset in use (``auto`` resolved), so a resumed run keeps training on it."""
        return {"dataset": self.dataset}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Take over the checkpoint's dataset; raise if this run already uses another one.

        Args:
            state_dict: what :meth:`state_dict` returned.
        """
        saved = state_dict["dataset"]
        if saved not in QUICKSTART_DATASETS[1:]:
            raise ValueError(f"the checkpoint names an unknown quick-start dataset {saved!r}")
        if self._dataset is None and self.choice == "auto":
            self._dataset = saved
        elif self.dataset != saved:
            raise ValueError(
                f"the checkpoint was trained on {saved!r} but this run uses {self.dataset!r} "
                f"(`dataset={self.choice!r}`). To resume it, pass `--data.dataset={saved}`."
            )
