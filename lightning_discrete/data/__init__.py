"""LightningDataModules: MNIST, Fashion-MNIST and CIFAR-10 (optionally binarised), plus
:func:`import_idx` for offline copies of the IDX files.

Needs ``torchvision`` (``pip install lightning_discrete[vision]``).
"""

from .datamodules import (
    BatchTransform,
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    VisionDataModule,
    binarize,
)
from .idx import DataError, check_idx_file, import_idx

__all__ = [
    "VisionDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "BatchTransform",
    "binarize",
    "DataError",
    "check_idx_file",
    "import_idx",
]
