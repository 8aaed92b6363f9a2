"""IDX files (the MNIST / Fashion-MNIST format): checking them and importing offline copies."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from typing import Dict, List

__all__ = ["DataError", "IDX_FILES", "IDX_DATASETS", "check_idx_file", "import_idx"]

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
    """A dataset is missing or corrupt; the message says what to do."""


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
        expected = 4 + 4 * len(dims) + _IDX_TYPES[data[2]] * _prod(dims)
        if len(data) != expected:
            raise ValueError(f"its header announces {expected} bytes but it has {len(data)}")
        if ("images" in os.path.basename(path) and len(dims) != 3) or (
            "labels" in os.path.basename(path) and len(dims) != 1
        ):
            raise ValueError(f"it has {len(dims)} dimensions")
    except ValueError as err:
        raise DataError(f"{dataset} file {path!r} is corrupt: {err}. {how}") from None


def _prod(xs: List[int]) -> int:
    n = 1
    for x in xs:
        n *= x
    return n


def import_idx(src_dir: str, data_dir: str = "data", dataset: str = "FashionMNIST") -> str:
    """Import an offline copy of the four IDX files into torchvision's layout.

    Looks in ``src_dir`` for ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (each
    either plain or ``.gz``), writes them decompressed to ``<data_dir>/<dataset>/raw/``
    (where :class:`~lightning_discrete.data.FashionMNISTDataModule` /
    :class:`~lightning_discrete.data.MNISTDataModule` and torchvision read them, without
    the md5 check of the ``.gz`` archives) and checks each file.

    Example (Debian's ``dataset-fashion-mnist`` package)::

        import_idx("/usr/share/datasets/fashion-mnist", "data", dataset="FashionMNIST")

    Returns:
        the ``raw`` folder written.

    Raises:
        DataError: a file is missing in ``src_dir`` or is not a valid IDX file.
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
        tmp = dst + ".part"
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
