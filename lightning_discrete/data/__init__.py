"""LightningDataModules: MNIST, Fashion-MNIST and CIFAR-10 (optionally binarised), scikit-learn's
bundled digits (no download) and the quick start's automatic choice, plus :func:`import_idx` and
:func:`import_mnist_pickle` for offline copies.

MNIST, Fashion-MNIST and CIFAR-10 need ``torchvision`` (``pip install lightning_discrete[vision]``),
the digits ``scikit-learn``.
"""

from .datamodules import (
    BatchTransform,
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    VisionDataModule,
    binarize,
)
from .digits import DigitsDataModule, QuickstartDataModule
from .idx import DataError, check_idx_file, import_idx, import_mnist_pickle

__all__ = [
    "VisionDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "QuickstartDataModule",
    "BatchTransform",
    "binarize",
    "DataError",
    "check_idx_file",
    "import_idx",
    "import_mnist_pickle",
]
